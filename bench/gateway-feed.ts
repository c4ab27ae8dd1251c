/**
 * Gateway feed cost per change (controller/gateway-feed.ts), in process: BENCH_GATEWAYS Gateways (one HTTPS
 * listener and its Secret each, one subscribed proxy each), BENCH_SERVICES Services with an EndpointSlice and
 * 2 Pods each, one HTTPRoute per Service (every tenth with a Gateway parent). Measures the time of one
 * informer change plus the flush the debounce would run, for: a Pod update (only its status: nothing is
 * sent), an EndpointSlice update (the most frequent change sent), an attached route update, and a Secret
 * rotation. Prints p50/p99 per kind; no assertions.
 *
 * Run: node bench/gateway-feed.ts   (env: BENCH_GATEWAYS=20 BENCH_SERVICES=1000 BENCH_ROUNDS=50)
 */
import { performance } from 'node:perf_hooks';
import type { ConfigSubscriber } from '../controller/config-hub.ts';
import { GatewayFeed, type GatewayFeedChange, type GatewayFeedInputs } from '../controller/gateway-feed.ts';
import type { K8sObject } from '../mesh-model/k8s-objects.ts';
import { podObject, serviceWithEndpoints, type PodRef } from '../test/support/mesh-manifests.ts';
import { percentile } from './stats.ts';

const GATEWAYS = Number(process.env.BENCH_GATEWAYS ?? 20);
const SERVICES = Number(process.env.BENCH_SERVICES ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 50);
const GW = 'gateway.networking.k8s.io/v1';
const PEM = (label: string, n: number): string =>
  Buffer.from(`-----BEGIN ${label}-----\n${n}\n-----END ${label}-----\n`).toString('base64');

function secret(i: number, round = 0): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `cert-${i}`, namespace: 'edge' },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': PEM('CERTIFICATE', round), 'tls.key': PEM('PRIVATE KEY', round) },
  } as K8sObject;
}

function route(i: number, generation = 1): K8sObject {
  const parent =
    i % 10 === 0
      ? { name: `gw-${(i / 10) % GATEWAYS}`, namespace: 'edge' }
      : { kind: 'Service', group: '', name: `svc-${i}` };
  return {
    apiVersion: GW,
    kind: 'HTTPRoute',
    metadata: {
      name: `route-${i}`,
      namespace: 'apps',
      generation,
      creationTimestamp: '2026-01-01T00:00:00Z',
    },
    spec: {
      parentRefs: [parent],
      hostnames: [`h${i}.example`],
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: `/v${generation}` } }],
          backendRefs: [{ name: `svc-${i}`, port: 80 }],
        },
      ],
    },
  };
}

const store = {
  namespaces: ['edge', 'apps'].map((name): K8sObject => ({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name },
  })),
  mesh: [] as K8sObject[],
  gatewayClasses: [
    {
      apiVersion: GW,
      kind: 'GatewayClass',
      metadata: { name: 'sluice' },
      spec: { controllerName: 'sluice.dev/gateway-controller' },
    },
  ] as K8sObject[],
  gateways: Array.from({ length: GATEWAYS }, (_, g): K8sObject => ({
    apiVersion: GW,
    kind: 'Gateway',
    metadata: { name: `gw-${g}`, namespace: 'edge', generation: 1 },
    spec: {
      gatewayClassName: 'sluice',
      listeners: [
        {
          name: 'https',
          port: 443,
          protocol: 'HTTPS',
          tls: { certificateRefs: [{ name: `cert-${g}` }] },
          allowedRoutes: { namespaces: { from: 'All' } },
        },
      ],
    },
  })),
  routes: Array.from({ length: SERVICES }, (_, i) => route(i)),
  referenceGrants: [] as K8sObject[],
  secrets: Array.from({ length: GATEWAYS }, (_, g) => secret(g)),
  configMaps: [] as K8sObject[],
};
const pods: PodRef[][] = [];
for (let i = 0; i < SERVICES; i++) {
  const refs = [0, 1].map((p) => ({
    name: `svc-${i}-${p}`,
    namespace: 'apps',
    ip: `10.${(i >> 8) & 255}.${i & 255}.${p + 1}`,
    serviceAccount: 'default',
    meshed: true,
  }));
  pods.push(refs);
  store.mesh.push(
    ...serviceWithEndpoints('apps', `svc-${i}`, `10.96.${(i >> 8) & 255}.${i & 255}`, [[80, 8080]], refs),
  );
  store.mesh.push(...refs.map(podObject));
}
const inputs = Object.fromEntries(
  Object.entries(store).map(([k, list]) => [k, () => list]),
) as unknown as GatewayFeedInputs;

const feed = new GatewayFeed({ inputs, trustDomain: 'cluster.local', epoch: 'bench' });
let bytes = 0;
const sub = (): ConfigSubscriber => ({
  namespace: 'edge',
  write: (b) => (bytes += b.length),
  bufferedBytes: () => 0,
  drop: () => undefined,
});
let t = performance.now();
for (let g = 0; g < GATEWAYS; g++) feed.subscribe(sub(), { namespace: 'edge', name: `gw-${g}` });
console.log(
  `${GATEWAYS} gateways subscribed in ${(performance.now() - t).toFixed(0)} ms (${(bytes / 1e6).toFixed(1)} MB of snapshots)`,
);

/** Replaces `list[index]` and returns the change the informer would report. */
function replace(
  input: keyof GatewayFeedInputs,
  list: K8sObject[],
  index: number,
  object: K8sObject,
): GatewayFeedChange {
  const old = list[index]!;
  list[index] = object;
  return { input, type: 'update', object, old };
}

function measure(label: string, change: (round: number) => GatewayFeedChange): void {
  const times: number[] = [];
  bytes = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    const c = change(round);
    t = performance.now();
    feed.changed(c);
    // What the debounce runs (before per-change updates, flush() recomputed everything).
    const f = feed as unknown as { flushChanges?: () => void; flush: () => void };
    if (f.flushChanges) f.flushChanges();
    else f.flush();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  console.log(
    `${label.padEnd(22)} p50 ${percentile(times, 50).toFixed(2).padStart(8)} ms  p99 ${percentile(times, 99).toFixed(2).padStart(8)} ms  ` +
      `${(bytes / ROUNDS).toFixed(0)} B sent per change`,
  );
}

measure('pod status update', (round) => {
  const i = round % SERVICES;
  const index = store.mesh.findIndex((o) => o.kind === 'Pod' && o.metadata?.name === `svc-${i}-0`);
  const pod = podObject({ ...pods[i]![0]!, ip: `10.200.${round & 255}.${(round >> 8) & 255}` });
  return replace('mesh', store.mesh, index, pod);
});
measure('endpointslice update', (round) => {
  const i = round % SERVICES;
  const index = store.mesh.findIndex((o) => o.kind === 'EndpointSlice' && o.metadata?.name === `svc-${i}-1`);
  const moved = [{ ...pods[i]![0]!, ip: `10.200.${round & 255}.${(round >> 8) & 255}` }, pods[i]![1]!];
  const slice = serviceWithEndpoints('apps', `svc-${i}`, '10.96.0.1', [[80, 8080]], moved)[1]!;
  return replace('mesh', store.mesh, index, slice);
});
measure('attached route update', (round) => {
  const i = (round * 10) % SERVICES;
  return replace('routes', store.routes, i, route(i, round + 1));
});
measure('secret rotation', (round) => {
  const g = round % GATEWAYS;
  return replace('secrets', store.secrets, g, secret(g, round));
});
feed.close();
