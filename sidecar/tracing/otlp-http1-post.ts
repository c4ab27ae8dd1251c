// The export thread's HTTP client (otlp-export-worker.ts): a POST written by hand on a kept-alive
// node:net (or node:tls) socket, and only the response's status line and framing read. One export every
// batch delay runs its client cold each time; node:http's agent, outgoing message and parser were most of
// the thread's CPU per export (ADR 0022).
import net from 'node:net';
import tls from 'node:tls';
import type { PostResult } from './otlp-export-retries.ts';

interface Connection {
  readonly socket: net.Socket;
  /** The response read so far. */
  received: Buffer;
  /** The POST waiting on this connection, if any. */
  done: ((result: PostResult, reuse: boolean) => void) | undefined;
}

/** What a response's head says: its status, and whether the connection may carry the next request. */
export interface ResponseHead {
  readonly status: number;
  readonly reuse: boolean;
}

/** More than this read without a whole response head is not a collector's answer. */
const MAX_HEAD_BYTES = 64 * 1024;

const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})/;

/**
 * The final response at the start of `buf`, or undefined until its head has arrived (1xx heads are passed
 * over). The connection is reused only when the whole body is already in `buf` and nothing follows it: a
 * response still arriving is left to its socket's end (the status is all the export needs).
 */
export function readResponseHead(buf: Buffer): ResponseHead | undefined {
  for (let start = 0; ;) {
    const headEnd = buf.indexOf('\r\n\r\n', start, 'latin1');
    if (headEnd < 0) return undefined;
    const lines = buf.toString('latin1', start, headEnd).split('\r\n');
    const m = STATUS_LINE.exec(lines[0]!);
    if (!m) throw new Error('malformed response');
    const status = Number(m[2]);
    const bodyStart = headEnd + 4;
    if (status < 200) {
      start = bodyStart;
      continue;
    }
    let length: number | undefined;
    let chunked = false;
    let close = m[1] === '0';
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line
        .slice(colon + 1)
        .trim()
        .toLowerCase();
      if (name === 'content-length') length = Number(value);
      else if (name === 'connection') close ||= value.split(',').some((v) => v.trim() === 'close');
      else if (name === 'transfer-encoding') {
        chunked = value === 'chunked';
        close ||= !chunked; // another coding: the body runs until the server closes
      }
    }
    const end =
      status === 204 || status === 304
        ? bodyStart
        : chunked
          ? chunkedEnd(buf, bodyStart)
          : length !== undefined && Number.isSafeInteger(length) && length >= 0
            ? bodyStart + length
            : -1; // no framing: the body runs until the server closes
    return { status, reuse: !close && end === buf.length };
  }
}

/** Where a chunked body starting at `from` ends in `buf`, or -1 when it has not all arrived. */
function chunkedEnd(buf: Buffer, from: number): number {
  for (let at = from; ;) {
    const lineEnd = buf.indexOf('\r\n', at, 'latin1');
    if (lineEnd < 0) return -1;
    const size = parseInt(buf.toString('latin1', at, lineEnd), 16);
    if (!(size >= 0)) throw new Error('malformed chunk');
    if (size === 0) {
      const trailersEnd = buf.indexOf('\r\n', lineEnd + 2, 'latin1') === lineEnd + 2 ? lineEnd + 4 : -1;
      if (trailersEnd >= 0) return trailersEnd;
      const end = buf.indexOf('\r\n\r\n', lineEnd + 2, 'latin1');
      return end < 0 ? -1 : end + 4;
    }
    at = lineEnd + 2 + size + 2;
    if (at > buf.length) return -1;
  }
}

/** POSTs protobuf bodies to one OTLP/HTTP endpoint, one request at a time per connection. */
export class Http1Poster {
  readonly #url: URL;
  readonly #head: string;
  readonly #idleMs: number;
  readonly #idle: Connection[] = [];
  readonly #maxIdle: number;

  /** `idleMs`: how long an unused connection stays open (exports come every batch delay, 5 s by default). */
  constructor(url: URL, idleMs = 30_000, maxIdle = 4) {
    this.#url = url;
    this.#idleMs = idleMs;
    this.#maxIdle = maxIdle;
    this.#head =
      `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n` +
      'Content-Type: application/x-protobuf\r\nContent-Length: ';
  }

  /** One POST: its status, or the network error (its code) or the time running out. */
  post(body: Uint8Array, timeoutMs: number): Promise<PostResult> {
    return new Promise((resolve) => {
      const conn = this.#idle.pop() ?? this.#connect();
      conn.socket.setTimeout(0);
      const timer = setTimeout(() => conn.done?.({ timedOut: true }, false), timeoutMs);
      conn.received = Buffer.alloc(0);
      conn.done = (result, reuse) => {
        conn.done = undefined;
        clearTimeout(timer);
        if (reuse && this.#idle.length < this.#maxIdle) {
          conn.socket.setTimeout(this.#idleMs);
          this.#idle.push(conn);
        } else conn.socket.destroy();
        resolve(result);
      };
      conn.socket.cork();
      conn.socket.write(`${this.#head}${body.length}\r\n\r\n`, 'latin1');
      conn.socket.write(body);
      conn.socket.uncork();
    });
  }

  #connect(): Connection {
    const host = this.#url.hostname.replace(/^\[(.*)\]$/, '$1');
    const secure = this.#url.protocol === 'https:';
    const port = Number(this.#url.port || (secure ? 443 : 80));
    // An https endpoint is verified against Node's CAs, as a collector's certificate would be anywhere.
    const socket = secure
      ? tls.connect({ host, port, ...(net.isIP(host) ? {} : { servername: host }) })
      : net.connect({ host, port });
    socket.setNoDelay(true);
    const conn: Connection = { socket, received: Buffer.alloc(0), done: undefined };
    const gone = (): void => {
      const at = this.#idle.indexOf(conn);
      if (at >= 0) this.#idle.splice(at, 1);
    };
    socket.on('data', (chunk: Buffer) => {
      if (!conn.done) return socket.destroy(); // nothing was asked
      conn.received = conn.received.length ? Buffer.concat([conn.received, chunk]) : chunk;
      let head;
      try {
        head = readResponseHead(conn.received);
      } catch (error) {
        return conn.done({ error: (error as Error).message }, false);
      }
      if (head) conn.done({ status: head.status }, head.reuse);
      else if (conn.received.length > MAX_HEAD_BYTES) conn.done({ error: 'response head too large' }, false);
    });
    socket.on('timeout', () => socket.destroy()); // idle too long
    socket.on('error', (error: Error & { code?: unknown }) => {
      gone();
      conn.done?.({ error: typeof error.code === 'string' ? error.code : error.message }, false);
    });
    socket.on('close', () => {
      gone();
      conn.done?.({ error: 'ECONNRESET' }, false); // closed before its answer
    });
    return conn;
  }

  /** Closes the idle connections. */
  close(): void {
    for (const conn of this.#idle.splice(0)) conn.socket.destroy();
  }
}
