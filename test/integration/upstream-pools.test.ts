import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { buildProxyView } from '../../mesh-model/proxy-view.ts';
import type { Endpoint } from '../../mesh-model/endpoints.ts';
import { LoadBalancer } from '../../sidecar/load-balancer.ts';
import { UpstreamPools } from '../../sidecar/upstream-pools.ts';
import { ProxyMetrics } from '../../sidecar/metrics.ts';
import { createCa, issueWorkloadCert, loadCa, type CertificateAuthority } from '../../pki/ca.ts';
import { parseIdentity, type Identity } from '../../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.ts';
import { MeshTlsCredentials } from '../../pki/tls-options.ts';
import { httpRoute, podObject, serviceWithEndpoints } from '../support/mesh-manifests.ts';
import { waitFor } from '../support/wait-for.ts';
import { startLoopbackForwarder } from '../support/loopback-forwarder.ts';

// The upstream half of a sidecar with real sockets on loopback: the sidecar's outbound HTTP server and
// its HTTP/1.1 pool over mesh mTLS to an upstream whose TLS handshake a gate holds back, so a request can be
// left waiting in the pool's queue (as it is while any new mesh connection is set up) when its client goes.

const TD = 'cluster.local';
const SERVER_ID = `spiffe://${TD}/ns/app/sa/server`;

async function identityFor(ca: CertificateAuthority, spiffeId: string): Promise<Identity> {
  const keys = await generateKeyPair();
  const certPem = await issueWorkloadCert({ ca, spiffeId, publicKey: keys.publicKey });
  return parseIdentity({ certPem, keyPem: await privateKeyToPem(keys.privateKey), bundlePem: ca.certPem });
}

/** What the upstream does with each request head it reads: write these bytes, then maybe end (FIN). */
type Answer = { bytes: Buffer; end: boolean };

interface GatedUpstream {
  port: number;
  /** Request heads the upstream read, in order. */
  requests: string[];
  /** Connections the gate accepted (TLS ClientHello on its way). */
  accepted: number;
  /** Connections on which the upstream's FIN has passed the gate. */
  ended: number;
  /** Connections the sidecar has closed. */
  closed: number;
  /** Lets held and future connections through to the TLS server. */
  open(): void;
  close(): void;
}

/** A raw mesh-TLS HTTP/1.1 upstream behind a TCP gate that holds every connection until open(). */
async function gatedUpstream(identity: Identity, answer: (head: string) => Answer): Promise<GatedUpstream> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const creds = new MeshTlsCredentials(identity);
  const server = tls.createServer(creds.serverOptions(), (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      while (head.includes('\r\n\r\n')) {
        const end = head.indexOf('\r\n\r\n');
        requests.push(head.slice(0, end));
        head = head.slice(end + 4);
        const a = answer(requests.at(-1)!);
        socket.write(a.bytes);
        if (a.end) socket.end();
      }
    });
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const serverPort = (server.address() as AddressInfo).port;
  let opened = false;
  const held: (() => void)[] = [];
  const state = { accepted: 0, ended: 0, closed: 0 };
  const gate = net.createServer((client) => {
    state.accepted++;
    sockets.add(client);
    client.on('close', () => {
      sockets.delete(client);
      state.closed++;
    });
    client.on('error', () => undefined);
    client.pause();
    const relay = (): void => {
      if (client.destroyed) return;
      const up = net.connect(serverPort, '127.0.0.1');
      sockets.add(up);
      up.on('close', () => sockets.delete(up));
      up.on('end', () => state.ended++);
      up.on('error', () => client.destroy());
      client.on('close', () => up.destroy());
      client.pipe(up).pipe(client);
      client.resume();
    };
    if (opened) relay();
    else held.push(relay);
  });
  await new Promise<void>((r) => gate.listen(0, '127.0.0.1', r));
  return {
    port: (gate.address() as AddressInfo).port,
    requests,
    get accepted() {
      return state.accepted;
    },
    get ended() {
      return state.ended;
    },
    get closed() {
      return state.closed;
    },
    open() {
      opened = true;
      for (const relay of held.splice(0)) relay();
    },
    close() {
      for (const s of sockets) s.destroy();
      gate.close();
      server.close();
    },
  };
}

function response(body: Buffer, connection: 'keep-alive' | 'close'): Buffer {
  const head = `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: ${connection}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), body]);
}

/** Sends one request and reads the whole reply (the server closes or the status line's length is met). */
async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { host: 'svc.app' } });
  return { status: r.status, body: await r.text() };
}

/** Opens a connection, sends a request head, and leaves the socket to the caller. */
function rawRequest(port: number, path: string): net.Socket {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.write(`GET ${path} HTTP/1.1\r\nhost: svc.app\r\n\r\n`);
  return socket;
}

describe('upstream requests cancelled while queued in the pool (loopback, mesh mTLS)', function () {
  this.timeout(30_000);
  const closers: (() => Promise<void> | void)[] = [];
  let serverIdentity: Identity;
  let clientIdentity: Identity;
  before(async () => {
    const ca = await loadCa(await createCa({ trustDomain: TD }));
    serverIdentity = await identityFor(ca, SERVER_ID);
    clientIdentity = await identityFor(ca, `spiffe://${TD}/ns/app/sa/client`);
  });
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  async function upstreamAnswering(answer: (head: string) => Answer): Promise<GatedUpstream> {
    const up = await gatedUpstream(serverIdentity, answer);
    closers.push(() => up.close());
    return up;
  }

  /** A sidecar's outbound HTTP server whose Service svc has one meshed endpoint: the gated upstream. */
  async function sidecarTo(
    upstreamPort: number,
  ): Promise<{ port: number; open: () => Promise<number>; pools: UpstreamPools }> {
    const server = {
      name: 'server',
      namespace: 'app',
      ip: '127.0.0.1',
      serviceAccount: 'server',
      meshed: true,
    };
    const objects = [
      ...serviceWithEndpoints('app', 'svc', '10.96.0.1', [[80, upstreamPort]], [server]),
      podObject(server),
      httpRoute('app', 'r', 'svc', [{ backendRefs: [{ name: 'svc', port: 80 }] }]),
    ];
    const view = buildProxyView(objects, 'app', TD);
    const creds = new MeshTlsCredentials(clientIdentity);
    // One connection per endpoint: a connection left paused would turn every later request into a 503.
    const pools = new UpstreamPools(() => creds, { maxConnections: 1 });
    const deps = { pools, lb: new LoadBalancer(), metrics: new ProxyMetrics() };
    const forwarder = await startLoopbackForwarder(deps, view, { address: '10.96.0.1', port: 80 });
    closers.push(() => forwarder.close());
    const open = (): Promise<number> =>
      new Promise((resolve, reject) =>
        forwarder.servers.http1.getConnections((err, n) => (err ? reject(err) : resolve(n))),
      );
    return { port: forwarder.port, open, pools };
  }

  /** A client sends a request, the sidecar queues it on a connection still in its handshake, the client goes. */
  async function cancelWhileQueued(
    up: GatedUpstream,
    sidecar: { port: number; open: () => Promise<number>; pools: UpstreamPools },
  ) {
    const client = rawRequest(sidecar.port, '/cancelled');
    await waitFor('the sidecar to open its upstream connection', () => up.accepted === 1);
    client.destroy();
    await waitFor('the sidecar to see its client go', async () => (await sidecar.open()) === 0);
    up.open();
    // The request left the pool's queue with its client; once the handshake is done the connection waits
    // idle (were the request sent, it would be answered, or dropped with its connection).
    await waitFor(
      'the connection up, or the cancelled request sent or dropped',
      () => sidecar.pools.connectionCount() === 1 || up.requests.length > 0 || up.closed > 0,
    );
  }

  for (const connection of ['keep-alive', 'close'] as const) {
    it(`never sends it, and the connection serves the next request (upstream answers ${connection})`, async () => {
      const big = Buffer.alloc(256 * 1024, 'x');
      // A small late answer to the cancelled request fits in one read with the FIN: the case that crashed.
      const up = await upstreamAnswering((head) => ({
        bytes: response(head.startsWith('GET /cancelled') ? Buffer.from('late') : big, connection),
        end: connection === 'close',
      }));
      const sidecar = await sidecarTo(up.port);
      await cancelWhileQueued(up, sidecar);
      const next = await get(sidecar.port, '/next');
      assert.equal(next.status, 200, next.body.slice(0, 200));
      assert.equal(next.body.length, big.length);
      assert.deepEqual(
        up.requests.map((r) => r.split(' ')[1]),
        ['/next'],
        'the cancelled request never reached the upstream',
      );
    });
  }

  it('a slow client gets all of a response that ends with the connection (Connection: close)', async () => {
    const big = Buffer.alloc(1024 * 1024, 'y');
    const up = await upstreamAnswering(() => ({ bytes: response(big, 'close'), end: true }));
    up.open();
    const sidecar = await sidecarTo(up.port);
    const client = rawRequest(sidecar.port, '/slow');
    client.pause();
    // The upstream's FIN is on its way while the sidecar holds the response back for the paused client.
    await waitFor('the upstream to answer and close', () => up.ended === 1);
    const chunks: Buffer[] = [];
    client.on('data', (chunk: Buffer) => chunks.push(chunk));
    client.resume();
    const bodyBytes = (): number => {
      const all = Buffer.concat(chunks);
      const head = all.indexOf('\r\n\r\n');
      return head < 0 ? 0 : all.length - head - 4;
    };
    await waitFor('the whole body to reach the client', () => bodyBytes() >= big.length, {
      timeoutMs: 10_000,
    });
    assert.equal(bodyBytes(), big.length);
    client.destroy();
  });
});

describe('a sent request whose client goes (loopback)', function () {
  this.timeout(30_000);
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  it('keeps its upstream connection: the late response is drained and the next request reuses it', async () => {
    const held: http.ServerResponse[] = [];
    let connections = 0;
    const upstream = http.createServer((req, res) => {
      if (req.url === '/slow') held.push(res);
      else res.end('next');
    });
    upstream.on('connection', () => connections++);
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    closers.push(() => {
      upstream.closeAllConnections();
      upstream.close();
    });
    const port = (upstream.address() as AddressInfo).port;
    const pools = new UpstreamPools(() => undefined, { maxConnections: 1 });
    const deps = { pools, lb: new LoadBalancer(), metrics: new ProxyMetrics() };
    const view = buildProxyView([], 'app', 'cluster.local');
    const forwarder = await startLoopbackForwarder(deps, view, { address: '127.0.0.1', port });
    closers.push(() => forwarder.close());
    const { servers, port: sidecarPort } = forwarder;
    const client = rawRequest(sidecarPort, '/slow');
    await waitFor('the upstream to get the request', () => held.length === 1);
    client.destroy();
    await waitFor(
      'the sidecar to see its client go',
      () => new Promise<boolean>((resolve) => servers.http1.getConnections((_e, n) => resolve(n === 0))),
    );
    held[0]!.end('late');
    const next = await get(sidecarPort, '/next');
    assert.equal(next.status, 200);
    assert.equal(next.body, 'next');
    assert.equal(connections, 1, 'one upstream connection: the cancelled request did not cost it');
  });
});

describe('upstream pools shrink (loopback)', function () {
  this.timeout(30_000);
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  /** A Node HTTP server (it hints `Keep-Alive: timeout=3600`, as a peer sidecar does) counting its connections. */
  async function keepAliveServer(
    handler: http.RequestListener = (_req, res) => res.end('ok'),
  ): Promise<{ port: number; open: () => Promise<number> }> {
    const server = http.createServer(handler);
    server.keepAliveTimeout = 3_600_000;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => {
      server.closeAllConnections();
      server.close();
    });
    const open = (): Promise<number> =>
      new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    return { port: (server.address() as AddressInfo).port, open };
  }

  function endpoint(port: number): Endpoint {
    return {
      address: '127.0.0.1',
      port,
      ready: true,
      serving: true,
      terminating: false,
      identity: undefined,
      pod: undefined,
    };
  }

  /** A GET through the endpoint's pool: the response body's text. */
  function get(pools: UpstreamPools, ep: Endpoint, path: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      pools.pool(ep).request(
        { path, method: 'GET', headers: {}, body: null },
        {
          onRequestStart: () => undefined,
          onResponseStart: () => undefined,
          onResponseData: (_c, chunk) => void chunks.push(chunk),
          onResponseEnd: () => resolve(Buffer.concat(chunks).toString()),
          onResponseError: (_c, err) => reject(err),
        },
      );
    });
  }

  async function request(pools: UpstreamPools, ep: Endpoint): Promise<void> {
    assert.equal(await get(pools, ep, '/'), 'ok');
  }

  it('closes a pooled connection idle for --upstream-idle-timeout-ms, on both ends', async () => {
    const up = await keepAliveServer();
    const pools = new UpstreamPools(() => undefined, { idleMs: 300 });
    closers.push(() => pools.destroy());
    const ep = endpoint(up.port);
    await Promise.all([request(pools, ep), request(pools, ep), request(pools, ep)]);
    assert.ok((await up.open()) >= 1);
    await waitFor('the upstream to see its pooled connections closed', async () => (await up.open()) === 0);
    assert.equal(pools.connectionCount(), 0);
    await request(pools, ep); // and the pool opens a new one when asked
  });

  it('closes the pools of endpoints that left the view', async () => {
    const stays = await keepAliveServer();
    const leaves = await keepAliveServer();
    const pools = new UpstreamPools(() => undefined, { idleMs: 3_600_000 });
    closers.push(() => pools.destroy());
    pools.retain([endpoint(stays.port), endpoint(leaves.port)]);
    await request(pools, endpoint(stays.port));
    await request(pools, endpoint(leaves.port));
    pools.retain([endpoint(stays.port)]);
    await waitFor(
      'the departed endpoint to see its connection closed',
      async () => (await leaves.open()) === 0,
    );
    assert.equal(await stays.open(), 1, 'the endpoint still in the view keeps its connection');
  });

  it('closes idle pooled connections of an endpoint that turned terminating; a request in flight finishes', async () => {
    let release: () => void = () => undefined;
    const { port, open } = await keepAliveServer((req, res) => {
      if (req.url === '/hold') release = () => res.end('ok');
      else res.end('ok');
    });
    const pools = new UpstreamPools(() => undefined, { idleMs: 3_600_000 });
    closers.push(() => pools.destroy());
    const ep = endpoint(port);
    pools.retain([ep]);
    const held = get(pools, ep, '/hold'); // one busy connection
    await request(pools, ep); // and one idle
    await waitFor('two connections', async () => (await open()) === 2);
    pools.retain([{ ...ep, ready: false, terminating: true }]);
    await waitFor('the idle connection to close', async () => (await open()) === 1);
    release();
    assert.equal(await held, 'ok');
    await waitFor('the busy one to close after its request', async () => (await open()) === 0);
  });
});

describe('HTTP/2 upstream sessions (loopback, h2c)', function () {
  this.timeout(30_000);
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  /** A sidecar's outbound h2c server in front of an h2c upstream, dialled as an address (no Service). */
  async function h2Sidecar(upstreamPort: number, limits: { maxStreams?: number; maxQueued?: number } = {}) {
    const pools = new UpstreamPools(() => undefined, { maxConnections: 1, ...limits });
    const deps = { pools, lb: new LoadBalancer(), metrics: new ProxyMetrics() };
    const forwarder = await startLoopbackForwarder(
      deps,
      buildProxyView([], 'app', TD),
      { address: '127.0.0.1', port: upstreamPort },
      { h2: true },
    );
    const client = http2.connect(`http://127.0.0.1:${forwarder.h2Port}`);
    client.on('error', () => undefined);
    closers.push(() => {
      client.destroy();
      forwarder.close();
    });
    return { client, pools };
  }

  function status(client: http2.ClientHttp2Session, path: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const s = client.request({ ':path': path });
      let code = 0;
      s.on('response', (h) => (code = Number(h[':status'])));
      s.on('error', reject);
      s.resume();
      s.on('end', () => resolve(code));
      s.end();
    });
  }

  it('many requests waiting for a connecting session add one connect listener, not one each', async () => {
    const upstream = http2.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    closers.push(() => void upstream.close());
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    closers.push(() => void process.off('warning', onWarning));
    const { client } = await h2Sidecar((upstream.address() as AddressInfo).port);
    // All of them arrive before the sidecar's session to the upstream is up (more than the default 10 listeners).
    const codes = await Promise.all(Array.from({ length: 50 }, (_, i) => status(client, `/r${i}`)));
    assert.deepEqual(new Set(codes), new Set([200]));
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    assert.deepEqual(
      warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message),
      [],
    );
  });

  it('a rotation or drain while a session is still connecting sends the streams waiting for it, then closes it', async () => {
    const upstream = http2.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    closers.push(() => void upstream.close());
    const pools = new UpstreamPools(() => undefined);
    closers.push(() => pools.destroy());
    const ep: Endpoint = {
      ...{ address: '127.0.0.1', port: (upstream.address() as AddressInfo).port },
      ...{ ready: true, serving: true, terminating: false, identity: undefined, pod: undefined },
    };
    const answer = (stream: http2.ClientHttp2Stream): Promise<number> =>
      new Promise((resolve, reject) => {
        stream.on('response', (h) => resolve(Number(h[':status'])));
        stream.on('error', reject);
        stream.resume();
        stream.end();
      });
    for (const close of [() => pools.reset(), () => pools.retain([])]) {
      pools.retain([ep]);
      const session = pools.session(ep);
      // As the forwarder opens them: counted, so that the session closes when they have ended.
      const waiting = ['/a', '/b'].map((path) => session.request({ ':path': path }));
      for (const stream of waiting) {
        pools.streamOpened(session);
        stream.once('close', () => pools.streamClosed(session));
      }
      assert.ok(session.connecting);
      close(); // Node failed both with ERR_HTTP2_GOAWAY_SESSION: two connect failures of a healthy endpoint
      assert.deepEqual(await Promise.all(waiting.map(answer)), [200, 200]);
      await waitFor('the session to close', () => session.closed || undefined);
      assert.notEqual(pools.session(ep), session, 'new requests get a new session');
    }
  });

  it('bounds the streams of a session: past the peer concurrency and the queue, a 503 at once', async () => {
    // The upstream lets 2 streams run at a time and answers none until told to.
    const held: http2.Http2ServerResponse[] = [];
    const upstream = http2.createServer(
      { settings: { maxConcurrentStreams: 2 } },
      (_req, res) => void held.push(res),
    );
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    closers.push(() => void upstream.close());
    const { client } = await h2Sidecar((upstream.address() as AddressInfo).port, {
      maxStreams: 2,
      maxQueued: 4,
    });
    const first = Array.from({ length: 2 + 4 }, (_, i) => status(client, `/held${i}`));
    await waitFor('the upstream to hold its 2 streams', () => held.length === 2);
    assert.equal(await status(client, '/over'), 503);
    for (const res of held) res.end('ok');
    upstream.on('request', (_req, res) => void res.end('ok'));
    held.splice(0);
    const codes = await Promise.all(first);
    assert.deepEqual(new Set(codes), new Set([200]));
  });
});
