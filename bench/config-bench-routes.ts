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
