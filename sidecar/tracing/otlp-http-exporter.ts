// Sends encoded spans to an OTLP/HTTP endpoint: one POST per batch (fetch keeps the connection 4 s), retried with
// backoff on 429/502/503/504 and network errors until the export's deadline; the outcome goes back to the
// pipeline. A collector that is slow or down costs spans, never a request.
// The POST goes through Node's built-in fetch, whose bundled undici is code of its own: sent through the
// proxy's undici (its HTTP/1.1 upstream client), the export's different Pool, Client and request shapes
// turned that client's inline caches polymorphic for every upstream request, ~3 points of CPU at 1 %
// sampling (ADR 0017).
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
    return fetch(this.#url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body,
      signal: AbortSignal.timeout(Math.ceil(timeoutMs)),
    }).then(
      (res) =>
        res.arrayBuffer().then(
          () => res.status,
          () => undefined,
        ),
      () => undefined,
    );
  }

  async shutdown(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#pending);
  }
}
