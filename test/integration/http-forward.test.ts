import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { buildProxyView } from '../../mesh-model/proxy-view.ts';
import { LoadBalancer } from '../../sidecar/load-balancer.ts';
import { UpstreamPools } from '../../sidecar/upstream-pools.ts';
import { ProxyMetrics } from '../../sidecar/metrics.ts';
import { httpRoute, serviceWithEndpoints } from '../support/mesh-manifests.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import { waitFor } from '../support/wait-for.ts';
import { loopbackPod, startLoopbackForwarder } from '../support/loopback-forwarder.ts';
import { upstream, type Upstream } from '../support/scripted-upstream.ts';

// The forwarding path on loopback with real sockets (no capture needed): the outbound HTTP server is
// driven directly with a fixed destination, upstreams are small HTTP servers with scripted behaviour.

describe('HTTP forwarding (loopback)', () => {
  const closers: (() => Promise<void> | void)[] = [];
  /** The metrics of the last proxy made. */
  let metrics: ProxyMetrics;
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });

  async function forwarderFor(objects: K8sObject[], vip: string, options: { h2?: boolean } = {}) {
    const view = buildProxyView(objects, 'app', 'cluster.local');
    const deps = {
      pools: new UpstreamPools(() => undefined),
      lb: new LoadBalancer(),
      metrics: new ProxyMetrics(),
    };
    metrics = deps.metrics;
    const forwarder = await startLoopbackForwarder(deps, view, { address: vip, port: 80 }, options);
    closers.push(() => forwarder.close());
    return forwarder;
  }

  async function proxyFor(objects: K8sObject[], vip: string): Promise<string> {
    return `http://127.0.0.1:${(await forwarderFor(objects, vip)).port}`;
  }

  const pod = (name: string) => loopbackPod(name, 'app');
  const mesh = (rules: unknown[], ports: Record<string, number>): K8sObject[] => [
    ...serviceWithEndpoints('app', 'svc', '10.96.0.1', [[80, ports.svc!]], [pod('a')]),
    ...Object.entries(ports)
      .filter(([n]) => n !== 'svc')
      .flatMap(([n, p]) => serviceWithEndpoints('app', n, `10.96.1.${p % 200}`, [[80, p]], [pod(n)])),
    httpRoute('app', 'r', 'svc', rules),
  ];

  /** Service svc with two endpoints: the given port, and one that refuses connections. */
  async function withRefusingEndpoint(goodPort: number): Promise<K8sObject[]> {
    const dead = await upstream(() => undefined);
    await dead.close();
    return [
      ...serviceWithEndpoints('app', 'svc', '10.96.0.1', [[80, goodPort]], [pod('a')]),
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'svc-dead', namespace: 'app', labels: { 'kubernetes.io/service-name': 'svc' } },
        ports: [{ port: dead.port }],
        endpoints: [{ addresses: ['127.0.0.2'], conditions: { ready: true } }],
      } as K8sObject,
    ];
  }

  /** A proxy whose svc routes to an upstream answering "ok". */
  async function proxyToOk(): Promise<{ ok: Upstream; url: URL }> {
    const ok = await upstream((_n, _req, res) => res.end('ok'));
    closers.push(() => ok.close());
    const rules = [{ backendRefs: [{ name: 'ok', port: 80 }] }];
    return { ok, url: new URL(await proxyFor(mesh(rules, { svc: ok.port, ok: ok.port }), '10.96.0.1')) };
  }

  async function fetchText(url: string, init?: RequestInit): Promise<{ status: number; text: string }> {
    const r = await fetch(url, init);
    return { status: r.status, text: await r.text() };
  }

  it('retries a bodyless request on a listed status code', async () => {
    const flaky = await upstream((n, _req, res) => res.writeHead(n === 1 ? 503 : 200).end(`attempt ${n}`));
    closers.push(() => flaky.close());
    const url = await proxyFor(
      mesh(
        [
          {
            backendRefs: [{ name: 'flaky', port: 80 }],
            retry: { codes: [503], attempts: 2, backoff: '10ms' },
          },
        ],
        { svc: flaky.port, flaky: flaky.port },
      ),
      '10.96.0.1',
    );
    assert.deepEqual(await fetchText(`${url}/`), { status: 200, text: 'attempt 2' });
  });

  it('does not retry requests with a streamed body; a small one is kept and retried', async () => {
    const flaky = await upstream((n, _req, res) => res.writeHead(503).end(`attempt ${n}`));
    closers.push(() => flaky.close());
    const url = await proxyFor(
      mesh([{ backendRefs: [{ name: 'flaky', port: 80 }], retry: { codes: [503], attempts: 3 } }], {
        svc: flaky.port,
        flaky: flaky.port,
      }),
      '10.96.0.1',
    );
    assert.equal((await fetchText(`${url}/`, { method: 'POST', body: 'x'.repeat(100_000) })).status, 503);
    assert.equal(flaky.hits.length, 1);
    assert.equal((await fetchText(`${url}/`, { method: 'POST', body: 'x' })).status, 503);
    assert.equal(flaky.hits.length, 5, 'the small body: the first attempt and 3 retries');
  });

  it('request timeout → 504 with a reason', async () => {
    const slow = await upstream((_n, _req, res) => setTimeout(() => res.end('late'), 2000).unref());
    closers.push(() => slow.close());
    const url = await proxyFor(
      mesh([{ backendRefs: [{ name: 'slow', port: 80 }], timeouts: { request: '200ms' } }], {
        svc: slow.port,
        slow: slow.port,
      }),
      '10.96.0.1',
    );
    const r = await fetchText(`${url}/`);
    assert.equal(r.status, 504);
    assert.match(r.text, /request timeout after 200 ms/);
  });

  it('mirrors bodyless requests to the mirror backend and ignores its answer', async () => {
    const main = await upstream((_n, _req, res) => res.end('main'));
    const shadow = await upstream((_n, _req, res) => res.writeHead(500).end('shadow'));
    closers.push(
      () => main.close(),
      () => shadow.close(),
    );
    const url = await proxyFor(
      mesh(
        [
          {
            filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 } } }],
            backendRefs: [{ name: 'main', port: 80 }],
          },
        ],
        {
          svc: main.port,
          main: main.port,
          shadow: shadow.port,
        },
      ),
      '10.96.0.1',
    );
    assert.deepEqual(await fetchText(`${url}/m?x=1`), { status: 200, text: 'main' });
    const hit = await waitFor('the mirrored request', () => shadow.hits[0]);
    assert.equal(hit.url, '/m?x=1');
  });

  it('connection refused on one endpoint is retried on another', async () => {
    const good = await upstream((_n, _req, res) => res.end('ok'));
    closers.push(() => good.close());
    const objects = await withRefusingEndpoint(good.port);
    const url = await proxyFor(objects, '10.96.0.1');
    for (let i = 0; i < 10; i++) assert.equal((await fetchText(`${url}/`)).status, 200);
  });

  it('a request with a body is retried intact after a refused connect', async () => {
    const received: number[] = [];
    const good = await upstream((_n, req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => {
        received.push(n);
        res.end('ok');
      });
    });
    closers.push(() => good.close());
    const objects = await withRefusingEndpoint(good.port);
    // A fresh proxy each time, so the dead endpoint is not yet in backoff and gets picked about half the time.
    for (let i = 0; i < 8; i++) {
      const url = await proxyFor(objects, '10.96.0.1');
      const r = await fetchText(`${url}/upload`, { method: 'POST', body: 'x'.repeat(200_000) });
      assert.equal(r.status, 200);
    }
    assert.deepEqual(received, Array(8).fill(200_000));
  });

  it('counts request and response body bytes in the http.client body size histograms', async () => {
    const echo = await upstream((_n, req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end('y'.repeat(3000 + (n > 0 ? 1 : 0))));
    });
    closers.push(() => echo.close());
    const url = await proxyFor(
      mesh([{ backendRefs: [{ name: 'svc', port: 80 }] }], { svc: echo.port }),
      '10.96.0.1',
    );
    assert.equal(
      (await fetchText(`${url}/upload`, { method: 'POST', body: 'x'.repeat(200_000) })).status,
      200,
    );
    const text = metrics.render();
    assert.match(
      text,
      /^http_client_request_body_size_bytes_sum\{http_request_method="POST",[^}]*\} 200000$/m,
    );
    assert.match(
      text,
      /^http_client_response_body_size_bytes_sum\{http_request_method="POST",[^}]*\} 3001$/m,
    );
  });

  it('upstream that resets the connection → 502 naming the cause; proxy keeps serving', async () => {
    const rude = await upstream((n, req, res) => (n === 1 ? req.socket.destroy() : res.end('fine')));
    closers.push(() => rude.close());
    const url = await proxyFor(
      mesh([{ backendRefs: [{ name: 'rude', port: 80 }] }], { svc: rude.port, rude: rude.port }),
      '10.96.0.1',
    );
    const first = await fetchText(`${url}/`, { method: 'POST', body: 'x' });
    assert.equal(first.status, 502);
    assert.match(
      first.text,
      /^the connection was reset before an answer \(app\/rude:80, ECONNRESET\); not retried: POST is not idempotent\n$/,
    );
    assert.doesNotMatch(first.text, /127\.0\.0\.1|spiffe:/, 'no address or identity in the body');
    assert.equal((await fetchText(`${url}/`)).text, 'fine');
  });

  it('malformed requests get 400, oversized headers 431, and the proxy keeps serving', async () => {
    const { url } = await proxyToOk();
    const raw = (payload: string): Promise<string> => rawExchange(url, payload);
    assert.match(await raw('GET / HTTP/1.1\r\nbad header line\r\n\r\n'), /^HTTP\/1.1 400/);
    assert.match(
      await raw(`GET / HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(70_000)}\r\n\r\n`),
      /^HTTP\/1.1 431/,
    );
    await raw('GET / HTT'); // abruptly closed mid-request
    assert.equal((await fetchText(url.href)).text, 'ok');
  });

  /** Writes `payload` on a new connection, half-closes, and resolves with all the proxy sent back. */
  async function rawExchange(url: URL, payload: string): Promise<string> {
    const net = await import('node:net');
    return new Promise((resolve) => {
      const s = net.connect(Number(url.port), '127.0.0.1', () => s.end(payload));
      let out = '';
      s.on('data', (d: Buffer) => (out += d.toString()));
      s.on('close', () => resolve(out));
      s.on('error', () => resolve(out));
    });
  }

  it('OPTIONS * (asterisk form) gets 400 naming the cause, and nothing reaches the app', async () => {
    const { ok, url } = await proxyToOk();
    const out = await rawExchange(url, 'OPTIONS * HTTP/1.1\r\nhost: svc\r\n\r\n');
    assert.match(out, /^HTTP\/1\.1 400 /);
    assert.match(
      out,
      /bad request: the request target \* \(asterisk form\) names no resource a route can match/,
    );
    assert.deepEqual(ok.hits, []);
  });

  // Node's HTTP client stops listening for its socket's 'drain' once a complete response has come: a request
  // whose body write was waiting for it then never ends, and its keep-alive socket never goes back to the
  // agent, so the next request waits for it forever (ADR 0024: the hostile app's early 413 through the mesh).
  it('an answer before the request body was read says Connection: close; a Node client sends the next request', async () => {
    const app = await earlyAnswering();
    closers.push(() => app.close());
    const url = await proxyFor(
      mesh([{ backendRefs: [{ name: 'app', port: 80 }] }], { svc: app.port, app: app.port }),
      '10.96.0.1',
    );
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(() => agent.destroy());
    const body = Buffer.alloc(64 * 1024 * 1024, 'y');
    for (const n of [1, 2]) {
      const answer = await postBlocked(`${url}/upload/${n}`, agent, body);
      assert.deepEqual(answer, { status: 413, connection: 'close' }, `request ${n}`);
    }
  });

  it('HTTP/2: the rest of a body after its response ended (a 502) is read, so the client can finish', async () => {
    const resetting = net.createServer((s) => s.on('error', () => undefined).on('data', () => s.destroy()));
    await new Promise<void>((r) => resetting.listen(0, '127.0.0.1', r));
    closers.push(() => void resetting.close());
    const port = (resetting.address() as net.AddressInfo).port;
    const forwarder = await forwarderFor(
      mesh([{ backendRefs: [{ name: 'app', port: 80 }] }], { svc: port, app: port }),
      '10.96.0.1',
      { h2: true },
    );
    const session = http2.connect(`http://127.0.0.1:${forwarder.h2Port}`);
    closers.push(() => session.destroy());
    // Before: the body no longer read once the 502 went out, the client waited out of window until the
    // stream's body idle timeout (60 s).
    const stream = session.request({ ':method': 'POST', ':path': '/upload' });
    let status = 0;
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.resume();
    const closed = new Promise<number>((r) => stream.on('close', () => r(stream.rstCode)));
    stream.on('error', () => undefined);
    const chunk = Buffer.alloc(64 * 1024, 'y');
    let left = 256; // 16 MiB, past the session's and stream's windows
    const pump = (): void => {
      while (left-- > 0) if (!stream.write(chunk)) return void stream.once('drain', pump);
      stream.end();
    };
    pump();
    assert.equal(await closed, http2.constants.NGHTTP2_NO_ERROR);
    assert.equal(status, 502);
  });

  it('pipelined requests are forwarded one at a time, not on a connection each, and answered in order', async () => {
    let inFlight = 0;
    let most = 0;
    const sockets = new Set<unknown>();
    const slow = await upstream((_n, req, res) => {
      sockets.add(req.socket);
      most = Math.max(most, ++inFlight);
      setTimeout(() => {
        inFlight--;
        res.end(req.url);
      }, 20);
    });
    closers.push(() => slow.close());
    const url = new URL(
      await proxyFor(
        mesh([{ backendRefs: [{ name: 'slow', port: 80 }] }], { svc: slow.port, slow: slow.port }),
        '10.96.0.1',
      ),
    );
    const paths = ['/1', '/2', '/3', '/4', '/5', '/6'];
    // Not half-closed: a client's FIN aborts the requests it has not been answered yet (Node's default).
    const s = net.connect(Number(url.port), '127.0.0.1');
    closers.push(() => void s.destroy());
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.write(paths.map((p) => `GET ${p} HTTP/1.1\r\nhost: svc\r\n\r\n`).join(''));
    const bodies = await waitFor('six answers', () => {
      const got = out
        .split('HTTP/1.1 ')
        .slice(1)
        .map((r) => r.slice(r.indexOf('\r\n\r\n') + 4));
      return got.length === paths.length && got.at(-1) === paths.at(-1) ? got : undefined;
    });
    assert.deepEqual(bodies, paths);
    assert.equal(most, 1, 'requests in flight upstream at once');
    // Before: one upstream connection per pipelined request. Now they take turns on what the pool has (a
    // second connection may open when the next request starts a moment before the pool gets the first back).
    assert.ok(sockets.size <= 2, `${sockets.size} upstream connections for ${paths.length} requests`);
  });
});

/** An app that answers 413 as soon as a request's head has come, then reads and drops the rest. */
async function earlyAnswering(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    let head = '';
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      socket.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n');
      socket.resume();
    };
    socket.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/**
 * A POST whose body is one write bigger than every buffer between the client and the app together, then
 * (as a client honouring back-pressure does) its end after that write's 'drain': the answer comes while
 * the client waits for it. Resolves with the response's status and Connection header.
 */
function postBlocked(
  url: string,
  agent: http.Agent,
  body: Buffer,
): Promise<{ status: number | undefined; connection: string | undefined }> {
  return new Promise((resolve) => {
    const req = http.request(url, { method: 'POST', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, connection: res.headers.connection }));
    });
    req.on('error', () => undefined); // the connection closing under the body's rest, after the answer
    if (req.write(body)) req.end();
    else req.once('drain', () => req.end());
  });
}
