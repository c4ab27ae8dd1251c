// Builders for Kubernetes objects in unit tests of the pure route engine.
import type { K8sObject, RouteRuleSpec, ParentReference } from '../../mesh-model/k8s-objects.ts';

export function service(
  namespace: string,
  name: string,
  ports: (number | [number, string])[],
  clusterIP?: string,
): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace, name },
    spec: {
      clusterIP: clusterIP ?? '10.96.0.1',
      ports: ports.map((p) => (Array.isArray(p) ? { port: p[0], name: p[1] } : { port: p })),
    },
  };
}

export interface RouteOptions {
  kind?: 'HTTPRoute' | 'GRPCRoute';
  parentRefs?: ParentReference[];
  created?: string;
}

export function route(
  namespace: string,
  name: string,
  rules: RouteRuleSpec[],
  opts: RouteOptions = {},
): K8sObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: opts.kind ?? 'HTTPRoute',
    metadata: { namespace, name, ...(opts.created ? { creationTimestamp: opts.created } : {}) },
    spec: { parentRefs: opts.parentRefs ?? [{ group: '', kind: 'Service', name: 'svc' }], rules },
  };
}

export function backend(
  name: string,
  weight?: number,
  port = 80,
  namespace?: string,
): NonNullable<RouteRuleSpec['backendRefs']>[number] {
  return { name, port, ...(weight === undefined ? {} : { weight }), ...(namespace ? { namespace } : {}) };
}
