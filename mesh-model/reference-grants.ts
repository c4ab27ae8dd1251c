// ReferenceGrants (Gateway API v1.6.1): a reference to an object in another namespace is allowed only
// when a ReferenceGrant in the target namespace trusts the referring kind and namespace.
import { isGatewayApiObject, isObject, type K8sObject } from './k8s-objects.ts';

export interface GroupKindNamespace {
  group: string;
  kind: string;
  namespace: string;
}

export interface ReferenceTarget extends GroupKindNamespace {
  name: string;
}

export interface ReferenceGrants {
  /** Same-namespace references are always allowed; others need a grant in the target's namespace. */
  permits(from: GroupKindNamespace, to: ReferenceTarget): boolean;
}

interface Grant {
  from: GroupKindNamespace[];
  to: { group: string; kind: string; name: string | undefined }[];
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function coreGroup(group: unknown): string {
  return group === 'core' ? '' : text(group);
}

export function readReferenceGrants(objects: readonly K8sObject[]): ReferenceGrants {
  const byNamespace = new Map<string, Grant[]>();
  for (const obj of objects) {
    if (obj.kind !== 'ReferenceGrant' || !isGatewayApiObject(obj)) continue;
    const spec = isObject(obj.spec) ? obj.spec : {};
    const from = (Array.isArray(spec.from) ? spec.from : []).filter(isObject).map((f) => ({
      group: coreGroup(f.group),
      kind: text(f.kind),
      namespace: text(f.namespace),
    }));
    const to = (Array.isArray(spec.to) ? spec.to : []).filter(isObject).map((t) => ({
      group: coreGroup(t.group),
      kind: text(t.kind),
      name: typeof t.name === 'string' && t.name !== '' ? t.name : undefined,
    }));
    const namespace = text(obj.metadata?.namespace) || 'default';
    const list = byNamespace.get(namespace) ?? [];
    list.push({ from, to });
    byNamespace.set(namespace, list);
  }
  return {
    permits(from, to) {
      if (from.namespace === to.namespace) return true;
      const fromGroup = coreGroup(from.group);
      const toGroup = coreGroup(to.group);
      return (byNamespace.get(to.namespace) ?? []).some(
        (g) =>
          g.from.some(
            (f) => f.group === fromGroup && f.kind === from.kind && f.namespace === from.namespace,
          ) &&
          g.to.some(
            (t) => t.group === toGroup && t.kind === to.kind && (t.name === undefined || t.name === to.name),
          ),
      );
    },
  };
}
