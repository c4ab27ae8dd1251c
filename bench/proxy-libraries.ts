/**
 * Which library should the sidecar use towards upstreams? Measures, on loopback, an echo upstream (1 KiB
 * replies) reached directly and through minimal forward proxies built on undici, http2-proxy and node:http(2),
 * over HTTP/1.1 and h2c. See docs/adr/0002-proxy-upstream-library.md.
 *
 *   node_modules/.bin/node bench/proxy-libraries.ts [--quick] [--rounds N] [--only h1|h2] [--json FILE]
 *
 * Processes (forks of this file): the upstream (echo server + a @grpc/grpc-js server for the gRPC probe), one
 * proxy per variant (all started up front), and the load generator (raw-socket HTTP/1.1 client, node:http2
 * client). After a warm-up, each round visits every variant (in rotated order, so background load spreads
 * out): closed-loop maximum throughput, then an open-loop fixed rate whose latency is measured from the moment
 * a request is due (waiting for a free connection counts). The table shows medians over the rounds. CPU
 * comes from process.cpuUsage() inside each process. Only 127.0.0.1 is contacted; every phase is bounded.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import { createRequire } from 'node:module';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import http2Proxy from 'http2-proxy';
import { H2CClient, Pool } from 'undici';
import type { Dispatcher } from 'undici';
import { encodeStringField1, grpcCall, startEchoServer } from '../images/echo/echo-server.ts';

type Protocol = 'h1' | 'h2';
type Library = 'direct' | 'undici' | 'http2-proxy' | 'node';
interface Variant {
  protocol: Protocol;
  library: Library;
  label: string;
}

const VARIANTS: Variant[] = [
  { protocol: 'h1', library: 'direct', label: 'direct' },
  { protocol: 'h1', library: 'undici', label: 'undici Pool, dispatch()' },
  { protocol: 'h1', library: 'http2-proxy', label: 'http2-proxy web()' },
  { protocol: 'h1', library: 'node', label: 'node:http Agent, pipe' },
  { protocol: 'h2', library: 'direct', label: 'direct' },
  { protocol: 'h2', library: 'undici', label: 'undici H2CClient, dispatch()' },
  { protocol: 'h2', library: 'http2-proxy', label: 'http2-proxy web() (h1 upstream)' },
  { protocol: 'h2', library: 'node', label: 'node:http2 session, pipe' },
];

const BODY_BYTES = 1024;
const BENCH_PATH = `/bench?size=${BODY_BYTES}`;
const H1_CONNECTIONS = 32;
const H2_SESSIONS = 2;
const H2_STREAMS_PER_SESSION = 16;
const FIXED_RATE = 1000;
const GRPC_METHOD = '/echo.Echo/Call';

// ---------------------------------------------------------------- IPC messages

interface CpuReply {
  type: 'cpu';
  cpuMicros: number;
  rssBytes: number;
}
interface ReadyMessage {
  type: 'ready';
  port: number;
  grpcPort?: number;
}
interface LoadSpec {
  type: 'run';
  mode: 'max' | 'rate';
  protocol: Protocol;
  port: number;
  durationMs: number;
  rate: number;
}
interface LoadResult {
  type: 'result';
  completed: number;
  errors: number;
  elapsedMs: number;
  p50Ms: number;
  p99Ms: number;
  cpuMicros: number;
  /** p99 event-loop delay of the load generator: high values mean the generator itself lagged. */
  loadgenLagP99Ms: number;
}

function sendToParent(message: ReadyMessage | CpuReply | LoadResult): void {
  process.send?.(message);
}

function answerCpuQueries(): void {
  process.on('message', (message: { type?: string }) => {
    if (message.type === 'cpu') {
      const usage = process.cpuUsage();
      sendToParent({
        type: 'cpu',
        cpuMicros: usage.user + usage.system,
        rssBytes: process.memoryUsage().rss,
      });
    }
  });
  process.on('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------- upstream role

async function runUpstream(): Promise<void> {
  const echo = await startEchoServer({ name: 'upstream', port: 0, host: '127.0.0.1' });
  // A real gRPC server refuses HTTP/1.1, unlike the lenient echo server: the honest target for the gRPC probe.
  const grpcServer = new grpc.Server();
  grpcServer.register(
    GRPC_METHOD,
    (_call: unknown, callback: (err: null, value: Buffer) => void) => {
      callback(null, encodeStringField1(JSON.stringify({ name: 'grpc-upstream' })));
    },
    (value: Buffer) => value,
    (value: Buffer) => value,
    'unary',
  );
  const grpcPort = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err) reject(err);
      else resolve(port);
    });
  });
  answerCpuQueries();
  sendToParent({ type: 'ready', port: echo.port, grpcPort });
}

// ---------------------------------------------------------------- proxy role

type FrontRequest = IncomingMessage | Http2ServerRequest;
/** What ServerResponse and Http2ServerResponse have in common. */
interface FrontResponse extends Writable {
  readonly headersSent: boolean;
  writeHead(status: number, headers?: OutgoingHttpHeaders): unknown;
  addTrailers(trailers: OutgoingHttpHeaders): void;
}
interface Upstream {
  key: string;
  host: string;
  port: number;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  'host',
]);

/** Drops pseudo-headers, hop-by-hop headers and those named in Connection; keeps `te: trailers` (gRPC). */
function endToEndHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = new Set(
    (headers.connection ?? '')
      .split(',')
      .map((token) => token.trim().toLowerCase())
      .filter((token) => token !== ''),
  );
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':') || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = value;
  }
  if (headers.te === 'trailers') out.te = 'trailers';
  return out;
}

function authorityOf(req: FrontRequest): string {
  const authority = req.headers[':authority'];
  return (typeof authority === 'string' ? authority : undefined) ?? req.headers.host ?? '';
}

function hasBody(req: FrontRequest): boolean {
  return req.method !== 'GET' && req.method !== 'HEAD';
}

function failResponse(res: FrontResponse): void {
  if (res.headersSent) {
    res.destroy();
  } else {
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end('upstream error\n');
  }
}

type Forward = (req: FrontRequest, res: FrontResponse, upstream: Upstream) => void;

function undiciForwarder(protocol: Protocol): Forward {
  const dispatchers = new Map<string, Dispatcher>();
  const dispatcherFor = (upstream: Upstream): Dispatcher => {
    let dispatcher = dispatchers.get(upstream.key);
    if (!dispatcher) {
      const origin = `http://${upstream.host}:${upstream.port}`;
      dispatcher = protocol === 'h1' ? new Pool(origin) : new H2CClient(origin);
      dispatchers.set(upstream.key, dispatcher);
    }
    return dispatcher;
  };
  return (req, res, upstream) => {
    let controller: Dispatcher.DispatchController | null = null;
    res.once('close', () => {
      if (!res.writableFinished) controller?.abort(new Error('client went away'));
    });
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
      },
      onResponseStart(_c, statusCode, headers) {
        if (statusCode >= 200) res.writeHead(statusCode, endToEndHeaders(headers));
      },
      onResponseData(c, chunk) {
        if (!res.write(chunk)) {
          c.pause();
          res.once('drain', () => {
            c.resume();
          });
        }
      },
      onResponseEnd(c, trailers) {
        // undici 7.30 over h2 passes `{}` here; the trailers are on controller.rawTrailers (as an object).
        const raw = c.rawTrailers;
        const source =
          Object.keys(trailers).length === 0 && raw && !Array.isArray(raw)
            ? (raw as IncomingHttpHeaders)
            : trailers;
        const forwarded = endToEndHeaders(source);
        if (Object.keys(forwarded).length > 0) res.addTrailers(forwarded);
        res.end();
      },
      onResponseError() {
        failResponse(res);
      },
    };
    dispatcherFor(upstream).dispatch(
      {
        path: req.url ?? '/',
        method: req.method ?? 'GET',
        headers: { ...endToEndHeaders(req.headers), host: authorityOf(req) },
        body: hasBody(req) ? req : null,
      },
      handler,
    );
  };
}

function http2ProxyForwarder(): Forward {
  const agent = new http.Agent({ keepAlive: true });
  return (req, res, upstream) => {
    const options = {
      hostname: upstream.host,
      port: upstream.port,
      onReq: (_req: unknown, requestOptions: http.RequestOptions) => {
        requestOptions.agent = agent;
        return Promise.resolve();
      },
    };
    const done = (err: Error | null): void => {
      if (err) failResponse(res);
    };
    // The library's overloads are per protocol; the runtime code is the same for both.
    if (req instanceof http.IncomingMessage && res instanceof http.ServerResponse) {
      void http2Proxy.web(req, res, options, done);
    } else if (req instanceof http2.Http2ServerRequest && res instanceof http2.Http2ServerResponse) {
      void http2Proxy.web(req, res, options, done);
    }
  };
}

function nodeHttpForwarder(): Forward {
  const agent = new http.Agent({ keepAlive: true });
  return (req, res, upstream) => {
    const upstreamReq = http.request(
      {
        host: upstream.host,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...endToEndHeaders(req.headers), host: authorityOf(req) },
        agent,
      },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, endToEndHeaders(upstreamRes.headers));
        upstreamRes.pipe(res, { end: false });
        upstreamRes.once('end', () => {
          const trailers = endToEndHeaders(upstreamRes.trailers);
          if (Object.keys(trailers).length > 0) res.addTrailers(trailers);
          res.end();
        });
        upstreamRes.once('error', () => res.destroy());
      },
    );
    upstreamReq.once('error', () => {
      failResponse(res);
    });
    res.once('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    if (hasBody(req)) req.pipe(upstreamReq);
    else upstreamReq.end();
  };
}

function nodeHttp2Forwarder(): Forward {
  const sessions = new Map<string, http2.ClientHttp2Session>();
  const sessionFor = (upstream: Upstream): http2.ClientHttp2Session => {
    let session = sessions.get(upstream.key);
    if (!session || session.closed || session.destroyed) {
      const fresh = http2.connect(`http://${upstream.host}:${upstream.port}`);
      fresh.on('error', () => undefined);
      fresh.once('close', () => {
        if (sessions.get(upstream.key) === fresh) sessions.delete(upstream.key);
      });
      sessions.set(upstream.key, fresh);
      session = fresh;
    }
    return session;
  };
  return (req, res, upstream) => {
    const stream = sessionFor(upstream).request(
      {
        ...endToEndHeaders(req.headers),
        ':method': req.method,
        ':path': req.url,
        ':authority': authorityOf(req),
      },
      { endStream: !hasBody(req) },
    );
    stream.once('response', (headers) => {
      res.writeHead(Number(headers[':status']), endToEndHeaders(headers));
      stream.pipe(res);
    });
    stream.once('trailers', (trailers: IncomingHttpHeaders) => {
      res.addTrailers(endToEndHeaders(trailers));
    });
    stream.once('error', () => {
      failResponse(res);
    });
    res.once('close', () => {
      if (!res.writableFinished) stream.close(http2.constants.NGHTTP2_CANCEL);
    });
    if (hasBody(req)) req.pipe(stream);
  };
}

async function runProxy(
  library: Library,
  protocol: Protocol,
  echoPort: number,
  grpcPort: number,
): Promise<void> {
  const forward =
    library === 'undici'
      ? undiciForwarder(protocol)
      : library === 'http2-proxy'
        ? http2ProxyForwarder()
        : protocol === 'h1'
          ? nodeHttpForwarder()
          : nodeHttp2Forwarder();
  const echo: Upstream = { key: 'echo', host: '127.0.0.1', port: echoPort };
  const grpcUpstream: Upstream = { key: 'grpc', host: '127.0.0.1', port: grpcPort };
  const onRequest = (req: FrontRequest, res: FrontResponse): void => {
    req.on('error', () => undefined);
    const isGrpc = String(req.headers['content-type']).startsWith('application/grpc');
    try {
      forward(req, res, isGrpc ? grpcUpstream : echo);
    } catch {
      failResponse(res);
    }
  };
  const server = protocol === 'h1' ? http.createServer(onRequest) : http2.createServer(onRequest);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  answerCpuQueries();
  sendToParent({ type: 'ready', port: (server.address() as net.AddressInfo).port });
}

// ---------------------------------------------------------------- load generator role

interface Client {
  /** Starts one request; `onDone(ok)` fires once. Returns false if no capacity is free. */
  tryStart(onDone: (ok: boolean) => void): boolean;
  close(): void;
}

/** Minimal keep-alive HTTP/1.1 client on a raw socket: one request in flight, Content-Length or chunked. */
class H1Connection {
  private socket: net.Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private phase: 'idle' | 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' = 'idle';
  private remaining = 0;
  private status = 0;
  private bodyBytes = 0;
  private onDone: ((ok: boolean) => void) | null = null;
  private closed = false;
  private readonly port: number;
  private readonly request: Buffer;

  constructor(port: number, request: Buffer) {
    this.port = port;
    this.request = request;
    this.socket = this.connect();
  }

  get busy(): boolean {
    return this.onDone !== null;
  }

  private connect(): net.Socket {
    const socket = net.connect(this.port, '127.0.0.1');
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.finish(false);
      if (!this.closed) this.socket = this.connect();
    });
    return socket;
  }

  start(onDone: (ok: boolean) => void): void {
    this.onDone = onDone;
    this.phase = 'head';
    this.buffer = Buffer.alloc(0);
    this.socket.write(this.request);
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private finish(ok: boolean): void {
    const onDone = this.onDone;
    this.onDone = null;
    this.phase = 'idle';
    onDone?.(ok);
  }

  private parse(): void {
    for (;;) {
      switch (this.phase) {
        case 'idle':
          return;
        case 'head': {
          const end = this.buffer.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = this.buffer.toString('latin1', 0, end);
          this.buffer = this.buffer.subarray(end + 4);
          this.status = Number(head.slice(9, 12));
          this.bodyBytes = 0;
          const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
          if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
            this.phase = 'chunk-size';
          } else if (length) {
            this.remaining = Number(length[1]);
            this.phase = 'body';
          } else {
            this.socket.destroy(); // unframed body: cannot reuse the connection
            return;
          }
          break;
        }
        case 'body':
        case 'chunk-data': {
          const take = Math.min(this.remaining, this.buffer.length);
          this.buffer = this.buffer.subarray(take);
          this.remaining -= take;
          this.bodyBytes += take;
          if (this.remaining > 0) return;
          if (this.phase === 'body') {
            this.finish(this.status === 200 && this.bodyBytes === BODY_BYTES);
            return;
          }
          this.phase = 'chunk-end';
          break;
        }
        case 'chunk-end':
        case 'chunk-size':
        case 'trailers': {
          const eol = this.buffer.indexOf('\r\n');
          if (eol < 0) return;
          const line = this.buffer.toString('latin1', 0, eol);
          this.buffer = this.buffer.subarray(eol + 2);
          if (this.phase === 'chunk-end') {
            this.phase = 'chunk-size';
          } else if (this.phase === 'chunk-size') {
            this.remaining = parseInt(line, 16);
            this.phase = this.remaining === 0 ? 'trailers' : 'chunk-data';
          } else if (line === '') {
            this.finish(this.status === 200 && this.bodyBytes === BODY_BYTES);
            return;
          }
          break;
        }
      }
    }
  }
}

function h1Client(port: number): Client {
  const request = Buffer.from(`GET ${BENCH_PATH} HTTP/1.1\r\nHost: echo.bench\r\n\r\n`, 'latin1');
  const connections = Array.from({ length: H1_CONNECTIONS }, () => new H1Connection(port, request));
  return {
    tryStart(onDone) {
      const free = connections.find((connection) => !connection.busy);
      if (!free) return false;
      free.start(onDone);
      return true;
    },
    close() {
      for (const connection of connections) connection.close();
    },
  };
}

function h2Client(port: number): Client {
  const sessions = Array.from({ length: H2_SESSIONS }, () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    return { session, inFlight: 0 };
  });
  return {
    tryStart(onDone) {
      const slot = sessions.find((s) => s.inFlight < H2_STREAMS_PER_SESSION && !s.session.destroyed);
      if (!slot) return false;
      slot.inFlight++;
      let status = 0;
      let bodyBytes = 0;
      const stream = slot.session.request({ ':path': BENCH_PATH }, { endStream: true });
      stream.on('response', (headers) => {
        status = Number(headers[':status']);
      });
      stream.on('data', (chunk: Buffer) => {
        bodyBytes += chunk.length;
      });
      stream.on('error', () => undefined);
      stream.on('close', () => {
        slot.inFlight--;
        onDone(status === 200 && bodyBytes === BODY_BYTES);
      });
      return true;
    },
    close() {
      for (const { session } of sessions) session.destroy();
    },
  };
}

async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const client = spec.protocol === 'h1' ? h1Client(spec.port) : h2Client(spec.port);
  await new Promise((resolve) => setTimeout(resolve, 100)); // let the connections open
  const cpuBefore = process.cpuUsage();
  const lag = monitorEventLoopDelay({ resolution: 5 });
  lag.enable();
  const latencies: number[] = [];
  let completed = 0;
  let errors = 0;
  let inFlight = 0;
  const started = performance.now();
  const deadline = started + spec.durationMs;

  const finished = new Promise<void>((resolve) => {
    const record = (dueAt: number, ok: boolean): void => {
      inFlight--;
      const now = performance.now();
      if (ok) {
        completed++;
        latencies.push(now - dueAt);
      } else {
        errors++;
      }
    };
    if (spec.mode === 'max') {
      const issue = (): void => {
        if (performance.now() >= deadline) {
          if (inFlight === 0) resolve();
          return;
        }
        const dueAt = performance.now();
        inFlight++;
        const accepted = client.tryStart((ok) => {
          record(dueAt, ok);
          issue();
        });
        if (!accepted) {
          record(dueAt, false);
          setTimeout(issue, 10);
        }
      };
      const slots = spec.protocol === 'h1' ? H1_CONNECTIONS : H2_SESSIONS * H2_STREAMS_PER_SESSION;
      for (let i = 0; i < slots; i++) issue();
      setTimeout(() => {
        resolve(); // in-flight requests past the deadline are not counted
      }, spec.durationMs + 2000);
    } else {
      const total = Math.round((spec.rate * spec.durationMs) / 1000);
      const queue: number[] = [];
      let issued = 0;
      const drainQueue = (): void => {
        while (queue.length > 0) {
          const dueAt = queue[0]!;
          const accepted = client.tryStart((ok) => {
            record(dueAt, ok);
            drainQueue();
            if (issued === total && inFlight === 0) resolve();
          });
          if (!accepted) return;
          queue.shift();
        }
      };
      const tick = (): void => {
        const now = performance.now();
        const due = Math.min(total, Math.floor(((now - started) * spec.rate) / 1000) + 1);
        for (; issued < due; issued++) {
          inFlight++;
          queue.push(now);
        }
        drainQueue();
        if (issued < total) setTimeout(tick, 1);
      };
      tick();
      setTimeout(() => {
        resolve();
      }, spec.durationMs + 5000);
    }
  });
  await finished;
  const elapsedMs = Math.min(performance.now(), deadline) - started;
  const cpu = process.cpuUsage(cpuBefore);
  lag.disable();
  client.close();
  errors += spec.mode === 'rate' ? Math.max(0, inFlight) : 0;
  latencies.sort((a, b) => a - b);
  const percentile = (p: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  return {
    type: 'result',
    completed,
    errors,
    elapsedMs,
    p50Ms: percentile(0.5),
    p99Ms: percentile(0.99),
    cpuMicros: cpu.user + cpu.system,
    loadgenLagP99Ms: lag.percentile(99) / 1e6,
  };
}

function runLoadgen(): void {
  process.on('message', (message: LoadSpec) => {
    void runLoad(message).then(sendToParent);
  });
  process.on('disconnect', () => process.exit(0));
  sendToParent({ type: 'ready', port: 0 });
}

// ---------------------------------------------------------------- orchestration

/** One round of one variant: a closed-loop phase, then a fixed-rate phase. */
interface Sample {
  maxRps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  proxyCpuMsPer1kAtRate: number | null;
  proxyCpuMsPer1kAtMax: number | null;
  upstreamCpuMsPer1kAtRate: number;
  loadgenLagP99MsAtRate: number;
}

interface Target {
  variant: Variant;
  port: number;
  proxy: ChildProcess | null;
  grpcProbe: string;
  samples: Sample[];
  proxyRssMb: number | null;
}

interface Durations {
  warmupMs: number;
  maxMs: number;
  rateMs: number;
  rounds: number;
}

const selfPath = import.meta.filename;
const children = new Set<ChildProcess>();

function startRole(args: string[]): Promise<{ child: ChildProcess; ready: ReadyMessage }> {
  const child = fork(selfPath, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    child.once('message', (message: ReadyMessage) => {
      resolve({ child, ready: message });
    });
    child.once('exit', (code) => {
      reject(new Error(`${args.join(' ')} exited with ${code}`));
    });
  });
}

function ask<T extends { type: string }>(
  child: ChildProcess,
  message: object,
  replyType: T['type'],
): Promise<T> {
  return new Promise((resolve) => {
    const onMessage = (reply: T): void => {
      if (reply.type !== replyType) return;
      child.off('message', onMessage);
      resolve(reply);
    };
    child.on('message', onMessage);
    child.send(message);
  });
}

const cpuOf = (child: ChildProcess): Promise<CpuReply> => ask<CpuReply>(child, { type: 'cpu' }, 'cpu');

function runLoadOn(
  loadgen: ChildProcess,
  target: Target,
  mode: 'max' | 'rate',
  durationMs: number,
): Promise<LoadResult> {
  const spec: LoadSpec = {
    type: 'run',
    mode,
    protocol: target.variant.protocol,
    port: target.port,
    durationMs,
    rate: FIXED_RATE,
  };
  return ask<LoadResult>(loadgen, spec, 'result');
}

async function probeGrpc(port: number): Promise<string> {
  try {
    const result = await grpcCall(`http://127.0.0.1:${port}`, GRPC_METHOD, {}, 5000);
    return result.grpcStatus === 0 ? 'ok' : `HTTP ${result.status}, grpc-status ${result.grpcStatus}`;
  } catch (err) {
    return `failed: ${err instanceof Error ? err.message : String(err)}`;
  }
}

async function sampleOnce(
  target: Target,
  upstream: ChildProcess,
  loadgen: ChildProcess,
  durations: Durations,
): Promise<Sample> {
  const cpu = async (): Promise<{ proxy: number | null; upstream: number; rss: number | null }> => {
    const proxyCpu = target.proxy ? await cpuOf(target.proxy) : null;
    const upstreamCpu = await cpuOf(upstream);
    return {
      proxy: proxyCpu?.cpuMicros ?? null,
      upstream: upstreamCpu.cpuMicros,
      rss: proxyCpu?.rssBytes ?? null,
    };
  };
  const perThousand = (micros: number, requests: number): number => micros / 1000 / (requests / 1000);

  const beforeMax = await cpu();
  const max = await runLoadOn(loadgen, target, 'max', durations.maxMs);
  const afterMax = await cpu();
  const rate = await runLoadOn(loadgen, target, 'rate', durations.rateMs);
  const afterRate = await cpu();
  target.proxyRssMb = afterRate.rss === null ? null : afterRate.rss / 1024 / 1024;
  return {
    maxRps: (max.completed / max.elapsedMs) * 1000,
    p50Ms: rate.p50Ms,
    p99Ms: rate.p99Ms,
    errors: max.errors + rate.errors,
    proxyCpuMsPer1kAtRate:
      afterRate.proxy === null ? null : perThousand(afterRate.proxy - afterMax.proxy!, rate.completed),
    proxyCpuMsPer1kAtMax:
      afterMax.proxy === null ? null : perThousand(afterMax.proxy - beforeMax.proxy!, max.completed),
    upstreamCpuMsPer1kAtRate: perThousand(afterRate.upstream - afterMax.upstream, rate.completed),
    loadgenLagP99MsAtRate: rate.loadgenLagP99Ms,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function medianOf(target: Target, pick: (sample: Sample) => number | null): number | null {
  const values = target.samples.map(pick).filter((value): value is number => value !== null);
  return values.length === 0 ? null : median(values);
}

function formatTable(targets: Target[]): string {
  const header = [
    'proto',
    'variant',
    'max rps (min-max)',
    'x direct',
    'p50 ms',
    'p99 ms',
    'p50 x',
    'p99 x',
    'proxy CPU ms/1k @1k rps',
    'proxy CPU ms/1k @max',
    'upstream CPU ms/1k @1k rps',
    'proxy RSS MB',
    'errors',
    'gRPC via proxy',
  ];
  const fixed = (value: number | null, digits: number): string =>
    value === null ? '-' : value.toFixed(digits);
  const rows = targets.map((t) => {
    const direct = targets.find(
      (d) => d.variant.protocol === t.variant.protocol && d.variant.library === 'direct',
    );
    const ratio = (pick: (sample: Sample) => number): string => {
      const base = direct ? medianOf(direct, pick) : null;
      const value = medianOf(t, pick);
      return base === null || value === null ? '' : (value / base).toFixed(2);
    };
    const rps = t.samples.map((sample) => sample.maxRps);
    return [
      t.variant.protocol === 'h1' ? 'HTTP/1.1' : 'h2c',
      t.variant.label,
      `${median(rps).toFixed(0)} (${Math.min(...rps).toFixed(0)}-${Math.max(...rps).toFixed(0)})`,
      ratio((sample) => sample.maxRps),
      fixed(
        medianOf(t, (sample) => sample.p50Ms),
        2,
      ),
      fixed(
        medianOf(t, (sample) => sample.p99Ms),
        2,
      ),
      ratio((sample) => sample.p50Ms),
      ratio((sample) => sample.p99Ms),
      fixed(
        medianOf(t, (sample) => sample.proxyCpuMsPer1kAtRate),
        0,
      ),
      fixed(
        medianOf(t, (sample) => sample.proxyCpuMsPer1kAtMax),
        0,
      ),
      fixed(
        medianOf(t, (sample) => sample.upstreamCpuMsPer1kAtRate),
        0,
      ),
      fixed(t.proxyRssMb, 0),
      String(t.samples.reduce((sum, sample) => sum + sample.errors, 0)),
      t.grpcProbe,
    ];
  });
  const lines = [header, header.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`);
  return lines.join('\n');
}

function optionValue(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
}

async function orchestrate(args: string[]): Promise<number> {
  const quick = args.includes('--quick');
  const jsonFile = optionValue(args, '--json');
  const only = optionValue(args, '--only');
  const rounds = Number(optionValue(args, '--rounds') ?? (quick ? 1 : 3));
  if (
    !Number.isInteger(rounds) ||
    rounds < 1 ||
    rounds > 10 ||
    (only !== undefined && only !== 'h1' && only !== 'h2')
  ) {
    process.stderr.write(
      'usage: proxy-libraries.ts [--quick] [--rounds 1-10] [--only h1|h2] [--json FILE]\n',
    );
    return 2;
  }
  const scale = quick ? 0.5 : 1;
  const durations: Durations = { warmupMs: 1000 * scale, maxMs: 1500 * scale, rateMs: 4000 * scale, rounds };
  const require = createRequire(import.meta.url);
  const versionOf = (name: string): string =>
    (require(`${name}/package.json`) as { version: string }).version;

  // Bounded no matter what: a stuck phase cannot keep load running.
  const watchdog = setTimeout(() => {
    process.stderr.write('bench: watchdog expired, stopping\n');
    for (const child of children) child.kill('SIGKILL');
    process.exit(1);
  }, 600_000);
  watchdog.unref();

  const loadAvg = (): string =>
    os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ');
  process.stdout.write(
    `node ${process.version}, undici ${versionOf('undici')}, http2-proxy ${versionOf('http2-proxy')}, ` +
      `${os.cpus().length} CPUs, load average ${loadAvg()}\n` +
      `${BODY_BYTES} B responses; ${rounds} interleaved round(s) per variant, each: closed loop ` +
      `${durations.maxMs / 1000}s (h1 ${H1_CONNECTIONS} connections, h2 ${H2_SESSIONS} sessions x ` +
      `${H2_STREAMS_PER_SESSION} streams), then open loop ${FIXED_RATE} rps for ${durations.rateMs / 1000}s\n`,
  );
  const upstream = await startRole(['--role=upstream']);
  const loadgen = await startRole(['--role=loadgen']);
  const targets: Target[] = [];
  try {
    for (const variant of VARIANTS.filter((v) => only === undefined || v.protocol === only)) {
      const proxy =
        variant.library === 'direct'
          ? null
          : await startRole([
              '--role=proxy',
              variant.library,
              variant.protocol,
              String(upstream.ready.port),
              String(upstream.ready.grpcPort),
            ]);
      const port = proxy ? proxy.ready.port : upstream.ready.port;
      const grpcPort = proxy ? proxy.ready.port : upstream.ready.grpcPort!;
      targets.push({
        variant,
        port,
        proxy: proxy?.child ?? null,
        grpcProbe: variant.protocol === 'h2' ? await probeGrpc(grpcPort) : 'n/a (HTTP/1.1)',
        samples: [],
        proxyRssMb: null,
      });
    }
    for (const target of targets) await runLoadOn(loadgen.child, target, 'max', durations.warmupMs);
    // Rounds visit the variants in rotated order, so a burst of background load hits different variants.
    for (let round = 0; round < rounds; round++) {
      const shift = Math.floor((round * targets.length) / rounds);
      const order = [...targets.slice(shift), ...targets.slice(0, shift)];
      for (const target of order) {
        target.samples.push(await sampleOnce(target, upstream.child, loadgen.child, durations));
      }
      process.stdout.write(`  round ${round + 1}/${rounds} done (load average ${loadAvg()})\n`);
    }
  } finally {
    for (const child of children) child.kill();
    clearTimeout(watchdog);
  }
  process.stdout.write(`\n${formatTable(targets)}\n`);
  process.stdout.write(
    '\nMedians over the rounds. x direct: ratio to the direct row of the same protocol. CPU: user+system ' +
      'time of the process per 1,000 requests (upstream = the echo server, for scale). errors: non-200, ' +
      'short body or reset. gRPC: one unary call through the proxy to a @grpc/grpc-js server.\n',
  );
  if (jsonFile !== undefined) {
    const dump = targets.map(({ variant, grpcProbe, samples, proxyRssMb }) => ({
      variant,
      grpcProbe,
      proxyRssMb,
      samples,
    }));
    writeFileSync(jsonFile, JSON.stringify(dump, null, 2));
  }
  return targets.some((t) => t.samples.some((sample) => sample.errors > 0)) ? 1 : 0;
}

// ---------------------------------------------------------------- entry

const [roleArg, ...roleArgs] = process.argv.slice(2);
if (roleArg === '--role=upstream') {
  await runUpstream();
} else if (roleArg === '--role=loadgen') {
  runLoadgen();
} else if (roleArg === '--role=proxy') {
  const [library, protocol, echoPort, grpcPort] = roleArgs;
  await runProxy(library as Library, protocol as Protocol, Number(echoPort), Number(grpcPort));
} else {
  process.exitCode = await orchestrate(process.argv.slice(2));
}
