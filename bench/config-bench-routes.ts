import type { K8sObject } from '../mesh-model/k8s-objects.ts';
import { podObject, serviceWithEndpoints } from '../test/support/mesh-manifests.ts';

/** The HTTPRoute rule both config benchmarks use: a path/header match with a 90/10 split and a timeout. */
export function canaryRule(parent: readonly [string, string], path: string): object {
  const [namespace, name] = parent;
  return {
    matches: [
      { path: { type: 'PathPrefix', value: path } },
      { headers: [{ name: 'x-canary', value: 'yes' }] },
    ],
    backendRefs: [
      { name, namespace, port: 80, weight: 90 },
      { name, namespace, port: 80, weight: 10 },
    ],
    timeouts: { request: '5s' },
  };
}

/** The scale both config benchmarks run at (environment overrides). */
export const TD = 'cluster.local';
export const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 1000);
export const PROCS = Math.max(1, Number(process.env.BENCH_PROCS ?? 1));
export const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
export const NAMESPACES = Number(process.env.BENCH_NAMESPACES ?? 100);
export const SERVICES = Number(process.env.BENCH_SERVICES ?? 1000);

export function benchRoute(
  namespace: string,
  name: string,
  parent: [string, string],
  path: string,
  generation = 1,
): K8sObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { namespace, name, generation, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: {
      parentRefs: [{ kind: 'Service', namespace: parent[0], name: parent[1] }],
      rules: [canaryRule(parent, path)],
    },
  };
}

/** 1,000 Services with slices and meshed Pods; routes: one producer route per Service, except that 10% of
 * the routes are consumer routes (a namespace's override for a Service elsewhere). Generation `g` marks a
 * mass change. */
export function benchMesh(generation = 1): K8sObject[] {
  const objects: K8sObject[] = [];
  for (let s = 0; s < SERVICES; s++) {
    const ns = `ns-${s % NAMESPACES}`;
    const name = `svc-${s}`;
    const ip = (k: number): string => `10.${1 + (s >> 8)}.${s & 255}.${k}`;
    const pods = [1, 2].map((k) => ({
      name: `${name}-${k}`,
      namespace: ns,
      ip: ip(k),
      serviceAccount: name,
      meshed: true,
    }));
    objects.push(
      ...serviceWithEndpoints(ns, name, `10.96.${s >> 8}.${s & 255}`, [[80, 8080, 'http']], pods),
      ...pods.map(podObject),
    );
    objects.push(
      s % 10 === 9
        ? benchRoute(
            `ns-${(s + 1) % NAMESPACES}`,
            `consumer-${s}`,
            [ns, name],
            `/c${s}/g${generation}`,
            generation,
          )
        : benchRoute(ns, `route-${s}`, [ns, name], `/r${s}/g${generation}`, generation),
    );
  }
  return objects;
}
