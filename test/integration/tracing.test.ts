import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MeshFixture, tearDownMesh, APP_PORT, TRUST_DOMAIN } from '../support/mesh-fixture.ts';
import { httpRoute, podObject, serviceWithEndpoints, type PodRef } from '../support/mesh-manifests.ts';
import { netnsUnavailableReason } from '../support/netns.ts';
import {
  buildJaeger,
  jaegerUnavailableReason,
  JaegerInPod,
  tag,
  type JaegerTrace,
} from '../support/jaeger.ts';
import { sluiceGateway, sluiceGatewayClass } from '../support/gateway-manifests.ts';
import { waitFor } from '../support/wait-for.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';

// Tracing end to end: two sidecars and a gateway proxy in network namespaces export to a real Jaeger (built
// from Go modules) in another pod; the test reads the traces back through Jaeger's query API. Settings come from the mesh
// ConfigMap in the manifests, and a change to it applies to the running sidecars.

const NS = 'shop';
const VIP = '10.96.0.10';
const GATEWAY_PORT = 8080;
const id = (sa: string): string => `spiffe://${TRUST_DOMAIN}/ns/${NS}/sa/${sa}`;

describe('tracing through two sidecars into Jaeger', function () {
  // The first run builds Jaeger (~25 min on 2 cores, cached afterwards under ~/.cache/sluice).
  this.timeout(120_000);
  const reason = netnsUnavailableReason() ?? jaegerUnavailableReason();
  let mesh: MeshFixture;
  let jaeger: JaegerInPod;
  let gatewayIp: string;
  const refs: PodRef[] = [];

  function manifests(tracing: Record<string, string>): K8sObject[] {
    const server = refs.find((r) => r.name === 'server')!;
    return [
      ...refs.map(podObject),
      ...serviceWithEndpoints(NS, 'reviews', VIP, [[80, APP_PORT, 'http']], [server]),
      httpRoute(NS, 'reviews', 'reviews', [
        {
          matches: [{ path: { type: 'PathPrefix', value: '/' } }],
          backendRefs: [{ name: 'reviews', port: 80 }],
        },
      ]),
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'sluice-mesh-config', namespace: 'sluice-system' },
        data: tracing,
      } as K8sObject,
      sluiceGatewayClass(),
      sluiceGateway(NS, 'gw', [{ name: 'http', port: GATEWAY_PORT, protocol: 'HTTP' }]),
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'front-door', namespace: NS, generation: 1 },
        spec: {
          parentRefs: [{ name: 'gw', sectionName: 'http' }],
          rules: [{ backendRefs: [{ name: 'reviews', port: 80 }] }],
        },
      },
    ];
  }

  before(async function () {
    if (reason) return this.skip();
    this.timeout(45 * 60_000);
    const bin = await buildJaeger();
    mesh = await MeshFixture.create();
    const jaegerPod = await mesh.addPod({
      name: 'jaeger',
      namespace: 'observability',
      serviceAccount: 'jaeger',
      meshed: false,
    });
    jaeger = await JaegerInPod.start(mesh.harness, jaegerPod, bin, mesh.dir);
    for (const [name, sa] of [
      ['client', 'client'],
      ['server', 'reviews'],
    ] as const) {
      const pod = await mesh.addPod({
        name,
        namespace: NS,
        serviceAccount: sa,
        meshed: true,
        proxyArgs: ['--tracing-service-name', name],
      });
      refs.push({ name, namespace: NS, ip: pod.ip, serviceAccount: sa, meshed: true });
    }
    gatewayIp = (
      await mesh.addPod({
        name: 'gateway',
        namespace: NS,
        serviceAccount: 'gw-sluice',
        meshed: false,
        gateway: 'gw',
        proxyArgs: ['--tracing-service-name', 'gateway'],
      })
    ).ip;
    mesh.writeManifests(
      manifests({
        'tracing.otlpEndpoint': jaeger.otlpUrl,
        'tracing.samplingPercent': '0',
        'tracing.batchDelayMs': '100',
      }),
    );
    await mesh.startSidecars();
  });

  tearDownMesh(() => mesh);
  afterEach(function () {
    if (this.currentTest?.state === 'failed') console.log(jaeger.logs.join('').slice(-5000));
  });

  /** The trace once Jaeger has all `count` of its spans. */
  const traceWith = async (traceId: string, count: number): Promise<JaegerTrace> => {
    let trace: JaegerTrace | undefined;
    await waitFor(
      `${count} spans of trace ${traceId} in Jaeger`,
      async () => (trace = await jaeger.trace(traceId))?.spans.length === count,
      { timeoutMs: 30_000, intervalMs: 300, detail: () => JSON.stringify(trace?.spans ?? []) },
    );
    return trace!;
  };

  const get = (headers: Record<string, string>, count = 1) =>
    mesh.client('client', { kind: 'http1', url: `http://${VIP}/items?id=1`, headers, count });

  it('a forced request appears in Jaeger as a CLIENT span and its SERVER child, in the caller trace', async () => {
    const traceId = randomBytes(16).toString('hex');
    const appSpan = randomBytes(8).toString('hex');
    // The app's own context says "not sampled"; the force header overrides it (rate-limited).
    const [r] = await get({ traceparent: `00-${traceId}-${appSpan}-00`, 'x-sluice-force-trace': '1' });
    assert.ok(r);
    assert.equal(r.status, 200, JSON.stringify(r));
    const seenByApp = (r.json as { headers: Record<string, string | undefined> }).headers.traceparent;
    assert.match(seenByApp ?? '', new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));

    const trace = await traceWith(traceId, 2);
    const spans = trace.spans;
    const client = spans.find((s) => tag(s, 'span.kind') === 'client');
    const server = spans.find((s) => tag(s, 'span.kind') === 'server');
    assert.ok(client && server, JSON.stringify(spans));
    // Links: app span → CLIENT span (client sidecar) → SERVER span (server sidecar) → the app's traceparent.
    assert.deepEqual(
      client.references.map((x) => [x.refType, x.spanID]),
      [['CHILD_OF', appSpan]],
    );
    assert.deepEqual(
      server.references.map((x) => [x.refType, x.spanID]),
      [['CHILD_OF', client.spanID]],
    );
    assert.equal(seenByApp, `00-${traceId}-${server.spanID}-01`);
    assert.equal(trace.processes[client.processID]?.serviceName, 'client');
    assert.equal(trace.processes[server.processID]?.serviceName, 'server');

    assert.equal(tag(client, 'http.request.method'), 'GET');
    assert.equal(tag(client, 'http.response.status_code'), 200);
    assert.equal(tag(client, 'url.full'), `http://${VIP}/items`);
    assert.equal(tag(client, 'sluice.route.namespace'), NS);
    assert.equal(tag(client, 'sluice.route.name'), 'reviews');
    assert.equal(tag(client, 'sluice.route.rule'), '0');
    assert.equal(tag(client, 'sluice.backend.service'), `${NS}/reviews:80`);
    assert.equal(tag(client, 'sluice.endpoint'), `${refs[1]!.ip}:${APP_PORT}`);
    assert.equal(tag(client, 'sluice.caller.identity'), id('client'));
    assert.equal(tag(client, 'sluice.callee.identity'), id('reviews'));
    assert.equal(tag(client, 'sluice.sampling.reason'), 'forced');
    assert.equal(tag(server, 'http.request.method'), 'GET');
    assert.equal(tag(server, 'url.path'), '/items');
    assert.equal(tag(server, 'http.response.status_code'), 200);
    assert.equal(tag(server, 'server.port'), APP_PORT);
    assert.equal(tag(server, 'sluice.caller.identity'), id('client'));
    assert.equal(tag(server, 'sluice.callee.identity'), id('reviews'));
    assert.equal(tag(server, 'sluice.sampling.reason'), 'parent');
  });

  it('a request through the client sidecar, a gateway and the server sidecar is one trace of four spans', async () => {
    const traceId = randomBytes(16).toString('hex');
    const appSpan = randomBytes(8).toString('hex');
    const [r] = await mesh.client('client', {
      kind: 'http1',
      url: `http://${gatewayIp}:${GATEWAY_PORT}/items?id=2`,
      headers: { traceparent: `00-${traceId}-${appSpan}-01` },
    });
    assert.equal(r?.status, 200, JSON.stringify(r));
    const trace = await traceWith(traceId, 4);
    const service = (s: { processID: string }) => trace.processes[s.processID]?.serviceName;
    const find = (name: string, kind: string) => {
      const span = trace.spans.find((s) => service(s) === name && tag(s, 'span.kind') === kind);
      assert.ok(span, `${kind} span of ${name} in ${JSON.stringify(trace.spans)}`);
      return span;
    };
    const clientSide = find('client', 'client');
    const gatewayServer = find('gateway', 'server');
    const gatewayClient = find('gateway', 'client');
    const serverSide = find('server', 'server');
    // Each span is the child of the one before: app → client sidecar → gateway → gateway's call → server.
    const parent = (s: { references: { spanID: string }[] }) => s.references.map((x) => x.spanID);
    assert.deepEqual(parent(clientSide), [appSpan]);
    assert.deepEqual(parent(gatewayServer), [clientSide.spanID]);
    assert.deepEqual(parent(gatewayClient), [gatewayServer.spanID]);
    assert.deepEqual(parent(serverSide), [gatewayClient.spanID]);
    assert.equal(tag(gatewayServer, 'server.port'), GATEWAY_PORT);
    assert.equal(tag(gatewayServer, 'url.path'), '/items');
    assert.equal(tag(gatewayServer, 'http.response.status_code'), 200);
    assert.equal(tag(gatewayServer, 'sluice.route.name'), 'front-door');
    assert.equal(tag(gatewayServer, 'sluice.callee.identity'), id('gw-sluice'));
    assert.equal(tag(gatewayClient, 'sluice.backend.service'), `${NS}/reviews:80`);
    assert.equal(tag(gatewayClient, 'sluice.endpoint'), `${refs[1]!.ip}:${APP_PORT}`);
    assert.equal(tag(gatewayClient, 'sluice.callee.identity'), id('reviews'));
    assert.equal(tag(gatewayClient, 'sluice.caller.identity'), id('gw-sluice'));
    assert.equal(tag(serverSide, 'sluice.caller.identity'), id('gw-sluice'));
  });

  it('a gRPC call carries its grpc-status on both spans; a status other than OK is an error', async () => {
    const traceId = randomBytes(16).toString('hex');
    const [r] = await mesh.client('client', {
      kind: 'grpc',
      url: `http://${VIP}/shop.Cart/Add`,
      headers: {
        traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`,
        'x-echo-grpc-status': '14',
      },
    });
    assert.equal(r?.grpcStatus, 14, JSON.stringify(r));
    const trace = await traceWith(traceId, 2);
    for (const span of trace.spans) {
      assert.equal(tag(span, 'rpc.system'), 'grpc');
      assert.equal(tag(span, 'rpc.service'), 'shop.Cart');
      assert.equal(tag(span, 'rpc.grpc.status_code'), 14);
      assert.equal(tag(span, 'http.response.status_code'), 200);
      assert.equal(tag(span, 'error'), true);
      assert.equal(tag(span, 'error.type'), 'UNAVAILABLE');
    }
  });

  it('a B3 caller gets its trace continued and B3 passed on to the server app', async () => {
    const traceId = randomBytes(16).toString('hex');
    const [r] = await get({ b3: `${traceId}-${randomBytes(8).toString('hex')}-1` });
    assert.ok(r);
    const headers = (r.json as { headers: Record<string, string | undefined> }).headers;
    assert.match(headers.b3 ?? '', new RegExp(`^${traceId}-[0-9a-f]{16}-1$`));
    assert.equal(headers.traceparent, `00-${traceId}-${headers.b3!.split('-')[1]}-01`);
    await traceWith(traceId, 2);
  });

  it("a caller's huge path, user agent and tracestate and an unknown method are cut in its spans, not in its request", async () => {
    const traceId = randomBytes(16).toString('hex');
    // Within the echo app's 16 KiB of head (Node's default); the sidecars take up to 60 KiB.
    const path = `/${'p'.repeat(6_000)}`;
    const [r] = await mesh.client('client', {
      kind: 'http1',
      method: 'PROPFIND',
      url: `http://${VIP}${path}?${'q'.repeat(3_000)}`,
      headers: {
        traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`,
        tracestate: `v=${'s'.repeat(600)}`,
        'user-agent': 'u'.repeat(4_000),
      },
    });
    assert.ok(r);
    assert.equal(r.status, 200, JSON.stringify(r).slice(0, 500));
    const seen = r.json as { method: string; path: string; headers: Record<string, string | undefined> };
    assert.equal(seen.method, 'PROPFIND');
    assert.equal(seen.path.length, path.length + 1 + 3_000, 'the app gets the whole request');
    assert.equal(seen.headers['user-agent']?.length, 4_000);

    const trace = await traceWith(traceId, 2);
    const client = trace.spans.find((s) => tag(s, 'span.kind') === 'client')!;
    const server = trace.spans.find((s) => tag(s, 'span.kind') === 'server')!;
    assert.equal(tag(client, 'url.full'), `http://${VIP}${path}`.slice(0, 1024));
    assert.equal(tag(server, 'url.path'), path.slice(0, 1024));
    for (const span of [client, server]) {
      assert.equal(span.operationName, 'HTTP');
      assert.equal(tag(span, 'http.request.method'), '_OTHER');
      assert.equal(tag(span, 'http.request.method_original'), 'PROPFIND');
      assert.equal(tag(span, 'user_agent.original'), 'u'.repeat(1024));
    }
  });

  it('an unsampled request gets no span but still carries an unsampled context', async () => {
    const [r] = await get({});
    assert.ok(r);
    assert.equal(r.status, 200);
    const tp = (r.json as { headers: Record<string, string | undefined> }).headers.traceparent ?? '';
    assert.match(tp, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    // Give the sidecars' batches time to go out (100 ms), then Jaeger knows nothing of it.
    const forced = randomBytes(16).toString('hex');
    await get({ traceparent: `00-${forced}-${randomBytes(8).toString('hex')}-01` });
    await waitFor('a later sampled trace to arrive', async () => (await jaeger.trace(forced)) !== undefined, {
      timeoutMs: 30_000,
      intervalMs: 300,
    });
    assert.equal(await jaeger.trace(tp.slice(3, 35)), undefined);
  });

  it('a collector that does not answer changes nothing for requests; lost spans are counted and logged with why', async () => {
    // 100 % sampling towards an address nobody owns on the bridge: connections hang until the export timeout.
    const blackhole = refs[0]!.ip.replace(/\.\d+$/, '.250');
    mesh.writeManifests(
      manifests({
        'tracing.otlpEndpoint': `http://${blackhole}:4318/v1/traces`,
        'tracing.samplingPercent': '100',
        'tracing.batchDelayMs': '50',
        'tracing.exportTimeoutMs': '1000',
        'tracing.maxQueueSpans': '20',
      }),
    );
    const client = mesh.pods.get('client')!;
    await waitFor('the new settings to apply', () =>
      client.sidecarLog.some(
        (l) => l.msg === 'tracing settings applied' && String(l.endpoint).includes(blackhole),
      ),
    );
    const results = await mesh.client('client', {
      kind: 'http1',
      url: `http://${VIP}/`,
      count: 200,
      concurrency: 4,
    });
    assert.deepEqual(
      results.filter((x) => x.status !== 200),
      [],
      'every request succeeds while the collector is unreachable',
    );
    await waitFor(
      'dropped spans in the metrics',
      async () => {
        const m = (await mesh.admin(client, '/metrics')).body;
        return (
          /sluice_trace_spans_total\{outcome="dropped_queue_full"\} [1-9]/.test(m) &&
          /sluice_trace_spans_total\{outcome="dropped_export_failed"\} [1-9]/.test(m) &&
          /sluice_trace_spans_dropped_total\{reason="queue_full"\} [1-9]/.test(m) &&
          /sluice_trace_spans_dropped_total\{reason="(timed_out|network_error)"\} [1-9]/.test(m)
        );
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    await waitFor('the reasons in the sidecar log', () => {
      const dropped = client.sidecarLog.filter((l) => String(l.msg).startsWith('spans dropped: '));
      return (
        dropped.some((l) => l.reason === 'queue_full') &&
        dropped.some(
          (l) => ['timed_out', 'network_error'].includes(String(l.reason)) && Number(l.attempts) >= 1,
        )
      );
    });
  });
});
