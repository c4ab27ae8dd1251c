// Replies a sidecar makes itself before any route or app is involved (outbound: not ready; inbound: a
// connection without a destination, a bad path): a span marked as an error with the cause, and the request
// counted with its body sizes. The listeners' HTTP servers get real loopback connections; spans into
// memory.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { setConnectionInfo, type ConnectionInfo } from '../../../sidecar/connection-info.ts';
import { createInboundListener } from '../../../sidecar/inbound-listener.ts';
import { createOutboundListener } from '../../../sidecar/outbound-listener.ts';
import type { HttpServers } from '../../../sidecar/http-servers.ts';
import { LoadBalancer } from '../../../sidecar/load-balancer.ts';
import { ProxyMetrics } from '../../../sidecar/metrics.ts';
import { UpstreamPools } from '../../../sidecar/upstream-pools.ts';
import { RequestTracing } from '../../../sidecar/tracing/request-tracing.ts';
import { sampledTracing, type MemorySpanExporter } from '../../support/sampled-tracing.ts';

describe('sidecar local replies', () => {
  let exporter: MemorySpanExporter;
  let tracing: RequestTracing;
  let metrics: ProxyMetrics;
  let front: net.Server | undefined;
  let servers: HttpServers | undefined;

  beforeEach(() => {
    metrics = new ProxyMetrics();
    ({ exporter, tracing } = sampledTracing('app', 'ns'));
  });
  afterEach(async () => {
    front?.close();
    servers?.http1.closeAllConnections();
    await tracing.shutdown();
  });

  const deps = () => ({
    pools: new UpstreamPools(() => undefined),
    lb: new LoadBalancer(),
    metrics,
    tracing,
  });

  /** A loopback port whose connections reach `http` with `info` attached, as the listener's detection would. */
  async function serve(http: HttpServers, info: ConnectionInfo | undefined): Promise<number> {
    servers = http;
    front = net.createServer((socket) => {
      if (info) setConnectionInfo(socket, info);
      http.http1.emit('connection', socket);
    });
    front.listen(0, '127.0.0.1');
    await once(front, 'listening');
    return (front.address() as AddressInfo).port;
  }

  function post(port: number, path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path, headers: { host: 'svc.ns' }, agent: false },
        (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end('hello'); // content-length 5
    });
  }

  async function onlySpan() {
    await tracing.flush();
    const spans = exporter.spans;
    assert.equal(spans.length, 1);
    return spans[0]!;
  }

  function counted(prefix: 'client' | 'server', status: number, backend: string, body: string): void {
    const text = metrics.render();
    const labels = `http_request_method="POST",http_response_status_code="${status}",${prefix === 'client' ? 'sluice_route="none",' : ''}sluice_backend="${backend}",sluice_peer_identity="none"`;
    assert.ok(text.includes(`http_${prefix}_request_body_size_bytes_sum{${labels}} 5\n`), text);
    assert.ok(
      text.includes(`http_${prefix}_response_body_size_bytes_sum{${labels}} ${Buffer.byteLength(body)}\n`),
      text,
    );
    assert.ok(text.includes(`http_${prefix}_request_duration_seconds_count{${labels}} 1\n`), text);
  }

  function assertError(
    span: Awaited<ReturnType<typeof onlySpan>>,
    kind: SpanKind,
    code: number,
    cause: string,
  ) {
    assert.equal(span.kind, kind);
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(span.attributes['error.type'], cause);
    assert.equal(span.attributes['http.response.status_code'], code);
  }

  it('outbound not ready: 503 with a CLIENT span and the metrics', async () => {
    const l = createOutboundListener({
      deps: deps(),
      view: () => undefined,
      detectTimeoutMs: 1000,
      ownPorts: new Set(),
    });
    const port = await serve(l.http, undefined);
    const res = await post(port, '/x');
    assert.equal(res.status, 503);
    assertError(await onlySpan(), SpanKind.CLIENT, 503, 'not_ready');
    counted('client', 503, 'none', res.body);
    assert.ok(metrics.render().includes('sluice_errors_total{direction="outbound",cause="not_ready"} 1'));
  });

  const inbound = () =>
    createInboundListener({
      deps: deps(),
      credentials: () => undefined,
      trustDomain: () => undefined,
      mode: 'PERMISSIVE',
      detectTimeoutMs: 1000,
      appAddress: '127.0.0.1',
      ownPorts: new Set(),
      view: () => undefined,
    });

  it('inbound bad path: 400 with a SERVER span and the metrics', async () => {
    const port = await serve(inbound().http, { address: '127.0.0.1', port: 8080, peerIdentity: undefined });
    const res = await post(port, '/%zz');
    assert.equal(res.status, 400);
    assertError(await onlySpan(), SpanKind.SERVER, 400, 'bad_path');
    counted('server', 400, 'app:8080', res.body);
    assert.ok(metrics.render().includes('sluice_errors_total{direction="inbound",cause="bad_path"} 1'));
  });

  it('inbound connection without a destination: 500 with a SERVER span and the metrics', async () => {
    const port = await serve(inbound().http, undefined);
    const res = await post(port, '/x');
    assert.equal(res.status, 500);
    assertError(await onlySpan(), SpanKind.SERVER, 500, 'no_destination');
    counted('server', 500, 'none', res.body);
  });
});
