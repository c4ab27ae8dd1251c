// `npm run demo`: Sluice on a cluster; a storefront behind a Gateway (demo/storefront.ts); a sample with a
// 90/10 canary route, 300 requests through the mesh and the split they took; then 50/50 and again; last,
// Jaeger and one trace of a storefront request (demo/tracing.ts). `npm run demo -- --down [--keep-cluster]` removes it all.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { tail } from '../cluster/exec.ts';
import { gatewayApiCrdSource } from '../cluster/gateway-api.ts';
import { REPO_DIR } from '../cluster/paths.ts';
import { Progress } from '../cluster/progress.ts';
import { PROXY_CONTAINER } from '../mesh-model/endpoints.ts';
import { meshParentStatus, podsWithoutSidecar, runningPod, sidecarRoute } from './cluster-state.ts';
import {
  answers,
  kubeconfigCluster,
  localCluster,
  runClusterTool,
  type DemoCluster,
} from './demo-cluster.ts';
import {
  curlArgs,
  describeWeights,
  formatSplitReport,
  parseCurlOutput,
  routeWeights,
  splitReport,
  withWeights,
  type Weights,
} from './split-report.ts';
import { storefrontWalkthrough } from './storefront.ts';
import { tracingWalkthrough } from './tracing.ts';
import { getJson, items, waitFor, waitForRollouts } from './waits.ts';
import {
  CONTROL_NAMESPACE,
  installGatewayApi,
  installSluice,
  restart,
  staleOnLocalCluster,
} from './install-sluice.ts';

const USAGE = 'usage: npm run demo [-- --down [--keep-cluster]]';
const NAMESPACE = 'sluice-demo';
const SAMPLE_DEPLOYMENTS = ['helloworld-v1', 'helloworld-v2', 'client'];
const CLIENT_CONTAINER = 'client';
const ROUTE = 'helloworld';
const PARENT_SERVICE = 'helloworld';
const PARENT_PORT = 5000;
const TARGET_URL = `http://${PARENT_SERVICE}:${PARENT_PORT}/`;
const REQUESTS = 300;
const CLIENT_IDENTITY = `spiffe://cluster.local/ns/${NAMESPACE}/sa/client`;
const SAMPLE_DIR = join(REPO_DIR, 'demo', 'manifests');
const ADMIN_PORT = 15021;
/** curl's own exit codes (a failed request among many), passed through by kubectl exec. */
const CURL_EXIT_CODES = Array.from({ length: 99 }, (_, i) => i + 1);

async function chooseCluster(progress: Progress): Promise<DemoCluster> {
  return progress.step('cluster', async () => {
    const found = await kubeconfigCluster();
    if ('cluster' in found) {
      progress.detail(`using KUBECONFIG's cluster (context ${found.context})`);
      return found.cluster;
    }
    progress.detail(`${found.why}: using the project's local cluster (node cluster/main.ts up)`);
    await runClusterTool('up');
    const local = localCluster();
    await local.kubectl(['get', '--raw', '/readyz'], { timeoutMs: 15_000 });
    return local;
  });
}

/** Applies the sample, waits for it and checks the sidecars; returns the client pod's name. */
async function deploySample(k: DemoCluster, progress: Progress): Promise<string> {
  return progress.step(`sample in namespace ${NAMESPACE} (kubectl apply -k demo/manifests/)`, async () => {
    // Injected pods mount the trust bundle the controller publishes in every namespace: wait for it first,
    // or the pods wait for it in the kubelet's mount backoff.
    await k.kubectl(['apply', '-f', join(SAMPLE_DIR, 'namespace.yaml')]);
    await waitFor(
      `ConfigMap sluice-ca-root in ${NAMESPACE}`,
      async () => {
        const { stdout } = await k.kubectl(
          ['-n', NAMESPACE, 'get', 'configmap', 'sluice-ca-root', '-o', 'name', '--ignore-not-found'],
          { timeoutMs: 15_000 },
        );
        return stdout.trim() === '' ? undefined : true;
      },
      `The controller publishes it: kubectl -n ${CONTROL_NAMESPACE} logs deploy/sluice-controller`,
    );
    const stale = await staleOnLocalCluster(k, NAMESPACE, SAMPLE_DEPLOYMENTS);
    await k.kubectl(['apply', '-k', SAMPLE_DIR], { timeoutMs: 60_000 });
    await restart(k, NAMESPACE, stale, progress);
    await waitForRollouts(k, NAMESPACE, SAMPLE_DEPLOYMENTS, progress);
    const pods = items(await getJson(k, ['-n', NAMESPACE, 'get', 'pods']));
    const unmeshed = podsWithoutSidecar(pods);
    if (unmeshed.length > 0) {
      throw new Error(
        `pods without the ${PROXY_CONTAINER} sidecar: ${unmeshed.join(', ')}. Is the namespace labelled ` +
          `(kubectl get namespace ${NAMESPACE} --show-labels: sluice.dev/inject=enabled) and does the injector ` +
          `answer (kubectl -n ${CONTROL_NAMESPACE} logs deploy/sluice-injector)? Pods created before the ` +
          `injector ran stay without: kubectl -n ${NAMESPACE} rollout restart deployment`,
      );
    }
    const clientPod = runningPod(pods, 'client');
    if (clientPod === undefined) throw new Error(`no running client pod in ${NAMESPACE}`);
    progress.detail(`${pods.length} pods, each with the ${PROXY_CONTAINER} sidecar; client pod ${clientPod}`);
    return clientPod;
  });
}

function readRouteFile(): unknown {
  return parseYaml(readFileSync(join(SAMPLE_DIR, 'httproute.yaml'), 'utf8'));
}

async function routeGeneration(k: DemoCluster): Promise<number | undefined> {
  const { stdout } = await k.kubectl([
    '-n',
    NAMESPACE,
    'get',
    'httproute',
    ROUTE,
    '-o',
    'jsonpath={.metadata.generation}',
    '--ignore-not-found',
  ]);
  return stdout.trim() === '' ? undefined : Number(stdout.trim());
}

async function clientConfigDump(k: DemoCluster, clientPod: string): Promise<unknown> {
  const { stdout } = await k.kubectl(
    [
      '-n',
      NAMESPACE,
      'exec',
      clientPod,
      '-c',
      CLIENT_CONTAINER,
      '--',
      'curl',
      '--silent',
      '--show-error',
      '--max-time',
      '5',
      `http://localhost:${ADMIN_PORT}/config_dump`,
    ],
    { timeoutMs: 20_000 },
  );
  return JSON.parse(stdout) as unknown;
}

/** Applies the route with these weights, waits for its status and for the client's sidecar to have it. */
async function applyRoute(k: DemoCluster, progress: Progress, clientPod: string, weights: Weights) {
  await progress.step(`HTTPRoute ${ROUTE}: ${describeWeights(weights)}`, async () => {
    const generationBefore = await routeGeneration(k);
    const dumpBefore = await clientConfigDump(k, clientPod).catch(() => undefined);
    const versionBefore = (dumpBefore as { config?: { version?: unknown } } | undefined)?.config?.version;
    await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(withWeights(readRouteFile(), weights)) });
    const generation = (await routeGeneration(k)) ?? 0;

    const status = await waitFor(
      `status of HTTPRoute ${ROUTE} (generation ${generation}) from sluice.dev/mesh`,
      async () => {
        const state = meshParentStatus(
          await getJson(k, ['-n', NAMESPACE, 'get', 'httproute', ROUTE]),
          PARENT_SERVICE,
        );
        if (!state.accepted) throw new Error(state.lines.join('; '));
        return state;
      },
      `Look at: kubectl -n ${NAMESPACE} get httproute ${ROUTE} -o yaml; ` +
        `kubectl -n ${CONTROL_NAMESPACE} logs deploy/sluice-controller`,
    );
    for (const line of status.lines) progress.detail(`status: ${line}`);

    const changed = generationBefore !== undefined && generationBefore !== generation;
    const expectation = {
      route: `HTTPRoute ${NAMESPACE}/${ROUTE}`,
      service: `${NAMESPACE}/${PARENT_SERVICE}:${PARENT_PORT}`,
      generation,
      versionBefore: changed && typeof versionBefore === 'number' ? versionBefore : undefined,
    };
    const seen = await waitFor(
      `the client's sidecar (${clientPod}) routing with HTTPRoute ${ROUTE} generation ${generation}`,
      async () => {
        const state = sidecarRoute(await clientConfigDump(k, clientPod), expectation);
        if (!state.current) throw new Error(state.detail);
        return state;
      },
      `Look at: kubectl -n ${NAMESPACE} exec ${clientPod} -c ${CLIENT_CONTAINER} -- curl -s localhost:${ADMIN_PORT}/config_dump; ` +
        `kubectl -n ${NAMESPACE} logs ${clientPod} -c ${PROXY_CONTAINER}`,
    );
    progress.detail(`client sidecar: ${seen.detail}`);
  });
}

async function sendRequests(k: DemoCluster, progress: Progress, clientPod: string, weights: Weights) {
  await progress.step(`${REQUESTS} requests from the client to ${TARGET_URL}`, async () => {
    const started = performance.now();
    const { stdout, stderr } = await k.kubectl(
      ['-n', NAMESPACE, 'exec', clientPod, '-c', CLIENT_CONTAINER, '--', ...curlArgs(TARGET_URL, REQUESTS)],
      { okCodes: CURL_EXIT_CODES, timeoutMs: 300_000 },
    );
    const replies = parseCurlOutput(stdout);
    if (replies.length === 0) throw new Error(`no replies from ${TARGET_URL}: ${tail(stderr || stdout, 2)}`);
    progress.detail(`${replies.length} replies in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const report = splitReport(replies, weights);
    process.stdout.write(
      `\n${formatSplitReport(report, CLIENT_IDENTITY)
        .map((l) => `    ${l}`)
        .join('\n')}\n\n`,
    );
    const wrong = [
      ...(report.failures.length > 0
        ? [`${report.failures.reduce((n, f) => n + f.count, 0)} requests failed`]
        : []),
      ...(report.rows.some((r) => !r.plausible) ? ['the split is far from the weights'] : []),
      ...(report.allMutualTls ? [] : ['not every request was mTLS']),
    ];
    if (wrong.length > 0) {
      throw new Error(
        `${wrong.join(', ')}: look at kubectl -n ${NAMESPACE} logs ${clientPod} -c ${PROXY_CONTAINER} ` +
          `and the servers' sidecars (kubectl -n ${NAMESPACE} logs deploy/helloworld-v1 -c ${PROXY_CONTAINER})`,
      );
    }
  });
}

function whereToLookNext(k: DemoCluster, clientPod: string): string {
  const admin = `kubectl -n ${NAMESPACE} exec deploy/client -c ${CLIENT_CONTAINER} -- curl -s localhost:${ADMIN_PORT}`;
  const entries: [string, ...string[]][] = [
    ['the route and its status', `kubectl -n ${NAMESPACE} get httproute ${ROUTE} -o yaml`],
    [
      'what the mesh does with a request, explained from the live objects',
      `kubectl -n ${NAMESPACE} get services,httproutes -o yaml > /tmp/sluice-demo.yaml`,
      `npm run --silent sluice -- route explain -f /tmp/sluice-demo.yaml --from ${NAMESPACE} GET ${TARGET_URL}`,
    ],
    ["what the client's sidecar runs with, and its counters", `${admin}/config_dump`, `${admin}/metrics`],
    [
      'logs',
      `kubectl -n ${NAMESPACE} logs ${clientPod} -c ${PROXY_CONTAINER}`,
      `kubectl -n ${CONTROL_NAMESPACE} logs deploy/sluice-controller`,
    ],
    [
      k.local ? 'remove it all, the local cluster too (--keep-cluster: not the cluster)' : 'remove it all',
      `npm run demo -- --down${k.local ? ' [--keep-cluster]' : ''}`,
    ],
  ];
  return [
    'Where to look next:',
    ...(k.shellSetup ? [`  ${k.shellSetup}`] : []),
    ...entries.flatMap(([what, ...commands]) => [`  # ${what}`, ...commands.map((c) => `  ${c}`)]),
  ].join('\n');
}

async function up(): Promise<number> {
  const progress = new Progress();
  const started = performance.now();
  const k = await chooseCluster(progress);
  await installGatewayApi(k, progress);
  await installSluice(k, progress);
  const clientPod = await deploySample(k, progress);
  const storefront = await storefrontWalkthrough(k, progress);
  const canary = routeWeights(readRouteFile());
  await applyRoute(k, progress, clientPod, canary);
  await sendRequests(k, progress, clientPod, canary);
  const even = Object.fromEntries(Object.keys(canary).map((backend) => [backend, 50]));
  await applyRoute(k, progress, clientPod, even);
  await sendRequests(k, progress, clientPod, even);
  process.stdout.write(`${whereToLookNext(k, clientPod)}\n`);
  // Last, so that the output ends with a trace through the Gateway and two sidecars.
  await tracingWalkthrough(k, progress, storefront);
  process.stderr.write(`\ndemo done in ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
  return 0;
}

/** Namespace deletion waits for every pod's graceful stop; a busy 2-core machine needs more than 2 min. */
const DELETE_TIMEOUT_S = 300;

async function down(keepCluster: boolean): Promise<number> {
  const progress = new Progress();
  const found = await kubeconfigCluster();
  let k: DemoCluster | undefined;
  if ('cluster' in found) {
    progress.detail(`using KUBECONFIG's cluster (context ${found.context})`);
    k = found.cluster;
  } else {
    const local = localCluster();
    if (await answers(local)) k = local;
    else
      progress.detail(`${found.why}, and the local cluster is not running: nothing to delete in a cluster`);
  }
  if (k) {
    const cluster = k;
    await progress.step(`namespace ${NAMESPACE}`, () =>
      cluster.kubectl(
        [
          'delete',
          'namespace',
          NAMESPACE,
          '--ignore-not-found',
          '--wait=true',
          `--timeout=${DELETE_TIMEOUT_S}s`,
        ],
        {
          timeoutMs: (DELETE_TIMEOUT_S + 10) * 1000,
        },
      ),
    );
    await progress.step('Jaeger and the mesh config (kubectl delete -k examples/observability/)', () =>
      cluster.kubectl(
        [
          'delete',
          '-k',
          join(REPO_DIR, 'examples', 'observability'),
          '--ignore-not-found',
          '--wait=true',
          `--timeout=${DELETE_TIMEOUT_S}s`,
        ],
        { timeoutMs: (DELETE_TIMEOUT_S + 10) * 1000 },
      ),
    );
    await progress.step('Sluice control plane (kubectl delete -k manifests/)', () =>
      cluster.kubectl(
        [
          'delete',
          '-k',
          join(REPO_DIR, 'manifests'),
          '--ignore-not-found',
          '--wait=true',
          `--timeout=${DELETE_TIMEOUT_S}s`,
        ],
        { timeoutMs: (DELETE_TIMEOUT_S + 10) * 1000 },
      ),
    );
    progress.detail(
      `the Gateway API CRDs stay installed (other things may use them); to remove them: kubectl delete -f ${gatewayApiCrdSource()}`,
    );
  }
  if ('cluster' in found) return 0;
  if (keepCluster) {
    progress.detail('--keep-cluster: the local cluster keeps running (npm run cluster:down stops it)');
    return 0;
  }
  await progress.step('local cluster (node cluster/main.ts down)', () => runClusterTool('down'));
  return 0;
}

async function main(argv: string[]): Promise<number> {
  let values: { down?: boolean | undefined; 'keep-cluster'?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { down: { type: 'boolean' }, 'keep-cluster': { type: 'boolean' } },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`demo: ${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values['keep-cluster'] && !values.down) {
    process.stderr.write(`demo: --keep-cluster goes with --down\n${USAGE}\n`);
    return 2;
  }
  return values.down ? down(values['keep-cluster'] ?? false) : up();
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`demo: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exitCode = 1;
}
