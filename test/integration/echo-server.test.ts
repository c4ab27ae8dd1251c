import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { decodeStringField1, grpcCall, startEchoServer } from '../../images/echo/echo-server.ts';
import type { EchoReply, EchoServer } from '../../images/echo/echo-server.ts';

const echoServerPath = fileURLToPath(new URL('../../images/echo/echo-server.ts', import.meta.url));

describe('echo server (test tooling)', () => {
  let server: EchoServer;
  let base: string;

  before(async () => {
    server = await startEchoServer({ name: 'backend-a' });
    base = `http://127.0.0.1:${server.port}`;
  });
  after(async () => {
    await server.close();
  });

  describe('HTTP/1.1', () => {
    it('describes the request as JSON', async () => {
      const res = await fetch(`${base}/some/path?x=1&y=2`, {
        method: 'POST',
        headers: { 'X-Sluice-Peer-Identity': 'spiffe://cluster.local/ns/a/sa/b', 'X-Mixed-Case': 'v' },
        body: 'twelve bytes',
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-echo-name'), 'backend-a');
      const reply = (await res.json()) as EchoReply;
      assert.equal(reply.name, 'backend-a');
      assert.equal(reply.method, 'POST');
      assert.equal(reply.path, '/some/path?x=1&y=2');
      assert.equal(reply.protocol, 'HTTP/1.1');
      assert.equal(reply.peerIdentity, 'spiffe://cluster.local/ns/a/sa/b');
      assert.equal(reply.headers['x-mixed-case'], 'v');
      assert.equal(reply.authority, `127.0.0.1:${server.port}`);
      assert.equal(reply.remoteAddress, '127.0.0.1');
      assert.equal(reply.bodyLength, 12);
    });

    it('as a front end, calls its upstream with the user and trace headers and embeds the answer', async () => {
      const front = await startEchoServer({ name: 'front', upstream: base });
      try {
        const res = await fetch(`http://127.0.0.1:${front.port}/products/1?x=1`, {
          headers: {
            'end-user': 'jason',
            traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
            'x-other': 'no',
          },
        });
        assert.equal(res.status, 200);
        const reply = (await res.json()) as EchoReply;
        assert.equal(reply.name, 'front');
        const upstream = reply.upstream as { status: number; body: EchoReply };
        assert.equal(upstream.status, 200);
        assert.equal(upstream.body.name, 'backend-a');
        assert.equal(upstream.body.path, '/products/1?x=1');
        assert.equal(upstream.body.headers['end-user'], 'jason');
        assert.equal(
          upstream.body.headers.traceparent,
          '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        );
        assert.equal(upstream.body.headers['x-other'], undefined);
      } finally {
        await front.close();
      }
    });

    it('as a front end, answers 502 with the cause when its upstream cannot be reached', async () => {
      const closed = await startEchoServer({ name: 'gone' });
      await closed.close();
      const front = await startEchoServer({ name: 'front', upstream: `http://127.0.0.1:${closed.port}` });
      try {
        const res = await fetch(`http://127.0.0.1:${front.port}/`);
        assert.equal(res.status, 502);
        const reply = (await res.json()) as EchoReply;
        assert.match((reply.upstream as { error: string }).error, /ECONNREFUSED/);
      } finally {
        await front.close();
      }
    });

    it('has a null peerIdentity when the header is absent', async () => {
      const reply = (await (await fetch(`${base}/`)).json()) as EchoReply;
      assert.equal(reply.peerIdentity, null);
    });

    it('honours ?status, ?delay and ?size', async () => {
      const teapot = await fetch(`${base}/?status=418`);
      assert.equal(teapot.status, 418);
      assert.equal(((await teapot.json()) as EchoReply).path, '/?status=418');

      const started = performance.now();
      await (await fetch(`${base}/?delay=150`)).arrayBuffer();
      assert.ok(performance.now() - started >= 140);

      const sized = await fetch(`${base}/?size=200000`);
      assert.equal(sized.headers.get('content-type'), 'application/octet-stream');
      assert.equal((await sized.arrayBuffer()).byteLength, 200000);
      assert.equal((await (await fetch(`${base}/?size=0`)).arrayBuffer()).byteLength, 0);
    });

    it('rejects bad parameters with 400 instead of failing', async () => {
      for (const query of ['status=42', 'status=abc', 'delay=-1', 'delay=99999999', 'size=1e3']) {
        const res = await fetch(`${base}/?${query}`);
        assert.equal(res.status, 400, query);
        await res.arrayBuffer();
      }
    });

    it('streams a request body back at /echo-body', async () => {
      const body = Buffer.alloc(1024 * 1024 + 7, 'q');
      const res = await fetch(`${base}/echo-body`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body,
      });
      assert.equal(res.headers.get('content-type'), 'text/plain');
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), body);
    });

    it('handles a request that arrives a few bytes at a time', async () => {
      const text = await rawExchange(
        server.port,
        ['GE', 'T /sl', 'ow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n', '\r\n'],
        'close',
      );
      assert.match(text, /^HTTP\/1\.1 200 /);
      assert.match(text, /"path":"\/slow"/);
    });
  });

  describe('HTTP/2 (h2c prior knowledge)', () => {
    it('describes the request as JSON', async () => {
      const session = http2.connect(base);
      try {
        const { headers, body } = await h2Request(
          session,
          {
            ':method': 'PUT',
            ':path': '/h2/path?q=1',
            'x-sluice-peer-identity': 'spiffe://x',
          },
          Buffer.from('abc'),
        );
        assert.equal(headers[':status'], 200);
        const reply = JSON.parse(body.toString()) as EchoReply;
        assert.equal(reply.protocol, 'HTTP/2');
        assert.equal(reply.method, 'PUT');
        assert.equal(reply.path, '/h2/path?q=1');
        assert.equal(reply.authority, `127.0.0.1:${server.port}`);
        assert.equal(reply.peerIdentity, 'spiffe://x');
        assert.equal(reply.bodyLength, 3);
        assert.ok(!Object.keys(reply.headers).some((name) => name.startsWith(':')));
      } finally {
        session.close();
      }
    });

    it('supports status, size and streamed echo on one session', async () => {
      const session = http2.connect(base);
      try {
        const created = await h2Request(session, { ':path': '/?status=201' });
        assert.equal(created.headers[':status'], 201);
        const sized = await h2Request(session, { ':path': '/?size=300000' });
        assert.equal(sized.body.length, 300000);
        const payload = Buffer.alloc(500_000, 'z');
        const echoed = await h2Request(session, { ':method': 'POST', ':path': '/echo-body' }, payload);
        assert.deepEqual(echoed.body, payload);
      } finally {
        session.close();
      }
    });

    it('recognises the preface when it arrives split across packets', async () => {
      // A relay that forwards the client's first packet as 3 bytes, then the rest 20 ms later.
      const relay = net.createServer((client) => {
        const upstream = net.connect(server.port, '127.0.0.1');
        client.once('data', (first: Buffer) => {
          client.pause();
          upstream.write(first.subarray(0, 3));
          setTimeout(() => {
            upstream.write(first.subarray(3));
            client.pipe(upstream);
          }, 20);
        });
        upstream.pipe(client);
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
      });
      relay.listen(0, '127.0.0.1');
      await once(relay, 'listening');
      const session = http2.connect(`http://127.0.0.1:${(relay.address() as net.AddressInfo).port}`);
      try {
        const { body } = await h2Request(session, { ':path': '/split' });
        assert.equal((JSON.parse(body.toString()) as EchoReply).protocol, 'HTTP/2');
      } finally {
        session.destroy();
        relay.close();
      }
    });
  });

  describe('gRPC', () => {
    it('answers a unary call with the echo and grpc-status 0 in trailers', async () => {
      const result = await grpcCall(base, '/echo.Echo/Call', { 'x-sluice-peer-identity': 'spiffe://g' });
      assert.equal(result.status, 200);
      assert.equal(result.grpcStatus, 0);
      assert.equal(result.trailers['grpc-status'], '0');
      assert.equal(result.reply?.path, '/echo.Echo/Call');
      assert.equal(result.reply.protocol, 'HTTP/2');
      assert.equal(result.reply.peerIdentity, 'spiffe://g');
      assert.equal(result.reply.headers.te, 'trailers');
    });

    it('returns the grpc-status asked for with x-echo-grpc-status, reusing a session', async () => {
      const session = http2.connect(base);
      try {
        const failed = await grpcCall(session, '/echo.Echo/Call', { 'x-echo-grpc-status': '14' });
        assert.equal(failed.grpcStatus, 14);
        assert.match(failed.grpcMessage ?? '', /requested status 14/);
        const ok = await grpcCall(session, '/echo.Echo/Call');
        assert.equal(ok.grpcStatus, 0);
      } finally {
        session.close();
      }
    });

    it('interoperates with @grpc/grpc-js', async () => {
      const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
      try {
        const message = await new Promise<Buffer>((resolve, reject) => {
          client.makeUnaryRequest(
            '/echo.Echo/Call',
            (request: Buffer) => request,
            (response: Buffer) => response,
            Buffer.alloc(0),
            (err: grpc.ServiceError | null, value?: Buffer) => {
              if (err) reject(err);
              else resolve(value ?? Buffer.alloc(0));
            },
          );
        });
        const reply = JSON.parse(decodeStringField1(message) ?? 'null') as EchoReply;
        assert.equal(reply.name, 'backend-a');
        assert.match(String(reply.headers['content-type']), /^application\/grpc/);
      } finally {
        client.close();
      }
    });
  });

  describe('WebSocket', () => {
    it('completes the handshake and echoes messages (Node WebSocket client)', async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}/chat?room=1`);
      ws.binaryType = 'arraybuffer';
      await once(ws, 'open');
      const received: unknown[] = [];
      const twoMessages = new Promise<void>((resolve) => {
        ws.addEventListener('message', (event: MessageEvent) => {
          received.push(event.data);
          if (received.length === 2) resolve();
        });
      });
      ws.send('hello');
      ws.send(new Uint8Array(70_000).fill(7));
      await twoMessages;
      assert.equal(received[0], 'hello');
      assert.equal((received[1] as ArrayBuffer).byteLength, 70_000);
      ws.close(1000);
      await once(ws, 'close');
    });

    it('computes Sec-WebSocket-Accept as in RFC 6455', async () => {
      const text = await rawExchange(
        server.port,
        [
          'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
        ],
        '\r\n\r\n',
      );
      assert.match(text, /^HTTP\/1\.1 101 /);
      assert.match(text, /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
      assert.match(text, /x-echo-name: backend-a/);
    });

    it('rejects an upgrade without a key', async () => {
      const text = await rawExchange(
        server.port,
        ['GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'],
        'close',
      );
      assert.match(text, /^HTTP\/1\.1 400 /);
    });
  });

  it('survives garbage and keeps serving', async () => {
    await rawExchange(server.port, ['\x00\x01\x02 not http at all\r\n\r\n'], 'close');
    await rawExchange(server.port, ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'garbage frames'], 'close');
    const res = await fetch(`${base}/still-alive`);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  });

  describe('as a process', () => {
    it('listens, serves and exits cleanly on SIGTERM', async () => {
      const child = spawn(
        process.execPath,
        [echoServerPath, '--name', 'proc', '--port', '0', '--host', '127.0.0.1'],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      try {
        const [line] = (await once(child.stdout, 'data')) as [Buffer];
        const match = /listening on 127\.0\.0\.1:(\d+)/.exec(line.toString());
        assert.ok(match, line.toString());
        const reply = (await (await fetch(`http://127.0.0.1:${match[1]}/`)).json()) as EchoReply;
        assert.equal(reply.name, 'proc');
        child.kill('SIGTERM');
        const [code] = (await once(child, 'exit')) as [number | null];
        assert.equal(code, 0);
      } finally {
        child.kill('SIGKILL');
      }
    });

    it('exits 2 on bad arguments', async () => {
      for (const args of [['--port', '1'], ['--name', 'x', '--port', 'nope'], ['--bogus']]) {
        const child = spawn(process.execPath, [echoServerPath, ...args], { stdio: 'ignore' });
        const [code] = (await once(child, 'exit')) as [number | null];
        assert.equal(code, 2, args.join(' '));
      }
    });
  });
});

function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers);
    let responseHeaders: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      responseHeaders = h;
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', reject);
    stream.on('end', () => {
      resolve({ headers: responseHeaders, body: Buffer.concat(chunks) });
    });
    stream.end(body);
  });
}

/** Writes the parts 20 ms apart and collects the reply until `until` is seen (or the peer closes). */
async function rawExchange(port: number, parts: string[], until: string): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let text = '';
  const done = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (until !== 'close' && text.includes(until)) resolve();
    });
    socket.on('close', () => {
      resolve();
    });
    socket.on('error', () => undefined);
  });
  for (const part of parts) {
    socket.write(part, 'latin1');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const timer = setTimeout(() => socket.destroy(), 3000);
  await done;
  clearTimeout(timer);
  socket.destroy();
  return text;
}
