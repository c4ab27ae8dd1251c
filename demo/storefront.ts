// The storefront walkthrough: a Gateway in front of `front`, which calls `reviews` (three versions); an
// HTTPRoute on the reviews Service sends end-user jason to v2 and everyone else to v1, then shifts 10 % to v3.
// Requests go from this machine to the Gateway's address; the counts are what reviews answered.
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { REPO_DIR } from '../cluster/paths.ts';
import type { Progress } from '../cluster/progress.ts';
import { GATEWAY_CONTAINER, PROXY_CONTAINER } from '../mesh-model/endpoints.ts';
import { gatewayParentStatus, gatewayState, meshParentStatus, sidecarRoute } from './cluster-state.ts';
import type { DemoCluster } from './demo-cluster.ts';
import { proxyAdminGet } from './proxy-admin.ts';
import {
  describeWeights,
  formatSplitReport,
  splitReport,
  storefrontReply,
  withWeights,
  type Reply,
  type Weights,
} from './split-report.ts';
import { getJson, items, waitFor, waitForRollouts } from './waits.ts';

const NAMESPACE = 'sluice-demo';
const DIR = join(REPO_DIR, 'demo', 'storefront');
const GATEWAY = 'storefront';
const DEPLOYMENTS = ['front', 'reviews-v1', 'reviews-v2', 'reviews-v3'];
const REVIEWS_ROUTE = 'reviews';
const REVIEWS_PORT = 9080;
const REQUESTS = 200;
const FRONT_IDENTITY = `spiffe://cluster.local/ns/${NAMESPACE}/sa/front`;
const CONTROL_NAMESPACE = 'sluice-system';

/** The storefront's proxies along a request, and their container. */
export const STOREFRONT_PROXIES = [
  {
    namespace: NAMESPACE,
    selector: `gateway.networking.k8s.io/gateway-name=${GATEWAY}`,
    container: GATEWAY_CONTAINER,
  },
  { namespace: NAMESPACE, selector: 'app=front', container: PROXY_CONTAINER },
  { namespace: NAMESPACE, selector: 'app=reviews', container: PROXY_CONTAINER },
] as const;

interface Phase {
  title: string;
  headers: Record<string, string>;
  expected: Weights;
}

/** Returns the storefront's URL at the Gateway. */
export async function storefrontWalkthrough(k: DemoCluster, progress: Progress): Promise<string> {
  const address = await deploy(k, progress);
  const url = `http://${isIPv6(address) ? `[${address}]` : address}/productpage`;
  await send(progress, url, {
    title: 'as end-user jason',
    headers: { 'end-user': 'jason' },
    expected: { 'reviews-v2': 1 },
  });
  await send(progress, url, { title: 'as anyone else', headers: {}, expected: { 'reviews-v1': 1 } });
  const shifted = { 'reviews-v1': 90, 'reviews-v3': 10 };
  await applyReviewsRoute(k, progress, shifted);
  await send(progress, url, { title: 'as anyone else', headers: {}, expected: shifted });
  await send(progress, url, {
    title: 'as end-user jason',
    headers: { 'end-user': 'jason' },
    expected: { 'reviews-v2': 1 },
  });
  return url;
}

/** Applies the storefront, waits for its pods, the Gateway's address and the routes' status. */
async function deploy(k: DemoCluster, progress: Progress): Promise<string> {
  return progress.step(
    `storefront behind Gateway ${GATEWAY} (kubectl apply -k demo/storefront/)`,
    async () => {
      await k.kubectl(['apply', '-k', DIR], { timeoutMs: 60_000 });
      await waitForRollouts(k, NAMESPACE, DEPLOYMENTS, progress);
      const gateway = await waitFor(
        `Gateway ${GATEWAY} Programmed with an address`,
        async () => {
          const state = gatewayState(await getJson(k, ['-n', NAMESPACE, 'get', 'gateway', GATEWAY]));
          if (!state.ready) throw new Error(state.lines.join('; '));
          return state;
        },
        `Look at: kubectl -n ${NAMESPACE} get gateway ${GATEWAY} -o yaml; kubectl -n ${NAMESPACE} get pods; ` +
          `kubectl -n ${CONTROL_NAMESPACE} logs deploy/sluice-controller`,
        180_000,
      );
      const address = gateway.address as string;
      progress.detail(`Gateway ${GATEWAY}: ${gateway.lines.join('; ')}; address ${address}`);
      await waitFor(
        `HTTPRoute storefront accepted by Gateway ${GATEWAY}`,
        async () => {
          const state = gatewayParentStatus(
            await getJson(k, ['-n', NAMESPACE, 'get', 'httproute', 'storefront']),
            GATEWAY,
          );
          if (!state.accepted) throw new Error(state.lines.join('; '));
          return state;
        },
        `Look at: kubectl -n ${NAMESPACE} get httproute storefront -o yaml`,
      );
      await routeAccepted(k);
      return address;
    },
  );
}

async function routeAccepted(k: DemoCluster): Promise<number> {
  const status = await waitFor(
    `HTTPRoute ${REVIEWS_ROUTE} accepted on Service reviews`,
    async () => {
      const route = await getJson(k, ['-n', NAMESPACE, 'get', 'httproute', REVIEWS_ROUTE]);
      const state = meshParentStatus(route, 'reviews');
      if (!state.accepted) throw new Error(state.lines.join('; '));
      return { generation: Number((route.metadata as { generation?: unknown }).generation ?? 0) };
    },
    `Look at: kubectl -n ${NAMESPACE} get httproute ${REVIEWS_ROUTE} -o yaml`,
  );
  return status.generation;
}

/** Applies the reviews route with these weights and waits until the front's sidecar routes with it. */
async function applyReviewsRoute(k: DemoCluster, progress: Progress, weights: Weights): Promise<void> {
  await progress.step(
    `HTTPRoute ${REVIEWS_ROUTE}: everyone but jason to ${describeWeights(weights)}`,
    async () => {
      const route = parseYaml(readFileSync(join(DIR, 'reviews-route.yaml'), 'utf8')) as unknown;
      await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(withWeights(route, weights)) });
      const generation = await routeAccepted(k);
      const pods = items(await getJson(k, ['-n', NAMESPACE, 'get', 'pods', '-l', 'app=front']));
      const front = pods.map((p) => (p as { metadata?: { name?: string } }).metadata?.name).find((n) => n);
      if (front === undefined) throw new Error(`no front pod in ${NAMESPACE}`);
      const seen = await waitFor(
        `the front's sidecar (${front}) routing with HTTPRoute ${REVIEWS_ROUTE} generation ${generation}`,
        async () => {
          const state = sidecarRoute(await configDump(k, front), {
            route: `HTTPRoute ${NAMESPACE}/${REVIEWS_ROUTE}`,
            service: `${NAMESPACE}/reviews:${REVIEWS_PORT}`,
            generation,
            versionBefore: undefined,
          });
          if (!state.current) throw new Error(state.detail);
          return state;
        },
        `Look at: kubectl -n ${NAMESPACE} logs ${front} -c ${PROXY_CONTAINER}`,
      );
      progress.detail(`front sidecar: ${seen.detail}`);
    },
  );
}

async function configDump(k: DemoCluster, pod: string): Promise<unknown> {
  return JSON.parse(await proxyAdminGet(k, NAMESPACE, pod, PROXY_CONTAINER, '/config_dump')) as unknown;
}

async function send(progress: Progress, url: string, phase: Phase): Promise<void> {
  const headerText = Object.entries(phase.headers)
    .map(([n, v]) => ` -H '${n}: ${v}'`)
    .join('');
  await progress.step(`${REQUESTS} requests ${phase.title}: curl${headerText} ${url}`, async () => {
    const fronts: Reply[] = [];
    const reviews: Reply[] = [];
    for (let i = 1; i <= REQUESTS; i++) {
      const one = await fetch(`${url}?request=${i}`, {
        headers: phase.headers,
        signal: AbortSignal.timeout(10_000),
      })
        .then(async (res) => storefrontReply(res.status, await res.text()))
        .catch((error: unknown) => {
          const failed: Reply = { backend: null, peerIdentity: null, failure: (error as Error).message };
          return { front: failed, reviews: failed };
        });
      fronts.push(one.front);
      reviews.push(one.reviews);
    }
    const report = splitReport(reviews, phase.expected);
    const gatewayIdentities = splitReport(fronts, { front: 1 }).identities;
    process.stdout.write(
      `\n${[
        ...formatSplitReport(report, FRONT_IDENTITY),
        'caller identities the front saw (the Gateway):',
        ...gatewayIdentities.map((i) => `  ${i.identity ?? '(none: plaintext)'} × ${i.count}`),
      ]
        .map((l) => `    ${l}`)
        .join('\n')}\n\n`,
    );
    if (!report.matchesWeights || !report.allMutualTls) {
      throw new Error(
        `the storefront did not answer as routed: look at kubectl -n ${NAMESPACE} logs deploy/front -c ${PROXY_CONTAINER} ` +
          `and the Gateway's proxy: kubectl -n ${NAMESPACE} logs -l gateway.networking.k8s.io/gateway-name=${GATEWAY}`,
      );
    }
  });
}
