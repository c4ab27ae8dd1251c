import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { buildProxyView } from '../../mesh-model/proxy-view.ts';
import type { ForwardDeps } from '../../sidecar/http-forward.ts';
import { LoadBalancer } from '../../sidecar/load-balancer.ts';
import { UpstreamPools } from '../../sidecar/upstream-pools.ts';
import { ProxyMetrics } from '../../sidecar/metrics.ts';
import { serviceWithEndpoints } from '../support/mesh-manifests.ts';
import { startLoopbackForwarder } from '../support/loopback-forwarder.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';

// Which failed upstream attempts the proxy sends again (ADR 0015), with real sockets on loopback: the
// forwarding path is driven with a fixed destination, upstreams are HTTP servers that close or reset
// connections at chosen moments. Every test counts what the upstream app actually processed.

/**
 * An upstream that answers requests it processes with its name, and for the others runs `drop`: what
 * happens to the Nth request on a connection (1-based) decides it.
 */
async function scripted(
  name: string,
  drop: (perConnection: number, req: http.IncomingMessage) => boolean | 'later',
): Promise<{ port: number; processed: string[]; seen: () => number; close: () => Promise<void> }> {
  const processed: string[] = [];
  let seen = 0;
  const counts = new WeakMap<object, number>();
  const server = http.createServer((req, res) => {
    seen++;
    const n = (counts.get(req.socket) ?? 0) + 1;
    counts.set(req.socket, n);
    const verdict = drop(n, req);
    if (verdict === true) return void req.socket.destroy();
    if (verdict === 'later') return void setTimeout(() => req.socket.destroy(), STALE_LATE_MS);
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      processed.push(`${req.method} ${body.length}`);
      res.end(name);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    processed,
    seen: () => seen,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Longer than STALE_RACE_MS: a close this late is not the keep-alive race. */
const STALE_LATE_MS = 1500;

describe('upstream retries (loopback)', () => {
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });

  const pod = (name: string) => ({
    name,
    namespace: 'app',
    ip: '127.0.0.1',
    serviceAccount: 'default',
    meshed: false,
  });

  /** A proxy for Service svc whose endpoints are these ports (all on 127.0.0.1, as separate slices). */
  async function proxyFor(ports: number[]): Promise<{ url: string; h2url: string; deps: ForwardDeps }> {
    const [service] = serviceWithEndpoints('app', 'svc', '10.96.0.1', [[80, ports[0]!]], [pod('a')]);
    const slices = ports.map(
      (port, i) =>
        ({
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: { name: `svc-${i}`, namespace: 'app', labels: { 'kubernetes.io/service-name': 'svc' } },
          ports: [{ port }],
          endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
        }) as K8sObject,
    );
    const view = buildProxyView([service!, ...slices], 'app', 'cluster.local');
    const deps: ForwardDeps = {
      pools: new UpstreamPools(() => undefined),
      lb: new LoadBalancer(),
      metrics: new ProxyMetrics(),
    };
    const forwarder = await startLoopbackForwarder(
      deps,
      view,
      { address: '10.96.0.1', port: 80 },
      { h2: true },
    );
    closers.push(() => forwarder.close());
    return {
      url: `http://127.0.0.1:${forwarder.port}`,
      h2url: `http://127.0.0.1:${forwarder.h2Port}`,
      deps,
    };
  }

  /** The h2c upstream listening, a proxy for it, and an h2c session to the proxy. */
  async function h2SessionTo(
    up: http2.Http2Server,
  ): Promise<{ session: http2.ClientHttp2Session; deps: ForwardDeps }> {
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    closers.push(() => {
      up.close();
    });
    const { h2url, deps } = await proxyFor([(up.address() as AddressInfo).port]);
    const session = http2.connect(h2url);
    closers.push(() => session.close());
    return { session, deps };
  }

  async function send(url: string, method: string, body?: string): Promise<{ status: number; text: string }> {
    const r = await fetch(url, { method, ...(body === undefined ? {} : { body }) });
    return { status: r.status, text: await r.text() };
  }

  const retries = (deps: ForwardDeps): string[] =>
    deps.metrics
      .render()
      .split('\n')
      .filter((l) => l.startsWith('sluice_upstream_retries_total{'));

  it('a POST raced by the server closing its idle keep-alive connection is sent again, and processed once', async () => {
    // The 2nd request on any connection finds it closed, as when the server's idle close crosses it.
    const up = await scripted('a', (n) => n > 1);
    closers.push(() => up.close());
    const { url, deps } = await proxyFor([up.port]);
    assert.equal((await send(`${url}/`, 'GET')).status, 200); // leaves one idle pooled connection
    assert.deepEqual(await send(`${url}/`, 'POST', 'order-1'), { status: 200, text: 'a' });
    assert.deepEqual(up.processed, ['GET 0', 'POST 7']);
    assert.deepEqual(retries(deps), [
      'sluice_upstream_retries_total{direction="outbound",failure="stale_connection"} 1',
    ]);
  });

  /** An HTTP/1.1 request whose body goes chunked (no Content-Length), in two writes. */
  function sendChunked(url: string, body: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(url, { method: 'POST', agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.write(body.slice(0, body.length >> 1));
      req.end(body.slice(body.length >> 1));
    });
  }

  it('a chunked POST (up to 64 KiB) raced by the idle close is sent again from its copy; a larger one is not', async () => {
    const up = await scripted('a', (n) => n > 1);
    closers.push(() => up.close());
    const { url, deps } = await proxyFor([up.port]);
    assert.equal((await send(`${url}/`, 'GET')).status, 200); // leaves one idle pooled connection
    assert.deepEqual(await sendChunked(`${url}/`, 'x'.repeat(60_000)), { status: 200, text: 'a' });
    assert.deepEqual(up.processed, ['GET 0', 'POST 60000']);
    assert.deepEqual(retries(deps), [
      'sluice_upstream_retries_total{direction="outbound",failure="stale_connection"} 1',
    ]);
    assert.equal((await send(`${url}/`, 'GET')).status, 200);
    const big = await sendChunked(`${url}/`, 'x'.repeat(100_000));
    assert.equal(big.status, 502, JSON.stringify(big));
    assert.deepEqual(up.processed, ['GET 0', 'POST 60000', 'GET 0']);
    assert.equal(retries(deps).length, 1, 'no retry of the large body');
  });

  it('a POST reset after it reached the app is not sent again; a GET is, once', async () => {
    const up = await scripted('a', () => true); // every request: the connection is cut
    closers.push(() => up.close());
    const { url, deps } = await proxyFor([up.port]);
    assert.equal((await send(`${url}/`, 'POST', 'order-1')).status, 502);
    assert.equal(up.seen(), 1, 'the POST reached the app once');
    assert.equal((await send(`${url}/`, 'GET')).status, 502);
    assert.equal(up.seen(), 3, 'the GET: the first attempt and one retry, no more');
    assert.deepEqual(retries(deps), [
      'sluice_upstream_retries_total{direction="outbound",failure="reset"} 1',
    ]);
  });

  it('a GET reset by one endpoint is answered by another', async () => {
    const bad = await scripted('bad', () => true);
    const good = await scripted('good', () => false);
    closers.push(
      () => bad.close(),
      () => good.close(),
    );
    const { url } = await proxyFor([bad.port, good.port]);
    for (let i = 0; i < 10; i++)
      assert.deepEqual(await send(`${url}/`, 'GET'), { status: 200, text: 'good' });
  });

  it('a reused connection closed well after the request was written is not the race: the POST fails', async () => {
    const up = await scripted('a', (n) => (n > 1 ? 'later' : false));
    closers.push(() => up.close());
    const { url, deps } = await proxyFor([up.port]);
    assert.equal((await send(`${url}/`, 'GET')).status, 200);
    assert.equal((await send(`${url}/`, 'POST', 'order-1')).status, 502);
    assert.deepEqual(up.processed, ['GET 0']);
    assert.equal(up.seen(), 2);
    assert.deepEqual(retries(deps), []);
  });

  it('a connect refused is sent again whatever the method, once by default', async () => {
    const dead1 = await scripted('x', () => false);
    const dead2 = await scripted('y', () => false);
    const good = await scripted('good', () => false);
    await dead1.close();
    await dead2.close();
    closers.push(() => good.close());
    // Two dead endpoints of three: some requests pick both dead ones and fail; none is processed twice.
    let ok = 0;
    let failed = 0;
    for (let i = 0; i < 12; i++) {
      const { url } = await proxyFor([dead1.port, dead2.port, good.port]);
      const r = await send(`${url}/`, 'POST', `n${i}`);
      if (r.status === 200) ok++;
      else {
        // Both attempts refused: nothing reached an app, the answer is the one for no endpoints.
        assert.deepEqual(r, { status: 503, text: 'no healthy endpoints for app/svc:80\n' });
        failed++;
      }
    }
    assert.equal(good.processed.length, ok);
    assert.ok(ok > 0 && ok + failed === 12, `${ok} ok, ${failed} failed`);
  });

  it('HTTP/2: a stream the upstream refused (REFUSED_STREAM) is sent again, a POST too, and processed once', async () => {
    const processed: string[] = [];
    let streams = 0;
    const up = http2.createServer();
    up.on('stream', (stream, headers) => {
      stream.on('error', () => undefined); // the refused one
      if (++streams === 1) return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      let body = '';
      stream.on('data', (c: Buffer) => (body += c.toString()));
      stream.on('end', () => {
        processed.push(`${headers[':method']} ${body}`);
        stream.respond({ ':status': 200 });
        stream.end('a');
      });
    });
    const { session, deps } = await h2SessionTo(up);
    const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = session.request({ ':method': 'POST', ':path': '/', 'content-length': '7' });
      let status = 0;
      let text = '';
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => resolve({ status, text }));
      req.on('error', reject);
      req.end('order-1');
    });
    assert.deepEqual(answer, { status: 200, text: 'a' });
    assert.deepEqual(processed, ['POST order-1']);
    assert.deepEqual(retries(deps), [
      'sluice_upstream_retries_total{direction="outbound",failure="refused"} 1',
    ]);
  });

  it('HTTP/2: a streamed body without Content-Length (gRPC) refused after it went out is sent again, once', async () => {
    const processed: string[] = [];
    let streams = 0;
    const up = http2.createServer();
    up.on('stream', (stream, headers) => {
      stream.on('error', () => undefined); // the refused one
      const first = ++streams === 1;
      let body = '';
      stream.on('data', (c: Buffer) => (body += c.toString()));
      stream.on('end', () => {
        // The first stream is refused only once its whole body has arrived: the proxy has streamed it.
        if (first) return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        processed.push(`${headers[':method']} ${body}`);
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end('a');
      });
    });
    const { session, deps } = await h2SessionTo(up);
    const answer = await new Promise<{ status: number; grpc: string }>((resolve, reject) => {
      const req = session.request({
        ':method': 'POST',
        ':path': '/echo.Echo/Call',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      let status = 0;
      let grpc = '';
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('trailers', (t: http2.IncomingHttpHeaders) => (grpc = String(t['grpc-status'])));
      req.resume();
      req.on('end', () => resolve({ status, grpc }));
      req.on('error', reject);
      req.write('call-');
      setImmediate(() => req.end('1'));
    });
    assert.deepEqual(answer, { status: 200, grpc: '0' });
    assert.deepEqual(processed, ['POST call-1']);
    assert.deepEqual(retries(deps), [
      'sluice_upstream_retries_total{direction="outbound",failure="refused"} 1',
    ]);
  });
});
