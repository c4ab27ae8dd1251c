// Sends encoded spans to an OTLP/HTTP endpoint: one POST per batch on a keep-alive connection, retried with
// backoff on 429/502/503/504 and network errors until the export's deadline; the outcome goes back to the
// pipeline. A collector that is slow or down costs spans, never a request.
// The POST goes through undici, the client the proxy already runs for its HTTP/1.1 upstreams: at one export
// every few seconds node:http's client code ran cold each time (~2 ms an export in a CPU profile of a
// proxy at 1 % sampling), undici's is warm from the proxy's own traffic (ADR 0017).
import type { Dispatcher, Pool } from 'undici';
import { loadUndici } from '../load-undici.ts';
import { encodeTraceRequest } from './otlp-encode.ts';
import type { SpanExporter } from './span-pipeline.ts';
import type { SpanRecord } from './span-record.ts';

export interface OtlpHttpOptions {
  readonly url: string;
  /** One export, retries included. */
  readonly timeoutMs: number;
  /** Tests: the delay before retry n (1, 2, …); default exponential from 250 ms with jitter. */
  readonly backoffMs?: (attempt: number) => number;
}

const RETRYABLE = new Set([429, 502, 503, 504]);

const defaultBackoff = (attempt: number): number =>
  Math.min(250 * 2 ** (attempt - 1), 4000) * (0.5 + Math.random() / 2);

export class OtlpHttpExporter implements SpanExporter {
  readonly #url: URL;
  readonly #timeoutMs: number;
  readonly #backoff: (attempt: number) => number;
  #pool: Pool | undefined;
  readonly #pending = new Set<Promise<void>>();
  #closed = false;

  constructor(o: OtlpHttpOptions) {
    this.#url = new URL(o.url);
    this.#timeoutMs = o.timeoutMs;
    this.#backoff = o.backoffMs ?? defaultBackoff;
  }

  export(spans: readonly SpanRecord[]): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    let body: Buffer;
    try {
      body = encodeTraceRequest(spans);
    } catch {
      return Promise.resolve(false);
    }
    const done = this.#send(body).catch(() => false);
    const settled = done.then(() => undefined);
    this.#pending.add(settled);
    void settled.finally(() => this.#pending.delete(settled));
    return done;
  }

  async #send(body: Buffer): Promise<boolean> {
    const deadline = performance.now() + this.#timeoutMs;
    for (let attempt = 1; ; attempt++) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      const status = await this.#post(body, left);
      if (status !== undefined && status >= 200 && status < 300) return true;
      if (status !== undefined && !RETRYABLE.has(status)) return false;
      const wait = this.#backoff(attempt);
      if (this.#closed || performance.now() + wait >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, wait).unref());
    }
  }

  /** One POST: its status, or undefined for a network error or the time running out. */
  #post(body: Buffer, timeoutMs: number): Promise<number | undefined> {
    this.#pool ??= new (loadUndici().Pool)(this.#url.origin, {
      connections: 4,
      connect: { timeout: this.#timeoutMs },
      // Exports come every batch delay (5 s by default): undici's 4 s idle default closed the connection
      // before each one, so every export paid a new connection. A collector's own idle limit (a Keep-Alive
      // hint) still wins when shorter.
      keepAliveTimeout: 30_000,
    });
    const pool = this.#pool;
    return new Promise((resolve) => {
      let controller: Dispatcher.DispatchController | undefined;
      let status: number | undefined;
      let timedOut = false;
      const finish = (result: number | undefined): void => {
        clearTimeout(timer);
        resolve(result);
      };
      const timer = setTimeout(() => {
        timedOut = true;
        controller?.abort(new Error('export timed out'));
        resolve(undefined);
      }, timeoutMs);
      timer.unref();
      pool.dispatch(
        {
          path: this.#url.pathname + this.#url.search,
          method: 'POST',
          headers: { 'content-type': 'application/x-protobuf', 'content-length': String(body.length) },
          body,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        },
        {
          onRequestStart(c) {
            controller = c;
            // Its time ran out while it waited for a connection: dropped before it is sent.
            if (timedOut) throw new Error('export timed out');
          },
          onResponseStart(_c, statusCode) {
            status = statusCode;
          },
          onResponseData() {},
          onResponseEnd() {
            finish(status);
          },
          onResponseError() {
            finish(undefined);
          },
        },
      );
    });
  }

  async shutdown(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#pending);
    await this.#pool?.destroy();
  }
}
