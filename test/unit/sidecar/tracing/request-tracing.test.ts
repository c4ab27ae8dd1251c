// Span records into memory: attribute sets, parent links, propagation out, no span for unsampled
// requests, and export back-pressure counted.
import assert from 'node:assert/strict';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { RequestTracing, type TracedRequest } from '../../../../sidecar/tracing/request-tracing.ts';
import { DEFAULT_TRACING, type TracingSettings } from '../../../../protocol/tracing-config.ts';
import type { ExportFailure, SpanExporter, SpanOutcome } from '../../../../sidecar/tracing/span-pipeline.ts';
import { SPAN_KIND, SPAN_STATUS, type SpanRecord } from '../../../../sidecar/tracing/span-record.ts';
import { MemorySpanExporter } from '../../../support/sampled-tracing.ts';
import { encodeTraceRequest } from '../../../../sidecar/tracing/otlp-encode.ts';
import { bounded, MAX_ATTRIBUTE_LENGTH } from '../../../../sidecar/tracing/span-limits.ts';
import type { HeaderMap } from '../../../../mesh-model/header-edits.ts';
import type { MatchEntry } from '../../../../mesh-model/model.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const ON: TracingSettings = {
  ...DEFAULT_TRACING,
  endpoint: 'http://collector.invalid:4318/v1/traces',
  batchDelayMs: 1,
};

function request(headers: Record<string, string> = {}, url = '/items?id=7'): TracedRequest {
  return {
    method: 'GET',
    url,
    headers: { host: 'reviews.shop:80', 'user-agent': 'test/1', ...headers },
    httpVersion: '1.1',
    socket: { localAddress: '10.2.0.1', remoteAddress: '10.0.0.5', remotePort: 40000 },
  };
}

const entry = {
  rule: { index: 1, name: undefined, route: { kind: 'HTTPRoute', namespace: 'shop', name: 'reviews' } },
} as unknown as MatchEntry;

describe('request tracing', () => {
  let exporter: MemorySpanExporter;
  let counts: Map<SpanOutcome, number>;
  let reasons: string[];
  let rolls: number[];
  const make = (settings: TracingSettings = ON, extra: { exporter?: SpanExporter } = {}): RequestTracing => {
    const t = new RequestTracing({
      resource: { 'service.name': 'web' },
      identity: () => 'spiffe://cluster.local/ns/shop/sa/web',
      random: () => rolls.shift() ?? 0.99,
      exporter: extra.exporter ?? exporter,
      onSpans: (o, n, failure) => {
        counts.set(o, (counts.get(o) ?? 0) + n);
        if (failure) reasons.push(failure.reason);
      },
    });
    t.apply(settings, 'shop');
    return t;
  };
  const spans = async (t: RequestTracing): Promise<SpanRecord[]> => {
    await t.flush();
    return exporter.spans;
  };

  beforeEach(() => {
    exporter = new MemorySpanExporter();
    counts = new Map();
    reasons = [];
    rolls = [];
  });

  it("records the span kinds and status codes as @opentelemetry/api's enums number them", () => {
    assert.deepEqual(
      { ...SPAN_KIND },
      Object.fromEntries(Object.keys(SPAN_KIND).map((k) => [k, SpanKind[k as keyof typeof SpanKind]])),
    );
    assert.deepEqual(
      { ...SPAN_STATUS },
      Object.fromEntries(
        Object.keys(SPAN_STATUS).map((k) => [k, SpanStatusCode[k as keyof typeof SpanStatusCode]]),
      ),
    );
  });

  it('is off without an endpoint: no span and the headers untouched', () => {
    const t = make(DEFAULT_TRACING);
    const headers: HeaderMap = {};
    assert.equal(t.enabled, false);
    assert.equal(
      t.startOutbound(request({ 'x-sluice-force-trace': '1' }), headers, 'reviews.shop'),
      undefined,
    );
    assert.deepEqual(headers, {});
  });

  it('an unsampled request makes no span, keeps its context, and gets one only if it had none', async () => {
    const t = make();
    const kept: HeaderMap = { traceparent: `00-${TRACE}-${SPAN}-00` };
    assert.equal(
      t.startOutbound(request({ traceparent: `00-${TRACE}-${SPAN}-00` }), kept, 'reviews.shop'),
      undefined,
    );
    assert.deepEqual(kept, { traceparent: `00-${TRACE}-${SPAN}-00` });
    const fresh: HeaderMap = {};
    assert.equal(t.startOutbound(request(), fresh, 'reviews.shop'), undefined);
    assert.match(String(fresh.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    const inbound: HeaderMap = {};
    assert.equal(
      t.startInbound(request(), inbound, { address: '10.0.0.9', port: 9080, peerIdentity: undefined }),
      undefined,
    );
    assert.deepEqual(inbound, {});
    assert.deepEqual(await spans(t), []);
  });

  it('a CLIENT span continues the caller trace, carries the mesh attributes and is propagated', async () => {
    const t = make();
    const headers: HeaderMap = {};
    const span = t.startOutbound(
      request({ traceparent: `00-${TRACE}-${SPAN}-01`, tracestate: 'v=1' }),
      headers,
      'reviews.shop:80',
    )!;
    span.route(entry, 'shop/reviews-v1:80');
    span.attempt({
      address: '10.1.0.4',
      port: 9080,
      ready: true,
      serving: true,
      terminating: false,
      identity: 'spiffe://cluster.local/ns/shop/sa/reviews',
      pod: 'v1',
    });
    span.attempt({
      address: '10.1.0.5',
      port: 9080,
      ready: true,
      serving: true,
      terminating: false,
      identity: 'spiffe://cluster.local/ns/shop/sa/reviews',
      pod: 'v2',
    });
    span.end(200);
    const [s] = await spans(t);
    assert.ok(s);
    assert.equal(s.kind, SpanKind.CLIENT);
    assert.equal(s.traceId, TRACE);
    assert.equal(s.parentSpanId, SPAN);
    assert.equal(headers.traceparent, `00-${TRACE}-${s.spanId}-01`);
    assert.equal(headers.tracestate, 'v=1');
    assert.deepEqual(s.attributes, {
      'http.request.method': 'GET',
      'url.full': 'http://reviews.shop:80/items',
      'server.address': 'reviews.shop',
      'server.port': 80,
      'network.protocol.version': '1.1',
      'sluice.sampling.reason': 'parent',
      'sluice.caller.identity': 'spiffe://cluster.local/ns/shop/sa/web',
      'user_agent.original': 'test/1',
      'sluice.backend.service': 'shop/reviews-v1:80',
      'sluice.route.kind': 'HTTPRoute',
      'sluice.route.namespace': 'shop',
      'sluice.route.name': 'reviews',
      'sluice.route.rule': '1',
      'network.peer.address': '10.1.0.5',
      'network.peer.port': 9080,
      'sluice.endpoint': '10.1.0.5:9080',
      'sluice.callee.identity': 'spiffe://cluster.local/ns/shop/sa/reviews',
      'sluice.endpoint.pod': 'v2',
      'http.request.resend_count': 1,
      'sluice.retry.attempt': 1,
      'http.response.status_code': 200,
    });
    assert.equal(s.status.code, SpanStatusCode.UNSET);
    assert.equal(s.resource.attributes['service.name'], 'web');
    assert.equal(s.resource.attributes['k8s.namespace.name'], 'shop');
    assert.equal(s.traceState, 'v=1');
    assert.equal(s.parentIsRemote, true);
  });

  it('a B3 caller gets B3 back; a forced request starts a new trace', async () => {
    const t = make();
    const headers: HeaderMap = {};
    t.startOutbound(request({ b3: `${TRACE}-${SPAN}-1` }), headers, 'reviews.shop')!.end(200);
    assert.match(String(headers.b3), new RegExp(`^${TRACE}-[0-9a-f]{16}-1$`));
    assert.match(String(headers.traceparent), new RegExp(`^00-${TRACE}-`));
    // The next sidecar sees traceparent and b3 together: traceparent wins, b3 is still passed on.
    const next: HeaderMap = {};
    t.startInbound(request({ traceparent: String(headers.traceparent), b3: String(headers.b3) }), next, {
      address: '10.1.0.4',
      port: 9080,
      peerIdentity: undefined,
    })!.end(200);
    assert.match(String(next.b3), new RegExp(`^${TRACE}-[0-9a-f]{16}-1$`));
    const forced: HeaderMap = {};
    const span = t.startOutbound(request({ 'x-sluice-force-trace': '1' }), forced, 'reviews.shop')!;
    span.end(200);
    const all = await spans(t);
    assert.equal(all[2]?.attributes['sluice.sampling.reason'], 'forced');
    assert.equal(all[2].parentSpanId, undefined);
  });

  it('a SERVER span names the caller and marks local replies as errors with their cause', async () => {
    rolls = [0]; // sampled by the ratio
    const t = make();
    const headers: HeaderMap = {};
    const span = t.startInbound(request(), headers, {
      address: '10.1.0.4',
      port: 9080,
      peerIdentity: 'spiffe://cluster.local/ns/shop/sa/web',
    })!;
    span.end(503, 'no_endpoint');
    const [s] = await spans(t);
    assert.ok(s);
    assert.equal(s.kind, SpanKind.SERVER);
    assert.equal(s.attributes['sluice.caller.identity'], 'spiffe://cluster.local/ns/shop/sa/web');
    assert.equal(s.attributes['sluice.callee.identity'], 'spiffe://cluster.local/ns/shop/sa/web');
    assert.equal(s.attributes['url.path'], '/items');
    assert.equal(s.attributes['client.address'], '10.0.0.5');
    assert.equal(s.attributes['sluice.local_reply.cause'], 'no_endpoint');
    assert.equal(s.attributes['error.type'], 'no_endpoint');
    assert.equal(s.status.code, SpanStatusCode.ERROR);
    assert.equal(headers.traceparent, `00-${s.traceId}-${s.spanId}-01`);
  });

  it('a gateway request: a SERVER span, its CLIENT child for the backend call, propagated to the backend', async () => {
    const t = make();
    const upstream = { headers: {} as HeaderMap, authority: 'front.shop:8080' };
    const span = t.startGateway(
      request({ traceparent: `00-${TRACE}-${SPAN}-01`, host: 'www.example.com' }, '/cart?x=1'),
      { port: 443, scheme: 'https' },
      upstream,
    )!;
    span.route(entry, 'shop/front:8080');
    span.attempt({
      address: '10.1.0.7',
      port: 8080,
      ready: true,
      serving: true,
      terminating: false,
      identity: undefined,
      pod: 'front-1',
    });
    span.end(502, 'upstream');
    const all = await spans(t);
    assert.equal(all.length, 2);
    const server = all.find((s) => s.kind === SPAN_KIND.SERVER);
    const client = all.find((s) => s.kind === SPAN_KIND.CLIENT);
    assert.ok(server && client);
    assert.equal(server.parentSpanId, SPAN);
    assert.equal(client.parentSpanId, server.spanId);
    assert.equal(client.traceId, TRACE);
    assert.equal(upstream.headers.traceparent, `00-${TRACE}-${client.spanId}-01`);
    assert.equal(server.attributes['url.scheme'], 'https');
    assert.equal(server.attributes['server.address'], 'www.example.com');
    assert.equal(server.attributes['server.port'], 443);
    assert.equal(server.attributes['sluice.route.name'], 'reviews');
    assert.equal(server.attributes['sluice.callee.identity'], 'spiffe://cluster.local/ns/shop/sa/web');
    assert.equal(server.attributes['network.peer.address'], undefined, 'attempts belong to the call');
    assert.equal(client.attributes['url.full'], 'http://front.shop:8080/cart');
    assert.equal(client.attributes['sluice.endpoint.pod'], 'front-1');
    assert.equal(client.attributes['sluice.caller.identity'], 'spiffe://cluster.local/ns/shop/sa/web');
    for (const s of [server, client]) {
      assert.equal(s.attributes['error.type'], 'upstream');
      assert.equal(s.status.code, SpanStatusCode.ERROR);
    }
  });

  it('a gateway local reply has only the SERVER span; an unsampled request gets an unsampled context', async () => {
    const t = make();
    t.startGateway(
      request({ 'x-sluice-force-trace': '1', host: '' }),
      { port: 80, scheme: 'http' },
      undefined,
    )!.end(404, 'no_route');
    const [only, ...rest] = await spans(t);
    assert.equal(only?.kind, SpanKind.SERVER);
    assert.deepEqual(rest, []);
    assert.equal(only.attributes['sluice.local_reply.cause'], 'no_route');
    assert.equal(only.attributes['server.address'], '10.2.0.1', 'no Host: the address the client reached');
    const upstream = { headers: {} as HeaderMap, authority: 'front.shop:8080' };
    assert.equal(t.startGateway(request(), { port: 80, scheme: 'http' }, upstream), undefined);
    assert.match(String(upstream.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  });

  it('a gRPC response carries its status; one other than OK is an error even with HTTP 200', async () => {
    const t = make();
    const grpc = request(
      { 'content-type': 'application/grpc', 'x-sluice-force-trace': '1' },
      '/shop.Cart/Add',
    );
    const ok = t.startOutbound(grpc, {}, 'cart.shop:50051')!;
    ok.grpcStatus(0);
    ok.end(200);
    const failed = t.startOutbound(grpc, {}, 'cart.shop:50051')!;
    failed.grpcStatus(14);
    failed.end(200);
    const [a, b] = await spans(t);
    assert.equal(a?.attributes['rpc.grpc.status_code'], 0);
    assert.equal(a.attributes['rpc.service'], 'shop.Cart');
    assert.equal(a.status.code, SpanStatusCode.UNSET);
    assert.equal(b?.attributes['rpc.grpc.status_code'], 14);
    assert.equal(b.attributes['error.type'], 'UNAVAILABLE');
    assert.equal(b.status.code, SpanStatusCode.ERROR);
  });

  it('keeps what a caller controls bounded: path, Host, user agent, method and tracestate', async () => {
    const t = make();
    const path = `/${'p'.repeat(20_000)}`;
    const traceState = `v=${'s'.repeat(600)}`;
    const upstream = { headers: {} as HeaderMap, authority: 'front.shop:8080' };
    const req = {
      ...request(
        {
          traceparent: `00-${TRACE}-${SPAN}-01`,
          tracestate: traceState,
          host: `${'h'.repeat(20_000)}:80`,
          'user-agent': 'u'.repeat(20_000),
        },
        `${path}?${'q'.repeat(20_000)}`,
      ),
      method: 'PROPFIND',
    };
    t.startGateway(req, { port: 80, scheme: 'http' }, upstream)!.end(207);
    const all = await spans(t);
    const server = all.find((s) => s.kind === SPAN_KIND.SERVER)!;
    const client = all.find((s) => s.kind === SPAN_KIND.CLIENT)!;
    assert.equal(server.attributes['url.path'], path.slice(0, MAX_ATTRIBUTE_LENGTH));
    assert.equal(server.attributes['server.address'], 'h'.repeat(MAX_ATTRIBUTE_LENGTH));
    assert.equal(
      client.attributes['url.full'],
      `http://front.shop:8080${path}`.slice(0, MAX_ATTRIBUTE_LENGTH),
    );
    for (const s of [server, client]) {
      assert.equal(s.attributes['user_agent.original'], 'u'.repeat(MAX_ATTRIBUTE_LENGTH));
      assert.equal(s.attributes['http.request.method'], '_OTHER');
      assert.equal(s.attributes['http.request.method_original'], 'PROPFIND');
      assert.equal(s.name, 'HTTP');
      assert.equal(s.traceState, undefined, 'a tracestate over 512 characters is not recorded');
    }
    assert.equal(upstream.headers.tracestate, traceState, 'but it is passed on as it came');
    assert.ok(encodeTraceRequest(all).length < 8 * 1024);
  });

  it('cuts a long value on a character boundary, and leaves a short one alone', () => {
    const short = 'x'.repeat(MAX_ATTRIBUTE_LENGTH);
    assert.equal(bounded(short), short);
    const pairs = '😀'.repeat(MAX_ATTRIBUTE_LENGTH); // two UTF-16 units each
    assert.equal(bounded(pairs), '😀'.repeat(MAX_ATTRIBUTE_LENGTH / 2));
    assert.equal(bounded(`a${pairs}`), `a${'😀'.repeat(MAX_ATTRIBUTE_LENGTH / 2 - 1)}`);
    assert.equal(bounded('/a', `/a?${'q'.repeat(5000)}`), '/a');
  });

  it('bounds the spans held while the collector does not answer, and counts the dropped ones', async () => {
    const pending: ((failure: ExportFailure | undefined) => void)[] = [];
    const stuck: SpanExporter = {
      export: () => new Promise<ExportFailure | undefined>((done) => void pending.push(done)),
      shutdown: () => Promise.resolve(),
    };
    const t = make({ ...ON, maxQueueSpans: 3, batchDelayMs: 1 }, { exporter: stuck });
    for (let i = 0; i < 5; i++) t.startOutbound(request({ 'x-sluice-force-trace': '1' }), {}, 'a')!.end(200);
    assert.equal(counts.get('dropped_queue_full'), 2);
    await new Promise<void>((resolve) => {
      const check = (): void => (pending.length > 0 ? resolve() : void setImmediate(check));
      check();
    });
    pending.shift()!({ reason: 'http_status', status: 400, attempts: 1 });
    await new Promise<void>((resolve) => {
      const check = (): void => (counts.has('dropped_export_failed') ? resolve() : void setImmediate(check));
      check();
    });
    assert.equal(counts.get('dropped_export_failed'), 3);
    assert.deepEqual(reasons, ['queue_full', 'queue_full', 'http_status']);
    // The budget is free again once the export ended.
    t.startOutbound(request({ 'x-sluice-force-trace': '1' }), {}, 'a')!.end(200);
    assert.equal(counts.get('dropped_queue_full'), 2);
  });
});
