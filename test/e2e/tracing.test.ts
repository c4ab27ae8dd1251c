// Tracing on the local cluster with the real backend: Jaeger from examples/observability/ (its image built
// from Go modules and loaded, cluster/jaeger-image.ts), the mesh config pointing at it, and a request from a
// meshed client through a Gateway to a meshed backend, which Jaeger's query API returns as one trace:
// client sidecar CLIENT → gateway SERVER → gateway CLIENT → backend sidecar SERVER.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { JAEGER_QUERY_PORT } from '../../cluster/jaeger-build.ts';
import { loadJaegerImage } from '../../cluster/jaeger-image.ts';
import { clusterPaths, REPO_DIR } from '../../cluster/paths.ts';
import { Progress } from '../../cluster/progress.ts';
import { chainProblem, formatTraceTree, tag, type JaegerTrace } from '../../demo/trace-tree.ts';
import { jaegerUnavailableReason } from '../support/jaeger.ts';
import {
  apply,
  deploySluice,
  ensureGatewayApiCrds,
  eventually,
  kubectl,
  requireCluster,
  testNamespace,
} from '../support/kube.ts';
import { deployment, echoContainer, INJECT, service, serviceAccount } from '../support/mesh-e2e.ts';

/** A ServiceAccount of its own and a Deployment running `container` as it. */
function workload(name: string, container: object): object[] {
  return [serviceAccount(name), deployment(name, { serviceAccountName: name, containers: [container] })];
}

function objects(): object[] {
  return [
    ...workload('echo', echoContainer('echo')),
    service('echo', { app: 'echo' }),
    ...workload('client', {
      name: 'client',
      image: 'sluice-toolbox:dev',
      imagePullPolicy: 'Never',
      command: ['sleep', 'infinity'],
    }),
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'web', annotations: { 'sluice.dev/service-type': 'ClusterIP' } },
      spec: {
        gatewayClassName: 'sluice',
        listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }],
      },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'web' },
      spec: {
        parentRefs: [{ name: 'web', sectionName: 'http' }],
        rules: [{ backendRefs: [{ name: 'echo', port: 80 }] }],
      },
    },
  ];
}

async function jaegerTrace(traceId: string): Promise<JaegerTrace | undefined> {
  const path = `/api/v1/namespaces/observability/services/jaeger:${JAEGER_QUERY_PORT}/proxy/api/traces/${traceId}`;
  const { code, stdout } = await kubectl(['get', '--raw', path], { okCodes: [1], timeoutMs: 20_000 });
  return code === 0 ? (JSON.parse(stdout) as { data?: JaegerTrace[] }).data?.[0] : undefined;
}

describe('tracing on the local cluster, into Jaeger', function () {
  this.timeout(600_000);
  const reason = jaegerUnavailableReason();
  let ns: Awaited<ReturnType<typeof testNamespace>> | undefined;

  before(async function () {
    if (reason) return this.skip();
    // A cold Jaeger build takes 25–35 min on two cores; it is cached afterwards.
    this.timeout(45 * 60_000);
    await requireCluster();
    await ensureGatewayApiCrds();
    await deploySluice();
    await loadJaegerImage({ paths: clusterPaths(), progress: new Progress() });
    await kubectl(['apply', '-k', join(REPO_DIR, 'examples', 'observability')], { timeoutMs: 60_000 });
    await kubectl(['-n', 'observability', 'rollout', 'status', 'deployment/jaeger', '--timeout=180s'], {
      timeoutMs: 190_000,
    });
    ns = await testNamespace('trace', INJECT);
    await apply(objects(), ns.name);
    for (const d of ['echo', 'client'])
      await kubectl(['-n', ns.name, 'rollout', 'status', `deployment/${d}`, '--timeout=180s'], {
        timeoutMs: 190_000,
      });
    await eventually(
      'the gateway proxy rolled out',
      async () => {
        const r = await kubectl(
          ['-n', ns!.name, 'rollout', 'status', 'deployment/web-sluice', '--timeout=10s'],
          {
            okCodes: [1],
            timeoutMs: 20_000,
          },
        );
        return r.code === 0 ? true : undefined;
      },
      180_000,
    );
  });

  after(async () => {
    await ns?.delete();
    // Other suites run without tracing: the mesh config goes, and Jaeger with it.
    if (!reason)
      await kubectl([
        'delete',
        '-k',
        join(REPO_DIR, 'examples', 'observability'),
        '--ignore-not-found',
        '--wait=false',
      ]);
  });

  it('a request from a meshed client through the Gateway is one trace across both sidecars and the gateway', async () => {
    const namespace = ns!.name;
    const chain = [
      { service: 'client', kind: 'client' },
      { service: 'web-sluice', kind: 'server' },
      { service: 'web-sluice', kind: 'client' },
      { service: 'echo', kind: 'server' },
    ] as const;
    let last = 'no request yet';
    // The first requests may go out before every proxy has the mesh config: each try is a new trace.
    const trace = await eventually(
      'one trace client → gateway → echo in Jaeger',
      async () => {
        const traceId = randomBytes(16).toString('hex');
        const traceparent = `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
        const r = await kubectl(
          [
            '-n',
            namespace,
            'exec',
            'deploy/client',
            '-c',
            'client',
            '--',
            'curl',
            '-s',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code}',
            '-H',
            `traceparent: ${traceparent}`,
            `http://web-sluice.${namespace}/hello`,
          ],
          { okCodes: [1, 6, 7, 28, 52, 56], timeoutMs: 30_000 },
        );
        if (r.stdout.trim() !== '200') {
          last = `curl answered ${r.stdout.trim() || r.code}`;
          return undefined;
        }
        const found = await eventually(
          `trace ${traceId}`,
          async () => {
            const t = await jaegerTrace(traceId);
            return t && t.spans.length >= 4 ? t : undefined;
          },
          10_000,
        ).catch(() => undefined);
        last = found ? (chainProblem(found, chain) ?? '') : `Jaeger has no complete trace ${traceId}`;
        return found && chainProblem(found, chain) === undefined ? found : undefined;
      },
      180_000,
    ).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}: ${last}`);
    });
    console.log(
      formatTraceTree(trace)
        .map((l) => `      ${l}`)
        .join('\n'),
    );
    const gatewayServer = trace.spans.find(
      (s) => trace.processes[s.processID]?.serviceName === 'web-sluice' && tag(s, 'span.kind') === 'server',
    )!;
    assert.equal(tag(gatewayServer, 'http.response.status_code'), 200);
    assert.equal(tag(gatewayServer, 'sluice.route.name'), 'web');
    assert.equal(
      tag(gatewayServer, 'sluice.callee.identity'),
      `spiffe://cluster.local/ns/${namespace}/sa/web-sluice`,
    );
  });
});
