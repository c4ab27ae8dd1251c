// metav1.LabelSelector evaluation (matchLabels and matchExpressions, ANDed), for allowedRoutes.namespaces.
import { isObject } from './k8s-objects.ts';

/**
 * Whether `labels` satisfy `selector`. An empty selector matches everything (as in Kubernetes); a selector
 * that is not an object, or has an unknown operator, matches nothing.
 */
export function labelsMatch(selector: unknown, labels: Readonly<Record<string, string>>): boolean {
  if (!isObject(selector)) return false;
  const { matchLabels, matchExpressions } = selector;
  if (matchLabels !== undefined) {
    if (!isObject(matchLabels)) return false;
    for (const [key, value] of Object.entries(matchLabels)) if (labels[key] !== value) return false;
  }
  if (matchExpressions !== undefined) {
    if (!Array.isArray(matchExpressions)) return false;
    for (const e of matchExpressions) {
      if (!isObject(e) || typeof e.key !== 'string') return false;
      const values = Array.isArray(e.values) ? e.values.filter((v) => typeof v === 'string') : [];
      const has = Object.hasOwn(labels, e.key);
      const value = labels[e.key];
      switch (e.operator) {
        case 'In':
          if (!has || !values.includes(value!)) return false;
          break;
        case 'NotIn':
          if (has && values.includes(value!)) return false;
          break;
        case 'Exists':
          if (!has) return false;
          break;
        case 'DoesNotExist':
          if (has) return false;
          break;
        default:
          return false;
      }
    }
  }
  return true;
}
