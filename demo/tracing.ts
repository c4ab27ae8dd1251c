// The demo's last part: Jaeger (examples/observability/) receives the mesh's spans; one request sent through
// the storefront's Gateway with a forced trace comes back from Jaeger's query API as a tree of spans from
// the Gateway, the front's sidecar and the reviews' sidecar. Jaeger is read through the API server's
// service proxy, so no port-forward is needed here (the UI hint prints one for a browser).
import { join } from 'node:path';
import { JAEGER_QUERY_PORT } from '../cluster/jaeger-build.ts';
import { JAEGER_IMAGE, loadJaegerImage } from '../cluster/jaeger-image.ts';
import { clusterPaths, REPO_DIR } from '../cluster/paths.ts';
import type { Progress } from '../cluster/progress.ts';
import type { DemoCluster } from './demo-cluster.ts';
import { exportReport } from './export-report.ts';
import { proxyAdminGet } from './proxy-admin.ts';
import { STOREFRONT_PROXIES } from './storefront.ts';
import { chainProblem, formatTraceTree, STOREFRONT_CHAIN, type JaegerTrace } from './trace-tree.ts';
import { waitForRollouts } from './waits.ts';

const NAMESPACE = 'observability';
/** protocol/tracing-config.ts FORCE_TRACE_HEADER (demo/ does not import protocol/). */
const FORCE_TRACE_HEADER = 'x-sluice-force-trace';
const DIR = join(REPO_DIR, 'examples', 'observability');
/** Settings reach every proxy within seconds; a trace is complete ~1 s after the request (batch delay). */
const TRACE_TIMEOUT_MS = 120_000;
const PER_REQUEST_MS = 15_000;

/** The trace as Jaeger's query API has it, or undefined while Jaeger does not know it. */
export async function jaegerTrace(k: DemoCluster, traceId: string): Promise<JaegerTrace | undefined> {
  const path = `/api/v1/namespaces/${NAMESPACE}/services/jaeger:${JAEGER_QUERY_PORT}/proxy/api/traces/${traceId}`;
  const { code, stdout } = await k.kubectl(['get', '--raw', path], { okCodes: [1], timeoutMs: 20_000 });
  if (code !== 0) return undefined;
  return (JSON.parse(stdout) as { data?: JaegerTrace[] }).data?.[0];
}

/** Builds and loads the image (local cluster), applies the manifests, waits for Jaeger; or why it cannot. */
async function deployJaeger(k: DemoCluster, progress: Progress): Promise<string | undefined> {
  if (k.local) {
    progress.detail(
      'the Jaeger binary is built from Go modules once (a cold build takes 25–35 min), then cached',
    );
    try {
      await loadJaegerImage({ paths: clusterPaths(), progress });
    } catch (error) {
      return `Jaeger could not be built or loaded: ${(error as Error).message.replace(/\s*\n\s*/g, ' ')}`;
    }
  } else {
    progress.detail(
      `your cluster needs the image ${JAEGER_IMAGE} (images/jaeger/Dockerfile; its binary: cluster/go/jaeger)`,
    );
  }
  await k.kubectl(['apply', '-k', DIR], { timeoutMs: 60_000 });
  await waitForRollouts(k, NAMESPACE, ['jaeger'], progress, 180_000);
  return undefined;
}

/**
 * Sends forced-trace requests to the storefront until one comes back from Jaeger as the whole chain: the
 * first ones may go out before every proxy has the new mesh config. The trace ID is the one the front app
 * received (the echo server reports its request headers).
 */
async function tracedRequest(k: DemoCluster, url: string, progress: Progress): Promise<JaegerTrace> {
  const deadline = Date.now() + TRACE_TIMEOUT_MS;
  let last = 'no request sent yet';
  while (Date.now() < deadline) {
    const res = await fetch(url, {
      headers: { [FORCE_TRACE_HEADER]: '1' },
      signal: AbortSignal.timeout(10_000),
    }).catch((error: unknown) => error as Error);
    const body =
      res instanceof Error
        ? {}
        : ((await res.json().catch(() => ({}))) as { headers?: Record<string, unknown> });
    const traceparent = body.headers?.traceparent;
    const traceId =
      typeof traceparent === 'string' ? /^00-([0-9a-f]{32})-/.exec(traceparent)?.[1] : undefined;
    if (res instanceof Error) {
      last = `the storefront did not answer: ${res.message}`;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    } else if (res.status !== 200 || traceId === undefined) {
      last = `the storefront answered ${res.status}${traceId === undefined ? ' without a sampled traceparent at the front' : ''}`;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    } else {
      const until = Math.min(deadline, Date.now() + PER_REQUEST_MS);
      while (Date.now() < until) {
        const trace = await jaegerTrace(k, traceId).catch(() => undefined);
        const problem = trace ? chainProblem(trace, STOREFRONT_CHAIN) : `Jaeger has no trace ${traceId} yet`;
        if (trace && problem === undefined) return trace;
        last = problem ?? last;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
    progress.detail(`${last}; another request`);
  }
  process.stdout.write(`\n${(await exportReports(k)).map((l) => `    ${l}`).join('\n')}\n\n`);
  throw new Error(
    `no complete trace in Jaeger after ${TRACE_TIMEOUT_MS / 1000} s: ${last}. Look at: kubectl -n ${NAMESPACE} logs deploy/jaeger; ` +
      'kubectl -n sluice-demo logs deploy/front -c sluice-proxy | grep -E "tracing|spans dropped"; kubectl -n sluice-system get configmap sluice-mesh-config -o yaml',
  );
}

/** Each storefront proxy's span counters and last export failures, read as the demo reads its other state. */
async function exportReports(k: DemoCluster): Promise<string[]> {
  const lines = ['What the storefront proxies say about their span exports:'];
  const failed = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)));
  for (const p of STOREFRONT_PROXIES) {
    const pods = await k
      .kubectl(['-n', p.namespace, 'get', 'pods', '-l', p.selector, '-o', 'name'], { timeoutMs: 20_000 })
      .then(
        (r) => r.stdout.split('\n').filter((n) => n !== ''),
        () => [],
      );
    if (pods.length === 0) lines.push(`  no pod with ${p.selector}`);
    for (const pod of pods.map((n) => n.replace(/^pod\//, ''))) {
      const [metrics, log] = await Promise.all([
        proxyAdminGet(k, p.namespace, pod, p.container, '/metrics').catch(failed),
        k
          .kubectl(['-n', p.namespace, 'logs', pod, '-c', p.container], { timeoutMs: 20_000 })
          .then((r) => r.stdout, failed),
      ]);
      lines.push(`  ${pod}:`, ...exportReport(metrics, log).map((l) => `    ${l}`));
    }
  }
  return lines;
}

export async function tracingWalkthrough(
  k: DemoCluster,
  progress: Progress,
  storefrontUrl: string,
): Promise<void> {
  const unavailable = await progress.step(
    `Jaeger in namespace ${NAMESPACE} (kubectl apply -k examples/observability/)`,
    () => deployJaeger(k, progress),
  );
  if (unavailable !== undefined) {
    process.stdout.write(
      `\n    NO TRACE: ${unavailable}\n    The rest of the demo ran; tracing needs Jaeger (docs/observability.md).\n\n`,
    );
    return;
  }
  const trace = await progress.step(
    `a traced request: curl -H '${FORCE_TRACE_HEADER}: 1' ${storefrontUrl}`,
    () => tracedRequest(k, storefrontUrl, progress),
  );
  process.stdout.write(
    `\n${formatTraceTree(trace)
      .map((l) => `    ${l}`)
      .join('\n')}\n\n`,
  );
  process.stdout.write(
    [
      'The same trace from Jaeger on this machine:',
      `  kubectl -n ${NAMESPACE} port-forward svc/jaeger ${JAEGER_QUERY_PORT}:${JAEGER_QUERY_PORT}`,
      `  then http://localhost:${JAEGER_QUERY_PORT}/api/traces/${trace.traceID} (the query API, JSON) or`,
      `  http://localhost:${JAEGER_QUERY_PORT}/trace/${trace.traceID} (the UI page: a placeholder in a build from`,
      "  Go modules, which carry no UI assets; the query API is the full backend's)",
      '',
    ].join('\n'),
  );
}
