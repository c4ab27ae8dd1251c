/**
 * Test client run inside a netns pod: sends requests the way an app would (to Service ClusterIPs, captured
 * by iptables) and prints one JSON document with every result.
 *
 *   node test/support/mesh-client.ts '<json plan>'
 *   plan: { kind: 'http1'|'h2'|'grpc'|'ws'|'tcp', url, method?, headers?, body?, bodyBytes?, count?, concurrency?,
 *           intervalMs?, durationMs? }
 *   output: { results: [{ status, headers, json, text, grpcStatus, error }] }
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { randomBytes, createHash } from 'node:crypto';
import { grpcCall } from '../../images/echo/echo-server.ts';

interface Plan {
  kind: 'http1' | 'h2' | 'grpc' | 'ws' | 'tcp';
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Send a generated body of this many bytes, in 64 KiB chunks (streaming); the reply reports its length. */
  bodyBytes?: number;
  count?: number;
  concurrency?: number;
  /** Keep sending for this long (overrides count). */
  durationMs?: number;
}

export interface ClientResult {
  status?: number;
  headers?: Record<string, unknown>;
  json?: unknown;
  text?: string;
  grpcStatus?: number | null;
  error?: string;
}

const plan = JSON.parse(process.argv[2] ?? '{}') as Plan;
const agent = new http.Agent({ keepAlive: true, maxSockets: plan.concurrency ?? 1 });
let session: http2.ClientHttp2Session | undefined;
const h2session = (): http2.ClientHttp2Session => {
  if (!session || session.closed || session.destroyed) {
    session = http2.connect(new URL(plan.url).origin);
    session.on('error', () => undefined);
  }
  return session;
};

/** Writes `total` bytes in 64 KiB chunks, honouring backpressure, then ends the stream. */
function writeChunks(out: NodeJS.WritableStream, total: number): void {
  const chunk = Buffer.alloc(64 * 1024, 'y');
  let left = total;
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!out.write(chunk.subarray(0, n))) return void out.once('drain', pump);
    }
    out.end();
  };
  pump();
}

function parse(text: string): { json?: unknown; text: string } {
  try {
    return { json: JSON.parse(text), text };
  } catch {
    return { text };
  }
}

function http1(): Promise<ClientResult> {
  return new Promise((resolve) => {
    const req = http.request(
      plan.url,
      { method: plan.method ?? 'GET', headers: plan.headers, agent },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, ...parse(body) }));
        // A response cut part way: its status and what came, with the error.
        res.on('error', (err: NodeJS.ErrnoException) =>
          resolve({ status: res.statusCode, text: body, error: err.code ?? err.message }),
        );
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    if (plan.bodyBytes === undefined) return void req.end(plan.body);
    writeChunks(req, plan.bodyBytes);
  });
}

function h2(): Promise<ClientResult> {
  return new Promise((resolve) => {
    const u = new URL(plan.url);
    const stream = h2session().request({
      ':method': plan.method ?? 'GET',
      ':path': u.pathname + u.search,
      ...plan.headers,
    });
    let status = 0;
    let headers: Record<string, unknown> = {};
    let body = '';
    stream.on('response', (h) => {
      status = Number(h[':status']);
      headers = h;
    });
    stream.setEncoding('utf8').on('data', (c: string) => (body += c));
    stream.on('end', () => resolve({ status, headers, ...parse(body) }));
    stream.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    if (plan.bodyBytes === undefined) return void stream.end(plan.body);
    writeChunks(stream, plan.bodyBytes);
  });
}

async function grpc(): Promise<ClientResult> {
  try {
    const r = await grpcCall(h2session(), new URL(plan.url).pathname, plan.headers ?? {});
    return {
      status: r.status,
      headers: { ...r.headers, ...r.trailers },
      json: r.reply,
      grpcStatus: r.grpcStatus,
    };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** WebSocket: handshake, one masked text frame, read the echoed frame. */
function ws(): Promise<ClientResult> {
  return new Promise((resolve) => {
    const u = new URL(plan.url);
    const socket = net.connect({ host: u.hostname, port: Number(u.port || 80) });
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    let buf = Buffer.alloc(0);
    let upgraded = false;
    socket.setTimeout(10_000, () => socket.destroy(new Error('timeout')));
    socket.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    socket.write(
      `GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        const status = Number(head.split(' ')[1]);
        if (status !== 101 || !head.toLowerCase().includes(accept.toLowerCase())) {
          socket.destroy();
          return resolve({ status, text: head });
        }
        upgraded = true;
        const payload = Buffer.from('hello through the mesh');
        const mask = randomBytes(4);
        const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
        socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
      }
      if (buf.length >= 2 && buf.length >= 2 + (buf[1]! & 0x7f)) {
        const text = buf.subarray(2, 2 + (buf[1]! & 0x7f)).toString('utf8');
        socket.destroy();
        resolve({ status: 101, text });
      }
    });
  });
}

/** Opaque TCP: send the body, half-close, read everything back. */
function tcp(): Promise<ClientResult> {
  return new Promise((resolve) => {
    const u = new URL(plan.url);
    const socket = net.connect({ host: u.hostname, port: Number(u.port) });
    let text = '';
    socket.setEncoding('utf8').on('data', (c: string) => (text += c));
    socket.setTimeout(10_000, () => socket.destroy(new Error('timeout')));
    socket.on('end', () => resolve({ text }));
    socket.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message, text }));
    socket.end(plan.body ?? '');
  });
}

const send = { http1, h2, grpc, ws, tcp }[plan.kind];
const results: ClientResult[] = [];
const count = plan.count ?? 1;
const deadline = plan.durationMs === undefined ? undefined : Date.now() + plan.durationMs;
let issued = 0;
async function worker(): Promise<void> {
  while (deadline === undefined ? issued < count : Date.now() < deadline) {
    issued++;
    results.push(await send());
  }
}
await Promise.all(Array.from({ length: plan.concurrency ?? 1 }, worker));
session?.close();
agent.destroy();
process.stdout.write(JSON.stringify({ results }));
