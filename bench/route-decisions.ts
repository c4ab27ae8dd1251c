// Route decisions per second for one Service with 100 HTTPRoutes x 10 rules (the target: well over
// 1M/s). Run: npm run bench:routes. Prints decisions/s for several request mixes; no assertion.
import { buildMeshModel } from '../mesh-model/translate.ts';
import { buildPortRouting } from '../mesh-model/port-routing.ts';
import type { RouteRequest } from '../mesh-model/request-match.ts';
import { decide } from '../mesh-model/decide.ts';
import { plan, type PlanRequest } from '../mesh-model/request-plan.ts';
import type { K8sObject } from '../mesh-model/k8s-objects.ts';

const objects: K8sObject[] = [
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'app', name: 'svc' },
    spec: { clusterIP: '10.96.0.1', ports: [{ port: 80 }] },
  },
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'app', name: 'v1' },
    spec: { ports: [{ port: 80 }] },
  },
];
for (let r = 0; r < 100; r++) {
  objects.push({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { namespace: 'app', name: `route-${r}` },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'svc' }],
      rules: Array.from({ length: 10 }, (_, k) => ({
        matches: [
          {
            path: { type: k % 2 === 0 ? 'PathPrefix' : 'Exact', value: `/api${r}/items${k}` },
            headers: k % 3 === 0 ? [{ name: 'x-tenant', value: `t${k}` }] : [],
            ...(k % 4 === 0 ? { method: 'GET' } : {}),
          },
        ],
        backendRefs: [{ name: 'v1', port: 80 }],
      })),
    },
  });
}

const model = buildMeshModel(objects);
const svc = model.services.get('app/svc')!;
const routing = buildPortRouting(model, 'app', svc, 80);

const mk = (path: string, headers: Record<string, string> = {}): RouteRequest =>
  ({ method: 'GET', path, query: '', scheme: 'http', authority: 'svc', headers }) as RouteRequest;
const mixes: Record<string, RouteRequest[]> = {
  'prefix hit (mixed routes)': Array.from({ length: 100 }, (_, i) =>
    mk(`/api${i}/items${(i % 5) * 2}/x`, { 'x-tenant': `t${(i % 5) * 2}` }),
  ),
  'exact hit': Array.from({ length: 100 }, (_, i) => mk(`/api${i}/items${(i % 5) * 2 + 1}`)),
  'miss (404)': Array.from({ length: 100 }, (_, i) => mk(`/nothing/${i}`)),
  'miss inside a busy segment': Array.from({ length: 100 }, (_, i) => mk(`/api${i}/other`)),
};

// The whole request plan (decision + filters), as the sidecar calls it per request.
const planned = (r: RouteRequest): boolean => {
  const p = plan(routing, r as PlanRequest, Math.random);
  return p.kind === 'forward';
};
const decided = (r: RouteRequest): boolean => decide(routing, r).action === 'forward';

function measure(reqs: RouteRequest[], run: (r: RouteRequest) => boolean = decided): number {
  let n = 0;
  let sink = 0;
  const deadline = process.hrtime.bigint() + 1_000_000_000n;
  const started = process.hrtime.bigint();
  while (process.hrtime.bigint() < deadline) {
    for (let i = 0; i < 10_000; i++) if (run(reqs[i % reqs.length]!)) sink++;
    n += 10_000;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (sink < 0) console.log(sink);
  return n / seconds;
}

console.log(
  `Service with ${model.routes.length} routes x 10 rules (${routing.wildcard.length} wildcard entries), node ${process.version}`,
);
for (const reqs of Object.values(mixes)) measure(reqs); // warm-up
for (const [name, reqs] of Object.entries(mixes)) {
  console.log(`${name.padEnd(30)} ${(measure(reqs) / 1e6).toFixed(2)} M decisions/s`);
}
for (const [name, reqs] of Object.entries(mixes)) {
  console.log(`plan: ${name.padEnd(24)} ${(measure(reqs, planned) / 1e6).toFixed(2)} M plans/s`);
}
