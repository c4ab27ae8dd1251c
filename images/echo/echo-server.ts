/**
 * Echo server for tests and benchmarks: one port serving HTTP/1.1, h2c (prior knowledge), gRPC and WebSocket.
 *
 * Every request is answered with a JSON description of what arrived (see EchoReply). Query parameters:
 *   ?status=NNN   reply with that status (200-599)
 *   ?delay=MS     wait before replying (also header x-echo-delay, for gRPC)
 *   ?size=BYTES   reply with a body of that many bytes instead of JSON (benchmarks)
 * POST /echo-body streams the request body back. Requests with content-type application/grpc get a unary
 * gRPC reply whose message (protobuf, string field 1) is the JSON echo; header x-echo-grpc-status picks the
 * grpc-status trailer. An HTTP/1.1 WebSocket upgrade at any path completes the handshake and echoes frames.
 *
 * As a process: node images/echo/echo-server.ts --name NAME --port P [--host H]  (host defaults to 0.0.0.0
 * there, so it can serve a pod's address in a network namespace; in-process startEchoServer defaults to 127.0.0.1).
 * The process prints `echo-server NAME holding METHOD URL` when a request asking for a delay arrives, so a
 * test can wait until such a request is in flight instead of sleeping.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { pipeline } from 'node:stream';
import { parseArgs } from 'node:util';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { ClientHttp2Session, Http2ServerRequest } from 'node:http2';
import type { Duplex, Writable } from 'node:stream';

export const PEER_IDENTITY_HEADER = 'x-sluice-peer-identity';
const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_DELAY_MS = 60_000;
const MAX_SIZE_BYTES = 1024 ** 3;
const MAX_WEBSOCKET_FRAME_BYTES = 16 * 1024 * 1024;
const MAX_GRPC_MESSAGE_BYTES = 16 * 1024 * 1024;
const FILLER = Buffer.alloc(64 * 1024, 'x');

export interface EchoReply {
  name: string;
  /** Which pod answered (EchoServerOptions.pod); absent when not set. */
  pod?: string;
  method: string;
  /** Request target as received, query included. */
  path: string;
  /** Host header (HTTP/1.1) or :authority (HTTP/2). */
  authority: string | null;
  /** Request headers, lowercased, without HTTP/2 pseudo-headers. */
  headers: Record<string, string | string[]>;
  peerIdentity: string | null;
  protocol: 'HTTP/1.1' | 'HTTP/2';
  remoteAddress: string | null;
  bodyLength: number;
  /** With EchoServerOptions.upstream: what the upstream answered (its JSON if it sent JSON). */
  upstream?: { status: number; body: unknown } | { error: string };
}

export interface EchoServerOptions {
  name: string;
  /** 0 or absent: any free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Reported as `pod` in every reply, so a client can tell replicas apart (the image sets the pod name). */
  pod?: string;
  /** Called as each request arrives, before it is answered. */
  onRequest?: (method: string, url: string) => void;
  /**
   * A base URL (http://host:port). Each plain request is first sent there with the same method-less GET,
   * path and the headers an app propagates (UPSTREAM_HEADERS); the reply embeds the answer as `upstream`.
   * This makes the echo a small front end calling another Service, the way a storefront calls reviews.
   * /healthz is answered without the call.
   */
  upstream?: string;
}

/** Headers a well-behaved app copies from its request onto the calls it makes: user and trace context. */
export const UPSTREAM_HEADERS = [
  'end-user',
  'x-request-id',
  'traceparent',
  'tracestate',
  'b3',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
];
const UPSTREAM_TIMEOUT_MS = 10_000;
/** Answered without calling the upstream, so a front end's readiness does not depend on its backends. */
const HEALTH_PATH = '/healthz';

export interface EchoServer {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /**
   * What many apps do on SIGTERM: stop accepting connections, close idle keep-alive connections, answer
   * what still arrives on open ones with `Connection: close` (HTTP/1.1) and send GOAWAY (HTTP/2).
   */
  drain(): void;
  /** Resolves once no request is in flight, or after `timeoutMs`. */
  idle(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

type EchoRequest = IncomingMessage | Http2ServerRequest;
/** What ServerResponse and Http2ServerResponse have in common (their overloads make a plain union uncallable). */
interface EchoResponse extends Writable {
  writeHead(status: number, headers?: OutgoingHttpHeaders): unknown;
  setHeader(name: string, value: string): unknown;
  addTrailers(trailers: OutgoingHttpHeaders): void;
}

class BadRequest extends Error {}

export async function startEchoServer(options: EchoServerOptions): Promise<EchoServer> {
  const { name, pod } = options;
  const host = options.host ?? '127.0.0.1';
  const sockets = new Set<net.Socket>();
  let draining = false;
  let inFlight = 0;
  let onIdle: (() => void) | undefined;

  const upstream = options.upstream === undefined ? undefined : new URL(options.upstream);
  const onRequest = (req: EchoRequest, res: EchoResponse): void => {
    options.onRequest?.(req.method ?? '', req.url ?? '');
    inFlight++;
    res.once('close', () => {
      if (--inFlight === 0) onIdle?.();
    });
    if (draining && req.httpVersionMajor === 1) res.setHeader('connection', 'close');
    handleRequest(name, pod, upstream, req, res).catch(() => {
      res.destroy();
    });
  };
  const h1 = http.createServer({ keepAliveTimeout: 65_000 }, onRequest);
  h1.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    acceptWebSocket(name, req, socket, head);
  });
  h1.on('clientError', (_err, socket) => socket.destroy());
  const h2 = http2.createServer({}, onRequest);
  h2.on('sessionError', () => undefined);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });

  const listener = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    routeByPreface(socket, h1, h2);
  });

  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(options.port ?? 0, host, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  const address = listener.address() as net.AddressInfo;

  return {
    name,
    host,
    port: address.port,
    drain: () => {
      if (draining) return;
      draining = true;
      listener.close();
      h1.closeIdleConnections();
      for (const session of sessions) session.close();
    },
    idle: (timeoutMs) =>
      new Promise<void>((resolve) => {
        if (inFlight === 0) return resolve();
        const timer = setTimeout(resolve, timeoutMs);
        onIdle = () => {
          clearTimeout(timer);
          resolve();
        };
      }),
    close: () =>
      new Promise<void>((resolve) => {
        listener.close(() => {
          resolve();
        });
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** HTTP/2 prior knowledge starts with the connection preface; anything else is HTTP/1.x. */
function routeByPreface(socket: net.Socket, h1: http.Server, h2: http2.Http2Server): void {
  let received = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    received = Buffer.concat([received, chunk]);
    const compared = Math.min(received.length, HTTP2_PREFACE.length);
    const isH2 = received.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
    if (isH2 && received.length < HTTP2_PREFACE.length) return;
    socket.off('data', onData);
    // Paused, the unshifted bytes wait in the buffer: http2 reads them from there on the next tick; the
    // HTTP/1.1 server gets them as 'data' once resumed.
    socket.pause();
    socket.unshift(received);
    if (isH2) {
      h2.emit('connection', socket);
    } else {
      h1.emit('connection', socket);
      socket.resume();
    }
  };
  socket.on('data', onData);
}

async function handleRequest(
  name: string,
  pod: string | undefined,
  upstream: URL | undefined,
  req: EchoRequest,
  res: EchoResponse,
): Promise<void> {
  req.on('error', () => undefined);
  res.setHeader('x-echo-name', name);
  let params: EchoParams;
  try {
    params = parseParams(req);
  } catch (err) {
    req.resume();
    sendJson(res, 400, { name, error: err instanceof Error ? err.message : String(err) });
    return;
  }

  const contentType = headerValue(req.headers['content-type']) ?? '';
  if (/^application\/grpc(\+|;|$)/.test(contentType)) {
    await answerGrpc(name, pod, req, res, params);
    return;
  }
  if (params.pathname === '/echo-body') {
    await sleep(params.delayMs, res);
    if (res.destroyed) return;
    res.writeHead(params.status, {
      'content-type': contentType === '' ? 'application/octet-stream' : contentType,
    });
    pipeline(req, res, () => undefined);
    return;
  }

  const bodyLength = await drainBody(req);
  const upstreamAnswer =
    upstream && params.pathname !== HEALTH_PATH ? await callUpstream(upstream, req) : undefined;
  await sleep(params.delayMs, res);
  if (res.destroyed) return;
  const bodyAllowed = req.method !== 'HEAD' && ![204, 205, 304].includes(params.status);
  if (params.size !== null) {
    res.writeHead(params.status, {
      'content-type': 'application/octet-stream',
      'content-length': bodyAllowed ? params.size : 0,
    });
    if (bodyAllowed) writeFiller(res, params.size);
    else res.end();
    return;
  }
  const reply = describeRequest(name, pod, req, bodyLength);
  if (upstreamAnswer) {
    reply.upstream = upstreamAnswer;
    if ('error' in upstreamAnswer) {
      sendJson(res, 502, reply);
      return;
    }
  }
  if (bodyAllowed) sendJson(res, params.status, reply);
  else {
    res.writeHead(params.status);
    res.end();
  }
}

interface EchoParams {
  pathname: string;
  status: number;
  delayMs: number;
  size: number | null;
  grpcStatus: number;
}

function parseParams(req: EchoRequest): EchoParams {
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://echo.invalid');
  } catch {
    url = new URL('http://echo.invalid/');
  }
  const query = url.searchParams;
  const delayHeader = headerValue(req.headers['x-echo-delay']);
  const size = query.get('size');
  return {
    pathname: url.pathname,
    status: intParam('status', query.get('status'), 200, 200, 599),
    delayMs: intParam('delay', query.get('delay') ?? delayHeader ?? null, 0, 0, MAX_DELAY_MS),
    size: size === null ? null : intParam('size', size, 0, 0, MAX_SIZE_BYTES),
    grpcStatus: intParam(
      'x-echo-grpc-status',
      headerValue(req.headers['x-echo-grpc-status']) ?? null,
      0,
      0,
      16,
    ),
  };
}

function intParam(label: string, raw: string | null, fallback: number, min: number, max: number): number {
  if (raw === null) return fallback;
  const value = /^\d{1,10}$/.test(raw) ? Number(raw) : NaN;
  if (!(value >= min && value <= max)) throw new BadRequest(`${label} must be an integer in ${min}..${max}`);
  return value;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function describeRequest(
  name: string,
  pod: string | undefined,
  req: EchoRequest,
  bodyLength: number,
): EchoReply {
  const headers: Record<string, string | string[]> = {};
  for (const [key, value] of Object.entries(req.headers as IncomingHttpHeaders)) {
    if (!key.startsWith(':') && value !== undefined) headers[key.toLowerCase()] = value;
  }
  const isH2 = req.httpVersionMajor === 2;
  const authority = isH2 ? (headerValue(req.headers[':authority']) ?? req.headers.host) : req.headers.host;
  return {
    name,
    ...(pod === undefined ? {} : { pod }),
    method: req.method ?? '',
    path: req.url ?? '',
    authority: authority ?? null,
    headers,
    peerIdentity: headerValue(req.headers[PEER_IDENTITY_HEADER]) ?? null,
    protocol: isH2 ? 'HTTP/2' : 'HTTP/1.1',
    remoteAddress: req.socket.remoteAddress ?? null,
    bodyLength,
  };
}

/** GET upstream + the request's path, with the propagated headers; never throws. */
function callUpstream(
  upstream: URL,
  req: EchoRequest,
): Promise<{ status: number; body: unknown } | { error: string }> {
  const headers: OutgoingHttpHeaders = {};
  for (const name of UPSTREAM_HEADERS) {
    const value = req.headers[name];
    if (value !== undefined) headers[name] = value;
  }
  const target = new URL(req.url ?? '/', upstream);
  return new Promise((resolve) => {
    const call = http.get(target, { headers, timeout: UPSTREAM_TIMEOUT_MS }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.once('error', (err) => resolve({ error: err.message }));
      answer.once('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: kept as text
        }
        resolve({ status: answer.statusCode ?? 0, body });
      });
    });
    call.once('timeout', () =>
      call.destroy(new Error(`no answer from ${upstream.host} in ${UPSTREAM_TIMEOUT_MS} ms`)),
    );
    call.once('error', (err) => resolve({ error: err.message }));
  });
}

function sendJson(res: EchoResponse, status: number, body: unknown): void {
  const payload = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': payload.length });
  res.end(payload);
}

function drainBody(req: EchoRequest): Promise<number> {
  return new Promise((resolve) => {
    let length = 0;
    req.on('data', (chunk: Buffer) => (length += chunk.length));
    req.once('end', () => {
      resolve(length);
    });
    req.once('close', () => {
      resolve(length);
    });
  });
}

function sleep(ms: number, res: EchoResponse): Promise<void> {
  if (ms === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    res.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function writeFiller(res: EchoResponse, size: number): void {
  let remaining = size;
  const writeMore = (): void => {
    while (remaining > FILLER.length) {
      remaining -= FILLER.length;
      if (!res.write(FILLER)) {
        res.once('drain', writeMore);
        return;
      }
      if (res.destroyed) return;
    }
    res.end(FILLER.subarray(0, remaining));
  };
  writeMore();
}

// ---------- gRPC ----------

async function answerGrpc(
  name: string,
  pod: string | undefined,
  req: EchoRequest,
  res: EchoResponse,
  params: EchoParams,
): Promise<void> {
  const body = await readBody(req, MAX_GRPC_MESSAGE_BYTES + 5);
  await sleep(params.delayMs, res);
  if (res.destroyed) return;
  const reply = describeRequest(name, pod, req, body.length);
  res.writeHead(200, {
    'content-type': 'application/grpc',
    // Announce trailers so an HTTP/1.1 hop (chunked) carries them too; HTTP/2 ignores this header.
    ...(req.httpVersionMajor === 2 ? {} : { trailer: 'grpc-status, grpc-message' }),
  });
  const trailers: OutgoingHttpHeaders = { 'grpc-status': String(params.grpcStatus) };
  if (params.grpcStatus !== 0)
    trailers['grpc-message'] = `echo ${name}: requested status ${params.grpcStatus}`;
  res.addTrailers(trailers);
  if (params.grpcStatus === 0) res.end(grpcFrame(encodeStringField1(JSON.stringify(reply))));
  else res.end();
}

function readBody(req: EchoRequest, limit: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    req.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length <= limit) chunks.push(chunk);
    });
    req.once('end', () => {
      resolve(Buffer.concat(chunks));
    });
    req.once('close', () => {
      resolve(Buffer.concat(chunks));
    });
  });
}

/** gRPC message framing: 1 byte compressed flag (0), 4 bytes big-endian length, message. */
export function grpcFrame(message: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/** A protobuf message with one length-delimited field 1 (tag 0x0a) holding the UTF-8 string. */
export function encodeStringField1(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from([0x0a]), encodeVarint(bytes.length), bytes]);
}

function encodeVarint(value: number): Buffer {
  const out: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
  return Buffer.from(out);
}

/** Returns field 1 (length-delimited) of a protobuf message, skipping other fields; null if absent/malformed. */
export function decodeStringField1(message: Buffer): string | null {
  let offset = 0;
  const readVarint = (): number | null => {
    let value = 0;
    for (let factor = 1; offset < message.length && factor <= 2 ** 49; factor *= 0x80) {
      const byte = message[offset++]!;
      value += (byte & 0x7f) * factor;
      if (byte < 0x80) return value;
    }
    return null;
  };
  while (offset < message.length) {
    const tag = readVarint();
    if (tag === null) return null;
    const wireType = tag % 8;
    if (wireType === 0) {
      if (readVarint() === null) return null;
    } else if (wireType === 1 || wireType === 5) {
      offset += wireType === 1 ? 8 : 4;
    } else if (wireType === 2) {
      const length = readVarint();
      if (length === null || offset + length > message.length) return null;
      const value = message.subarray(offset, offset + length);
      offset += length;
      if (Math.floor(tag / 8) === 1) return value.toString('utf8');
    } else {
      return null;
    }
  }
  return null;
}

export interface GrpcCallResult {
  /** HTTP status of the response. */
  status: number;
  /** grpc-status from the trailers (or from the headers of a trailers-only response); null if missing. */
  grpcStatus: number | null;
  grpcMessage: string | null;
  /** The echo server's JSON reply, or null if the response carried no (parsable) message. */
  reply: EchoReply | null;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
}

/**
 * One unary gRPC call over HTTP/2 (h2c for http:// URLs, TLS for https://), sending an empty request message.
 * Pass a URL to use a fresh connection, or an open session to reuse it.
 */
export async function grpcCall(
  target: string | URL | ClientHttp2Session,
  method: string,
  headers: Record<string, string> = {},
  timeoutMs = 10_000,
): Promise<GrpcCallResult> {
  const ownSession = typeof target === 'string' || target instanceof URL;
  const session = ownSession ? http2.connect(target) : target;
  try {
    return await new Promise<GrpcCallResult>((resolve, reject) => {
      session.once('error', reject);
      const stream = session.request({
        ':method': 'POST',
        ':path': method,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...headers,
      });
      stream.setTimeout(timeoutMs, () => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
      });
      let responseHeaders: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on('response', (h) => {
        responseHeaders = h;
      });
      stream.on('trailers', (t: http2.IncomingHttpHeaders) => {
        trailers = t;
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', reject);
      stream.on('close', () => {
        session.off('error', reject);
        if (responseHeaders[':status'] === undefined) {
          reject(new Error(`gRPC stream closed without a response (code ${stream.rstCode})`));
          return;
        }
        const grpcStatus = headerValue(trailers['grpc-status'] ?? responseHeaders['grpc-status']);
        const body = Buffer.concat(chunks);
        let reply: EchoReply | null = null;
        if (body.length >= 5 && body[0] === 0 && body.readUInt32BE(1) === body.length - 5) {
          const text = decodeStringField1(body.subarray(5));
          try {
            reply = text === null ? null : (JSON.parse(text) as EchoReply);
          } catch {
            reply = null;
          }
        }
        resolve({
          status: Number(responseHeaders[':status']),
          grpcStatus: grpcStatus === undefined ? null : Number(grpcStatus),
          grpcMessage: headerValue(trailers['grpc-message'] ?? responseHeaders['grpc-message']) ?? null,
          reply,
          headers: responseHeaders,
          trailers,
        });
      });
      stream.end(grpcFrame(Buffer.alloc(0)));
    });
  } finally {
    if (ownSession) session.close();
  }
}

// ---------- WebSocket ----------

function acceptWebSocket(name: string, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => socket.destroy());
  const key = req.headers['sec-websocket-key'];
  if (req.headers.upgrade?.toLowerCase() !== 'websocket' || typeof key !== 'string' || key === '') {
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  const accept = createHash('sha1')
    .update(key + WEBSOCKET_GUID)
    .digest('base64');
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n' +
      `sec-websocket-accept: ${accept}\r\nx-echo-name: ${name}\r\n\r\n`,
  );
  echoWebSocketFrames(socket, head);
}

/** Echoes data frames (unmasked, as a server must), answers ping with pong and close with close. */
function echoWebSocketFrames(socket: Duplex, head: Buffer): void {
  let pending = head;
  const onData = (chunk: Buffer): void => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    for (;;) {
      const frame = parseFrame(pending);
      if (frame === null) return;
      if (frame === 'too-large') {
        socket.end(encodeFrame(0x88, Buffer.from([0x03, 0xf1]))); // close 1009: message too big
        socket.off('data', onData);
        return;
      }
      pending = pending.subarray(frame.consumed);
      const opcode = frame.firstByte & 0x0f;
      if (opcode === 0x8) {
        socket.end(encodeFrame(0x88, frame.payload));
        socket.off('data', onData);
        return;
      }
      if (opcode === 0x9) socket.write(encodeFrame(0x8a, frame.payload));
      else if (opcode !== 0xa) socket.write(encodeFrame(frame.firstByte, frame.payload));
    }
  };
  socket.on('data', onData);
  if (head.length > 0) onData(Buffer.alloc(0));
}

function parseFrame(
  buf: Buffer,
): { firstByte: number; payload: Buffer; consumed: number } | 'too-large' | null {
  if (buf.length < 2) return null;
  const masked = (buf[1]! & 0x80) !== 0;
  let length = buf[1]! & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (buf.length < 4) return null;
    length = buf.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (buf.length < 10) return null;
    const long = buf.readBigUInt64BE(2);
    if (long > BigInt(MAX_WEBSOCKET_FRAME_BYTES)) return 'too-large';
    length = Number(long);
    offset = 10;
  }
  if (length > MAX_WEBSOCKET_FRAME_BYTES) return 'too-large';
  const maskOffset = offset;
  if (masked) offset += 4;
  if (buf.length < offset + length) return null;
  const payload = Buffer.from(buf.subarray(offset, offset + length));
  if (masked) {
    for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ buf[maskOffset + (i % 4)]!;
  }
  return { firstByte: buf[0]!, payload, consumed: offset + length };
}

function encodeFrame(firstByte: number, payload: Buffer): Buffer {
  let header: Buffer;
  if (payload.length < 126) {
    header = Buffer.from([firstByte, payload.length]);
  } else if (payload.length < 0x10000) {
    header = Buffer.alloc(4);
    header[0] = firstByte;
    header[1] = 126;
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = firstByte;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  return Buffer.concat([header, payload]);
}

// ---------- process entry point ----------

async function runAsProcess(argv: string[]): Promise<number> {
  let values: { name?: string | undefined; port?: string | undefined; host?: string | undefined };
  try {
    const parsed = parseArgs({
      args: argv,
      options: { name: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' } },
      strict: true,
    });
    values = parsed.values;
  } catch (err) {
    process.stderr.write(`echo-server: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  const port = Number(values.port);
  if (
    values.name === undefined ||
    values.name === '' ||
    !/^\d{1,5}$/.test(values.port ?? '') ||
    port > 65535
  ) {
    process.stderr.write('usage: echo-server --name NAME --port PORT(0-65535) [--host HOST]\n');
    return 2;
  }
  let server: EchoServer;
  try {
    const name = values.name;
    server = await startEchoServer({
      name,
      port,
      host: values.host ?? '0.0.0.0',
      onRequest: (method, url) => {
        if (/[?&]delay=/.test(url)) process.stdout.write(`echo-server ${name} holding ${method} ${url}\n`);
      },
    });
  } catch (err) {
    process.stderr.write(`echo-server: cannot listen: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  process.stdout.write(`echo-server ${server.name} listening on ${server.host}:${server.port}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await server.close();
  return 0;
}

if (import.meta.main) {
  process.exitCode = await runAsProcess(process.argv.slice(2));
}
