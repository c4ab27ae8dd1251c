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
