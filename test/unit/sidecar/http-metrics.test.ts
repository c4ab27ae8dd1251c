// The OTel-named HTTP histograms (duration, body sizes) and the opaque TCP counters, next to the existing
// sluice_* series; label sets stay bounded.
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { MAX_PEER_IDENTITIES, ProxyMetrics } from '../../../sidecar/metrics.ts';
import { countFlowingBytes, grpcStatusOf } from '../../../sidecar/body-bytes.ts';
import { waitFor } from '../../support/wait-for.ts';

const REVIEWS = 'spiffe://cluster.local/ns/shop/sa/reviews';

describe('OTel HTTP metrics', () => {
  it('records inbound as http.server and outbound as http.client duration, with bounded method labels', () => {
    const m = new ProxyMetrics();
    const started = performance.now();
    m.request('inbound', 'none', 'app:9080', 200, started, 'GET', { peerIdentity: REVIEWS });
    m.request('outbound', 'shop/reviews', 'shop/reviews:80', 503, started, 'PURGE');
    m.request('outbound', 'shop/reviews', 'shop/reviews:80', 200, started);
    const text = m.render();
    assert.match(
      text,
      /^http_server_request_duration_seconds_count\{http_request_method="GET",http_response_status_code="200",sluice_backend="app:9080",sluice_peer_identity="spiffe:\/\/cluster.local\/ns\/shop\/sa\/reviews"\} 1$/m,
    );
    assert.match(
      text,
      /^http_client_request_duration_seconds_count\{http_request_method="_OTHER",http_response_status_code="503",sluice_route="shop\/reviews",sluice_backend="shop\/reviews:80",sluice_peer_identity="none"\} 1$/m,
    );
    assert.match(text, /^# TYPE http_client_request_duration_seconds histogram$/m);
    // Without a method only the existing series count it.
    assert.match(
      text,
      /^sluice_requests_total\{direction="outbound",route="shop\/reviews",backend="shop\/reviews:80",code="200"\} 1$/m,
    );
    assert.doesNotMatch(text, /http_client_request_duration_seconds_count\{[^}]*"200"/);
  });

  it('records request and response body sizes in byte buckets', () => {
    const m = new ProxyMetrics();
    const facts = { peerIdentity: REVIEWS, requestBytes: 100, responseBytes: 5000 };
    m.request('outbound', 'shop/reviews', 'shop/reviews:80', 200, performance.now(), 'POST', facts);
    const text = m.render();
    const labels = `http_request_method="POST",http_response_status_code="200",sluice_route="shop/reviews",sluice_backend="shop/reviews:80",sluice_peer_identity="${REVIEWS}"`;
    assert.ok(text.includes(`http_client_request_body_size_bytes_bucket{${labels},le="64"} 0`));
    assert.ok(text.includes(`http_client_request_body_size_bytes_bucket{${labels},le="256"} 1`));
    assert.ok(text.includes(`http_client_request_body_size_bytes_sum{${labels}} 100`));
    assert.ok(text.includes(`http_client_response_body_size_bytes_bucket{${labels},le="4096"} 0`));
    assert.ok(text.includes(`http_client_response_body_size_bytes_bucket{${labels},le="16384"} 1`));
    assert.match(text, /^# TYPE http_server_request_body_size_bytes histogram$/m);
  });

  it('keeps at most MAX_PEER_IDENTITIES peer identities as labels, the rest as _other', () => {
    const m = new ProxyMetrics();
    for (let i = 0; i < MAX_PEER_IDENTITIES + 5; i++) {
      const peerIdentity = `spiffe://cluster.local/ns/n${i}/sa/x`;
      m.request('inbound', 'none', 'app:9080', 200, performance.now(), 'GET', { peerIdentity });
    }
    const peers = new Set(
      [
        ...m
          .render()
          .matchAll(/^http_server_request_duration_seconds_count\{.*sluice_peer_identity="([^"]*)"/gm),
      ].map((x) => x[1]),
    );
    assert.equal(peers.size, MAX_PEER_IDENTITIES + 1);
    assert.ok(peers.has('_other'));
    assert.ok(peers.has('spiffe://cluster.local/ns/n0/sa/x'));
  });

  it('counts into the same series through a kept series group as through request(), whatever the order', () => {
    const m = new ProxyMetrics();
    const group = m.requestSeries('inbound', 'none', 'app:9080');
    assert.equal(m.requestSeries('inbound', 'none', 'app:9080'), group, 'one group per label values');
    const started = performance.now();
    // Alternating status, method and peer: the last-hit shortcut must not carry one request's series over.
    m.recordIn(group, 200, started, 'GET', { peerIdentity: REVIEWS });
    m.recordIn(group, 503, started, 'GET', { peerIdentity: REVIEWS });
    m.request('inbound', 'none', 'app:9080', 200, started, 'GET', { peerIdentity: REVIEWS });
    m.recordIn(group, 200, started, 'PURGE', { peerIdentity: REVIEWS });
    m.recordIn(group, 200, started, 'BREW', { peerIdentity: REVIEWS });
    m.recordIn(group, 200, started, 'GET', {});
    const text = m.render();
    const count = (method: string, code: number, peer: string): string =>
      `http_server_request_duration_seconds_count{http_request_method="${method}",http_response_status_code="${code}",sluice_backend="app:9080",sluice_peer_identity="${peer}"}`;
    assert.ok(text.includes(`${count('GET', 200, REVIEWS)} 2\n`));
    assert.ok(text.includes(`${count('GET', 503, REVIEWS)} 1\n`));
    assert.ok(text.includes(`${count('_OTHER', 200, REVIEWS)} 2\n`), 'two unknown methods, one series');
    assert.ok(text.includes(`${count('GET', 200, 'none')} 1\n`));
    assert.match(
      text,
      /^sluice_requests_total\{direction="inbound",route="none",backend="app:9080",code="200"\} 5$/m,
    );
    assert.equal(text.match(/^sluice_requests_total\{direction="inbound"/gm)?.length, 2);
  });

  it('keeps a peer first seen past the bound as _other through a kept series group', () => {
    const m = new ProxyMetrics();
    const group = m.requestSeries('inbound', 'none', 'app:9080');
    for (let i = 0; i < MAX_PEER_IDENTITIES; i++)
      m.request('outbound', 'r', 'b', 200, performance.now(), 'GET', { peerIdentity: `spiffe://td/p${i}` });
    const late = 'spiffe://td/late';
    m.recordIn(group, 200, performance.now(), 'GET', { peerIdentity: late });
    m.recordIn(group, 200, performance.now(), 'GET', { peerIdentity: late });
    const text = m.render();
    assert.doesNotMatch(text, /spiffe:\/\/td\/late/);
    assert.match(text, /sluice_backend="app:9080",sluice_peer_identity="_other"\} 2$/m);
  });
});

describe('body bytes and gRPC status', () => {
  it('counts what a reader consumes, joining only when the stream flows', async () => {
    const body = new PassThrough();
    const counted = countFlowingBytes(body);
    body.write('hello ');
    body.end('world');
    assert.equal(counted(), 0, 'nobody reads yet: nothing consumed, nothing lost');
    const sink = new PassThrough();
    body.pipe(sink);
    let got = '';
    sink.on('data', (c: Buffer) => (got += c.toString()));
    await once(sink, 'end');
    assert.equal(got, 'hello world');
    assert.equal(counted(), 11);
  });

  it('reads grpc-status from trailers, else from the headers (trailers-only)', () => {
    assert.equal(grpcStatusOf({ 'grpc-status': '0' }, { 'grpc-status': '14' }), 14);
    assert.equal(grpcStatusOf({ 'grpc-status': '5' }, undefined), 5);
    assert.equal(grpcStatusOf({}, {}), undefined);
    assert.equal(grpcStatusOf({ 'grpc-status': 'x' }, undefined), undefined);
  });
});

describe('opaque TCP metrics', () => {
  it('counts relayed connections and their bytes, open ones included', async () => {
    const m = new ProxyMetrics();
    const server = net.createServer((s) => {
      m.tcp.track('outbound', 'shop/db:5432', s, 'spiffe://cluster.local/ns/shop/sa/db');
      s.on('data', (d) => s.write(d));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const client = net.connect(port, '127.0.0.1');
    client.write('ping!');
    await once(client, 'data');
    const labels =
      'direction="outbound",sluice_backend="shop/db:5432",sluice_peer_identity="spiffe://cluster.local/ns/shop/sa/db"';
    const open = m.render();
    assert.ok(open.includes(`sluice_tcp_connections_opened_total{${labels}} 1`));
    assert.ok(open.includes(`sluice_tcp_connections_closed_total{${labels}} 0`));
    assert.ok(open.includes(`sluice_tcp_io_bytes_total{${labels},network_io_direction="receive"} 5`));
    assert.ok(open.includes(`sluice_tcp_io_bytes_total{${labels},network_io_direction="transmit"} 5`));
    client.end();
    await waitFor('the close counted', () =>
      m.render().includes(`sluice_tcp_connections_closed_total{${labels}} 1`),
    );
    assert.ok(m.render().includes(`sluice_tcp_io_bytes_total{${labels},network_io_direction="receive"} 5`));
    server.close();
  });

  it('labels connections by peer identity, none without mTLS, bounded with the HTTP series', () => {
    const m = new ProxyMetrics();
    const socket = (): net.Socket => new net.Socket();
    m.tcp.track('inbound', 'app:5432', socket());
    for (let i = 0; i < MAX_PEER_IDENTITIES + 5; i++)
      m.tcp.track('inbound', 'app:5432', socket(), `spiffe://cluster.local/ns/a/sa/s${i}`);
    const text = m.render();
    const opened = (peer: string): string =>
      `sluice_tcp_connections_opened_total{direction="inbound",sluice_backend="app:5432",sluice_peer_identity="${peer}"}`;
    assert.ok(text.includes(`${opened('none')} 1`));
    assert.ok(text.includes(`${opened('spiffe://cluster.local/ns/a/sa/s0')} 1`));
    assert.ok(text.includes(`${opened('_other')} 5`));
    // The HTTP series share the bound: a new identity there is _other too.
    m.request('inbound', 'none', 'app:80', 200, performance.now(), 'GET', { peerIdentity: 'spiffe://x/new' });
    assert.match(
      m.render(),
      /http_server_request_duration_seconds_count\{[^}]*sluice_peer_identity="_other"\} 1/,
    );
  });
});
