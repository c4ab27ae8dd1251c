import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import { PassThrough } from 'node:stream';
import { H1Pool, type H1Request } from '../../../sidecar/http1-client.ts';
import { waitFor } from '../../support/wait-for.ts';
import { ManualClock } from '../../support/manual-clock.ts';
import type { Clock } from '../../../lib/clock.ts';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  trailers: IncomingHttpHeaders | undefined;
  reused: boolean;
}

function send(pool: H1Pool, request: Partial<H1Request> & { path: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let reused = false;
    let head: { status: number; headers: IncomingHttpHeaders } | undefined;
    pool.request(
      { method: 'GET', headers: {}, body: null, ...request },
      {
        onRequestStart: (_c, r) => void (reused = r),
        onResponseStart: (_c, status, headers) => void (head = { status, headers }),
        onResponseData: (_c, chunk) => void chunks.push(chunk),
        onResponseEnd: (_c, trailers) =>
          resolve({ ...head!, body: Buffer.concat(chunks).toString(), trailers, reused }),
        onResponseError: (_c, err) => reject(err),
      },
    );
  });
}

describe('HTTP/1.1 upstream client (loopback)', function () {
  this.timeout(10_000);
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  function poolTo(port: number, maxConnections = 2, clock?: Clock, streamIdleMs = 2_000): H1Pool {
    const pool = new H1Pool({
      host: `127.0.0.1:${port}`,
      maxConnections,
      keepAliveMs: 4_000,
      keepAliveMaxMs: 60_000,
      streamIdleMs,
      maxHeadBytes: 8 * 1024,
      ...(clock ? { clock } : {}),
      connect: (callback) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('error', (err) => callback(err, null));
        socket.once('connect', () => callback(null, socket));
      },
    });
    closers.push(() => pool.destroy());
    return pool;
  }

  async function nodeServer(handler: http.RequestListener): Promise<number> {
    const server = http.createServer(handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => {
      server.closeAllConnections();
      server.close();
    });
    return (server.address() as AddressInfo).port;
  }

  /** A raw server answering every request head with `reply`'s bytes. */
  async function rawServer(reply: (head: string) => string): Promise<number> {
    const server = net.createServer((socket) => {
      let buffered = '';
      socket.on('data', (d: Buffer) => {
        buffered += d.toString('latin1');
        let end: number;
        while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
          const head = buffered.slice(0, end);
          buffered = buffered.slice(end + 4);
          socket.write(reply(head));
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => server.close());
    return (server.address() as AddressInfo).port;
  }

  it('reuses a keep-alive connection; streams a chunked body both ways, with trailers', async () => {
    const port = await nodeServer((req, res) => {
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => {
        res.writeHead(200, { trailer: 'x-n' });
        res.write(`got ${n} `);
        res.addTrailers({ 'x-n': String(n) });
        res.end(req.headers['transfer-encoding'] ?? 'length');
      });
    });
    const pool = poolTo(port);
    const body = new PassThrough();
    const sent = send(pool, { method: 'POST', path: '/', body });
    await waitFor('the body read', () => body.listenerCount('data') > 0);
    // An empty chunk (no stream of Node's emits one, but a source may) must not end the chunked body.
    body.emit('data', Buffer.alloc(0));
    for (let i = 0; i < 50; i++) body.write(Buffer.alloc(4096, 97));
    body.end();
    const a = await sent;
    assert.equal(a.body, `got ${50 * 4096} chunked`);
    assert.deepEqual(a.trailers, { 'x-n': String(50 * 4096) });
    const b = await send(pool, { method: 'POST', path: '/', body: Buffer.from('abc') });
    assert.equal(b.body, 'got 3 length');
    assert.equal(b.reused, true);
    assert.equal(pool.connected, 1);
  });

  it('HEAD and 204 have no body; Connection: close is not reused', async () => {
    const port = await rawServer((head) =>
      head.startsWith('HEAD')
        ? 'HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n'
        : head.startsWith('GET /close')
          ? 'HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\nx'
          : 'HTTP/1.1 204 No Content\r\n\r\n',
    );
    const pool = poolTo(port);
    assert.equal((await send(pool, { method: 'HEAD', path: '/' })).body, '');
    assert.equal((await send(pool, { path: '/' })).status, 204);
    assert.equal((await send(pool, { path: '/close' })).body, 'x');
    await waitFor('the connection closed', () => pool.connected === 0);
  });

  it('a misframed response fails its request with ERR_UPSTREAM_PARSE and closes the connection', async () => {
    const port = await rawServer(() => 'HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab');
    const pool = poolTo(port);
    await assert.rejects(send(pool, { path: '/' }), { code: 'ERR_UPSTREAM_PARSE' });
    await waitFor('the connection closed', () => pool.connected === 0);
  });

  it('queues past maxConnections, serves the queue in order; a request aborted while queued is dropped', async () => {
    const release: (() => void)[] = [];
    const port = await nodeServer((req, res) => release.push(() => res.end(req.url)));
    const pool = poolTo(port, 1);
    const first = send(pool, { path: '/1' });
    let errored: Error | undefined;
    const dropped = pool.request(
      { method: 'GET', path: '/2', headers: {}, body: null },
      {
        onRequestStart: () => assert.fail('a dropped request was written'),
        onResponseStart: () => undefined,
        onResponseData: () => undefined,
        onResponseEnd: () => undefined,
        onResponseError: (_c, err) => void (errored = err),
      },
    );
    const third = send(pool, { path: '/3' });
    dropped.abort(new Error('gone'));
    assert.equal(errored?.message, 'gone');
    await waitFor('a request at the server', () => release.length === 1);
    release.shift()!();
    assert.equal((await first).body, '/1');
    await waitFor('a request at the server', () => release.length === 1);
    release.shift()!();
    assert.equal((await third).body, '/3');
    assert.equal(pool.connected, 1);
  });

  it('a connection paused by its reader in the read that ended the response serves the next request', async () => {
    const port = await nodeServer((_req, res) => res.end('ok'));
    const pool = poolTo(port, 1);
    await new Promise<void>((resolve, reject) =>
      pool.request(
        { method: 'GET', path: '/', headers: {}, body: null },
        {
          onRequestStart: () => undefined,
          onResponseStart: () => undefined,
          onResponseData: (c) => c.pause(), // and never resumes: the response ends in this read
          onResponseEnd: () => resolve(),
          onResponseError: (_c, err) => reject(err),
        },
      ),
    );
    const next = await send(pool, { path: '/' });
    assert.equal(next.body, 'ok');
    assert.equal(next.reused, true);
  });

  it('a head still incomplete streamIdleMs after the request fails, though never silent that long', async () => {
    const clock = new ManualClock();
    let server: net.Socket | undefined;
    const listener = net.createServer((s) => void (server = s.on('error', () => undefined)));
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    closers.push(() => listener.close());
    // Silence alone would take a minute (the test's timeout is 10 s): the head's deadline ends it.
    const pool = poolTo((listener.address() as AddressInfo).port, 1, clock, 60_000);
    const answer = send(pool, { path: '/' });
    await waitFor('the request to arrive', () => server !== undefined);
    server!.write('HTTP/1.1 2');
    clock.advance(60_001);
    server!.write('00 OK\r\n');
    await assert.rejects(answer, { code: 'ERR_UPSTREAM_HEADERS_TIMEOUT' });
  });

  it('refuses header values that would break the framing, before writing anything', async () => {
    const port = await nodeServer((_req, res) => res.end('ok'));
    const pool = poolTo(port);
    await assert.rejects(send(pool, { path: '/', headers: { x: 'a\r\nx-injected: 1' } }), /invalid value/);
    assert.equal((await send(pool, { path: '/' })).body, 'ok');
  });
});
