// Sluice's own HTTP/1.1 upstream client (ADR 0024): a pool of keep-alive connections per endpoint, one
// request per connection at a time, responses parsed by http1-response-parser.ts. It replaces undici's Pool,
// doing only what the forwarder needs.
import type net from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { HeaderMap } from '../mesh-model/header-edits.ts';
import { realClock, type Clock } from '../lib/clock.ts';
import { isFieldValue, isToken, ResponseParser, type ResponseEvents } from './http1-response-parser.ts';

export interface H1Request {
  readonly method: string;
  readonly path: string;
  /** `host` added when missing (the endpoint's address); `expect` is not sent (see sendH1). */
  readonly headers: HeaderMap;
  /** A stream is sent as it is read, with back-pressure: chunked unless the headers give its length. */
  readonly body: Buffer | Readable | null;
}

/** One request's control: pause and resume its response, or abort it (queued: dropped; sent: connection closed). */
export interface H1Controller {
  pause(): void;
  resume(): void;
  abort(err: Error): void;
}

/** A request's owner: told when it goes out and how its response comes, or the error that ends it. */
export interface H1Handler {
  /** Written now on a connection; `reused`: that connection carried a request before. */
  onRequestStart(c: H1Controller, reused: boolean): void;
  onResponseStart(c: H1Controller, status: number, headers: IncomingHttpHeaders): void;
  onResponseData(c: H1Controller, chunk: Buffer): void;
  onResponseEnd(c: H1Controller, trailers: IncomingHttpHeaders | undefined): void;
  /** Once at most, and never after onResponseEnd. */
  onResponseError(c: H1Controller, err: Error): void;
}

/** Opens a connection to the endpoint; calls back once it is ready (connected, TLS done) or failed. */
export type Connector = (callback: (err: Error | null, socket: net.Socket | null) => void) => void;

export interface H1PoolOptions {
  readonly connect: Connector;
  /** `host` for requests without one. */
  readonly host: string;
  /** Connections at most (0: no cap); more requests wait in the queue (its bound is the caller's). */
  readonly maxConnections: number;
  /** How long an idle connection is kept without a Keep-Alive hint (ms). */
  readonly keepAliveMs: number;
  /** Kept at most this long whatever the hint (ms). */
  readonly keepAliveMaxMs: number;
  /** How long the upstream may stay silent while a response is awaited or read (ms; 0: no bound). */
  readonly streamIdleMs: number;
  /** Bytes a response head (or trailer section) may take. */
  readonly maxHeadBytes: number;
  /** For the head's deadline (tests pass a manual one). */
  readonly clock?: Clock;
}

/** A Keep-Alive hint is taken this much shorter: the upstream's own timer may fire first. */
const KEEP_ALIVE_THRESHOLD_MS = 2_000;

/** Methods that expect a body: sent with `content-length: 0` when they have none (as most clients do). */
const EXPECTS_BODY = new Set(['POST', 'PUT', 'PATCH']);

const resetError = (message: string): Error => Object.assign(new Error(message), { code: 'ECONNRESET' });
const closedError = (): Error => resetError('upstream closed the connection');

/** A request in a pool: queued, then written on a connection. Also its controller. */
class PoolRequest implements H1Controller {
  readonly pool: H1Pool;
  readonly request: H1Request;
  readonly handler: H1Handler;
  conn: Connection | undefined;
  settled = false;

  constructor(pool: H1Pool, request: H1Request, handler: H1Handler) {
    this.pool = pool;
    this.request = request;
    this.handler = handler;
  }

  pause(): void {
    if (this.conn?.current === this) this.conn.pause();
  }

  resume(): void {
    if (this.conn?.current === this) this.conn.resume();
  }

  abort(err: Error): void {
    if (this.settled) return;
    if (this.conn === undefined) {
      this.pool.unqueue(this);
      this.fail(err);
    } else this.conn.destroy(err);
  }

  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.handler.onResponseError(this, err);
  }
}

/** One upstream connection: requests one at a time, its responses through one parser. */
class Connection implements ResponseEvents {
  readonly pool: H1Pool;
  readonly parser: ResponseParser;
  socket: net.Socket | undefined;
  current: PoolRequest | undefined;
  requests = 0;
  closed = false;
  #error: Error | undefined;
  /** A request body still being written (a stream): its source. */
  #body: Readable | undefined;
  #chunked = false;
  /** A response ended in the read being parsed; whether the connection may carry the next request. */
  #ended = false;
  #reusable = false;
  /** When the current response's head (with any interim heads) must be complete: silence alone resets. */
  #headBy = 0;

  constructor(pool: H1Pool) {
    this.pool = pool;
    this.parser = new ResponseParser(pool.options.maxHeadBytes);
  }

  attach(socket: net.Socket): void {
    this.socket = socket;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
    socket.on('timeout', this.#onTimeout);
    socket.on('drain', this.#onDrain);
  }

  run(r: PoolRequest): void {
    const socket = this.socket!;
    this.current = r;
    r.conn = this;
    const { method, path, headers, body } = r.request;
    let head: string;
    try {
      head = requestHead(method, path, headers, body, this.pool.options.host);
    } catch (err) {
      this.current = undefined;
      r.conn = undefined;
      this.pool.release(this);
      return r.fail(err as Error);
    }
    this.parser.start(method, this);
    r.handler.onRequestStart(r, this.requests++ > 0);
    if (r.settled || this.current !== r) return;
    socket.ref();
    socket.setTimeout(this.pool.options.streamIdleMs);
    this.#headBy = this.pool.clock.now() + this.pool.options.streamIdleMs;
    if (body === null) socket.write(head, 'latin1');
    else if (Buffer.isBuffer(body)) {
      socket.cork();
      socket.write(head, 'latin1');
      socket.write(body);
      socket.uncork();
    } else {
      socket.write(head, 'latin1');
      this.#chunked = headers['content-length'] === undefined;
      this.#body = body;
      body.on('data', this.#onBodyData);
      body.once('end', this.#onBodyEnd);
    }
  }

  readonly #onBodyData = (chunk: Buffer): void => {
    const socket = this.socket!;
    let ok: boolean;
    if (this.#chunked) {
      // An empty chunk would be the body's last: what followed it would reach the upstream as a request.
      if (chunk.length === 0) return;
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      ok = socket.write('\r\n', 'latin1');
      socket.uncork();
    } else ok = socket.write(chunk);
    if (!ok) this.#body!.pause();
  };

  readonly #onBodyEnd = (): void => {
    if (this.#chunked) this.socket!.write('0\r\n\r\n', 'latin1');
    this.#detachBody(false);
  };

  readonly #onDrain = (): void => {
    this.#body?.resume();
  };

  /**
   * Stops sending the request body. `dump`: the response came first, the rest is read and dropped so the
   * downstream connection can go on; else (a failure) it is paused, unread, for a retry to send if it may.
   */
  #detachBody(dump: boolean): void {
    const body = this.#body;
    if (!body) return;
    this.#body = undefined;
    body.off('data', this.#onBodyData);
    body.off('end', this.#onBodyEnd);
    if (dump) body.resume();
    else body.pause();
  }

  pause(): void {
    this.socket!.pause();
    this.socket!.setTimeout(0);
  }

  resume(): void {
    this.socket!.resume();
    this.socket!.setTimeout(this.pool.options.streamIdleMs);
  }

  head(status: number, headers: IncomingHttpHeaders): void {
    const r = this.current;
    if (r && !r.settled) r.handler.onResponseStart(r, status, headers);
  }

  body(chunk: Buffer): void {
    const r = this.current;
    if (r && !r.settled) r.handler.onResponseData(r, chunk);
  }

  end(trailers: IncomingHttpHeaders | undefined): void {
    const r = this.current;
    if (!r) return;
    this.current = undefined;
    // The response came before the request's body was all written (read or still buffered): the upstream
    // may take the rest for a request, so the connection cannot be reused.
    this.#reusable = this.parser.keepAlive && this.#body === undefined && this.socket!.writableLength === 0;
    this.#ended = true;
    this.#detachBody(true);
    if (!r.settled) {
      r.settled = true;
      r.handler.onResponseEnd(r, trailers);
    }
  }

  /** After the read that ended a response was parsed in full (nothing followed it): reused or closed. */
  #afterEnd(): void {
    this.#ended = false;
    if (this.closed) return;
    if (!this.#reusable) return this.destroy(undefined);
    const socket = this.socket!;
    const hint = this.parser.keepAliveHintMs;
    const keep =
      hint === undefined
        ? this.pool.options.keepAliveMs
        : Math.min(hint - KEEP_ALIVE_THRESHOLD_MS, this.pool.options.keepAliveMaxMs);
    if (keep <= 0) return this.destroy(undefined);
    // Paused by a slow reader in the read that ended the response: its resume() no longer reaches us.
    if (socket.isPaused()) socket.resume();
    socket.setTimeout(keep);
    socket.unref();
    this.pool.release(this);
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.current === undefined) return this.destroy(undefined); // bytes on an idle connection
    try {
      this.parser.execute(chunk);
    } catch (err) {
      return this.destroy(err as Error);
    }
    if (this.#ended) this.#afterEnd();
    // A head trickled a byte per read (or endless interim heads) is never silent: it gets streamIdleMs in all.
    else if (
      !this.parser.headDone &&
      this.pool.options.streamIdleMs > 0 &&
      this.pool.clock.now() > this.#headBy
    )
      this.#timedOut(`response head not complete in ${this.pool.options.streamIdleMs} ms`);
  };

  readonly #onEnd = (): void => {
    if (this.current !== undefined) {
      try {
        this.parser.finish();
      } catch {
        return this.destroy(closedError());
      }
    }
    this.destroy(undefined);
  };

  readonly #onError = (err: Error): void => {
    this.#error ??= err;
  };

  readonly #onClose = (): void => {
    this.destroy(this.#error ?? closedError());
  };

  readonly #onTimeout = (): void => {
    if (this.current === undefined) return this.destroy(undefined);
    this.#timedOut(`upstream silent for ${this.pool.options.streamIdleMs} ms`);
  };

  #timedOut(message: string): void {
    const code = this.parser.headDone ? 'ERR_UPSTREAM_BODY_TIMEOUT' : 'ERR_UPSTREAM_HEADERS_TIMEOUT';
    this.destroy(Object.assign(new Error(message), { code }));
  }

  /** Closes the connection; a request on it fails with `err` (a plain close if none). */
  destroy(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.#detachBody(false);
    this.socket?.destroy();
    this.pool.forget(this);
    const r = this.current;
    this.current = undefined;
    r?.fail(err ?? closedError());
  }
}

/** The head of a request, ready to write (latin1); throws on a header or target that would not frame. */
function requestHead(
  method: string,
  path: string,
  headers: HeaderMap,
  body: Buffer | Readable | null,
  host: string,
): string {
  if (!isToken(method)) throw new TypeError(`invalid request method`);
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c <= 32 || c === 127 || c > 255) throw new TypeError('invalid request target');
  }
  let head = `${method} ${path} HTTP/1.1\r\n`;
  let hasHost = false;
  let hasLength = false;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || name === 'expect') continue;
    if (!isToken(name)) throw new TypeError(`invalid header name`);
    if (name === 'host') hasHost = true;
    else if (name === 'content-length') hasLength = true;
    if (typeof value === 'string') {
      if (!isFieldValue(value)) throw new TypeError(`invalid value of header ${name}`);
      head += `${name}: ${value}\r\n`;
    } else
      for (const v of value) {
        if (!isFieldValue(v)) throw new TypeError(`invalid value of header ${name}`);
        head += `${name}: ${v}\r\n`;
      }
  }
  if (!hasHost) head += `host: ${host}\r\n`;
  if (!hasLength) {
    if (body === null) {
      if (EXPECTS_BODY.has(method)) head += 'content-length: 0\r\n';
    } else if (Buffer.isBuffer(body)) head += `content-length: ${body.length}\r\n`;
    else head += 'transfer-encoding: chunked\r\n';
  }
  return `${head}\r\n`;
}

/** An endpoint's connections and the requests waiting for one. */
export class H1Pool {
  readonly options: H1PoolOptions;
  readonly clock: Clock;
  readonly #queue: PoolRequest[] = [];
  /** Idle connections, the most recently used last (reused first). */
  readonly #idle: Connection[] = [];
  readonly #all = new Set<Connection>();
  #connecting = 0;
  #connected = 0;
  #closing = false;
  #destroyed = false;

  constructor(options: H1PoolOptions) {
    this.options = options;
    this.clock = options.clock ?? realClock;
  }

  /** Connections up now (not counting those still connecting). */
  get connected(): number {
    return this.#connected;
  }

  /** Sends `request` on an idle connection, a new one, or when one is free; returns its controller. */
  request(request: H1Request, handler: H1Handler): H1Controller {
    const r = new PoolRequest(this, request, handler);
    if (this.#destroyed) {
      r.fail(resetError('upstream pool closed'));
      return r;
    }
    const idle = this.#idle.pop();
    if (idle) idle.run(r);
    else {
      this.#queue.push(r);
      this.#grow();
    }
    return r;
  }

  /** Opens a connection when requests wait for more than those coming up, under the cap. */
  #grow(): void {
    const max = this.options.maxConnections;
    if (this.#queue.length <= this.#connecting) return;
    if (max > 0 && this.#all.size >= max) return;
    const conn = new Connection(this);
    this.#all.add(conn);
    this.#connecting++;
    this.options.connect((err, socket) => {
      this.#connecting--;
      if (err || !socket) {
        this.#all.delete(conn);
        conn.closed = true;
        this.#queue.shift()?.fail(err ?? closedError());
        return this.#grow();
      }
      if (this.#destroyed || conn.closed) return void socket.destroy();
      this.#connected++;
      conn.attach(socket);
      this.release(conn);
    });
  }

  /** A connection free for the next request: it takes the oldest one waiting, else waits itself. */
  release(conn: Connection): void {
    const next = this.#queue.shift();
    if (next) {
      conn.socket!.ref();
      return conn.run(next);
    }
    if (this.#closing) return conn.destroy(undefined);
    this.#idle.push(conn);
  }

  unqueue(r: PoolRequest): void {
    const i = this.#queue.indexOf(r);
    if (i >= 0) this.#queue.splice(i, 1);
  }

  forget(conn: Connection): void {
    if (!this.#all.delete(conn)) return;
    if (conn.socket) this.#connected--;
    const i = this.#idle.indexOf(conn);
    if (i >= 0) this.#idle.splice(i, 1);
    if (!this.#destroyed) this.#grow();
  }

  /** Idle connections close now, busy ones after their request; requests already queued still go. */
  close(): void {
    this.#closing = true;
    for (const conn of this.#idle.splice(0)) conn.destroy(undefined);
  }

  /** Everything closes now: requests queued or in flight fail. */
  destroy(): void {
    this.#destroyed = true;
    const err = resetError('upstream pool closed');
    for (const r of this.#queue.splice(0)) r.fail(err);
    for (const conn of [...this.#all]) conn.destroy(err);
  }
}
