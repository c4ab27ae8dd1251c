// Replies a gateway makes itself (not ready, misdirected, no route): a SERVER span marked as an error with
// the cause, and the request counted with its body sizes, like a forwarded request. Real listeners on
// loopback; spans into memory.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { K8sObject } from '../../../mesh-model/k8s-objects.ts';
import { createCa, loadCa } from '../../../pki/ca.ts';
import { buildGatewayConfig, type GatewayConfig } from '../../../sidecar/gateway-config.ts';
import { createGatewayListener, type GatewayListener } from '../../../sidecar/gateway-listeners.ts';
import { GatewayCertificates } from '../../../sidecar/gateway-tls.ts';
import { LoadBalancer } from '../../../sidecar/load-balancer.ts';
import { ProxyMetrics } from '../../../sidecar/metrics.ts';
import { UpstreamPools } from '../../../sidecar/upstream-pools.ts';
import { RequestTracing } from '../../../sidecar/tracing/request-tracing.ts';
import { sluiceGateway, sluiceGatewayClass } from '../../support/gateway-manifests.ts';
import { sampledTracing, type MemorySpanExporter } from '../../support/sampled-tracing.ts';
import { serverCert, tlsSecret } from '../../support/server-cert.ts';

const PORT = 8443;

function gatewayObjects(protocol: 'HTTP' | 'HTTPS'): K8sObject[] {
  const listener = (name: string, hostname: string): unknown => ({
    name,
    port: PORT,
    protocol,
    hostname,
    ...(protocol === 'HTTPS'
      ? { tls: { mode: 'Terminate', certificateRefs: [{ kind: 'Secret', group: '', name: `${name}-cert` }] } }
      : {}),
    allowedRoutes: { namespaces: { from: 'All' } },
  });
  return [
    sluiceGatewayClass(),
    sluiceGateway('infra', 'gw', [listener('a', 'a.example.com'), listener('b', 'b.example.com')]),
  ];
}

describe('gateway local replies', () => {
  let exporter: MemorySpanExporter;
  let tracing: RequestTracing;
  let metrics: ProxyMetrics;
  let listener: GatewayListener | undefined;

  beforeEach(() => {
    metrics = new ProxyMetrics();
    ({ exporter, tracing } = sampledTracing('gw-sluice', 'infra'));
  });
  afterEach(async () => {
    listener?.server.close();
    listener?.http.http1.closeAllConnections();
    await tracing.shutdown();
  });

  async function start(
    protocol: 'HTTP' | 'HTTPS',
    config: GatewayConfig | undefined,
    certificates = new GatewayCertificates(),
  ): Promise<number> {
    listener = createGatewayListener({
      deps: { pools: new UpstreamPools(() => undefined), lb: new LoadBalancer(), metrics, tracing },
      port: PORT,
      protocol,
      config: () => config,
      certificates,
      detectTimeoutMs: 1000,
    });
    listener.server.listen(0, '127.0.0.1');
    await once(listener.server, 'listening');
    return (listener.server.address() as AddressInfo).port;
  }

  async function onlySpan(): Promise<{
    attributes: Record<string, unknown>;
    status: { code: number; message?: string };
    kind: number;
  }> {
    await tracing.flush();
    const spans = exporter.spans;
    assert.equal(spans.length, 1, 'one SERVER span, no CLIENT span');
    return spans[0]!;
  }

  function post(port: number, host: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/x', headers: { host }, agent: false },
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

  const sizes = (status: number, body: string): void => {
    const text = metrics.render();
    const labels = `http_request_method="POST",http_response_status_code="${status}",sluice_route="none",sluice_backend="none",sluice_peer_identity="none"`;
    assert.ok(text.includes(`http_client_request_body_size_bytes_sum{${labels}} 5\n`), text);
    assert.ok(
      text.includes(`http_client_response_body_size_bytes_sum{${labels}} ${Buffer.byteLength(body)}\n`),
    );
    assert.ok(text.includes(`http_client_request_duration_seconds_count{${labels}} 1\n`));
  };

  it('not ready (no configuration): 503 with a span and the metrics', async () => {
    const port = await start('HTTP', undefined);
    const res = await post(port, 'a.example.com');
    assert.equal(res.status, 503);
    const span = await onlySpan();
    assert.equal(span.kind, SpanKind.SERVER);
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(span.attributes['sluice.local_reply.cause'], 'not_ready');
    assert.equal(span.attributes['error.type'], 'not_ready');
    assert.equal(span.attributes['http.response.status_code'], 503);
    sizes(503, res.body);
    assert.ok(metrics.render().includes('sluice_errors_total{direction="gateway",cause="not_ready"} 1'));
  });

  it('no route: 404 with a span and the metrics', async () => {
    const port = await start(
      'HTTP',
      buildGatewayConfig(gatewayObjects('HTTP'), 'infra', 'gw', 'cluster.local'),
    );
    const res = await post(port, 'a.example.com');
    assert.equal(res.status, 404);
    const span = await onlySpan();
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.ok(span.attributes['sluice.local_reply.cause']);
    sizes(404, res.body);
  });

  it('misdirected (Host not the listener TLS chose): 421 with a span and the metrics, counted once', async () => {
    const ca = await loadCa(await createCa({ trustDomain: 'cluster.local' }));
    const objects = [
      ...gatewayObjects('HTTPS'),
      tlsSecret('infra', 'a-cert', await serverCert(ca, 'a.example.com')),
      tlsSecret('infra', 'b-cert', await serverCert(ca, 'b.example.com')),
    ];
    const config = buildGatewayConfig(objects, 'infra', 'gw', 'cluster.local');
    const certificates = new GatewayCertificates();
    assert.deepEqual(certificates.update(config), []);
    const port = await start('HTTPS', config, certificates);
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/x',
          servername: 'a.example.com',
          headers: { host: 'b.example.com' },
          ca: ca.certPem,
          agent: false,
        },
        (r) => {
          let body = '';
          r.setEncoding('utf8').on('data', (c: string) => (body += c));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end('hello');
    });
    assert.equal(res.status, 421);
    const span = await onlySpan();
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(span.attributes['sluice.local_reply.cause'], 'misdirected');
    assert.equal(span.attributes['url.scheme'], 'https');
    sizes(421, res.body);
    assert.ok(metrics.render().includes('sluice_errors_total{direction="gateway",cause="misdirected"} 1\n'));
  });
});
