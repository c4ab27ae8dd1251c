// Sends encoded spans to an OTLP/HTTP endpoint from the proxy's own thread, asynchronously: each batch is
// encoded, POSTed on a kept-alive connection (otlp-http1-post.ts) and retried with backoff on
// 429/502/503/504 and network errors within the export's time budget (otlp-export-retries.ts). A collector
// that is slow or down costs spans, never a request. No worker thread: the client is hand-written, so it
// shares no node:http code with the proxy's request path, and an idle thread cost more than the export
// does here (ADR 0024).
import { errorText } from '../../lib/error-text.ts';
import { encodeTraceRequest } from './otlp-encode.ts';
import { Http1Poster } from './otlp-http1-post.ts';
import { sendWithRetries } from './otlp-export-retries.ts';
import type { ExportFailure, SpanExporter } from './span-pipeline.ts';
import type { SpanRecord } from './span-record.ts';

export interface OtlpHttpOptions {
  readonly url: string;
  /** One export, retries included. */
  readonly timeoutMs: number;
  /** The delay before the first retry (doubling per retry, with jitter); default 250 ms. */
  readonly backoffBaseMs?: number;
}

export class OtlpHttpExporter implements SpanExporter {
  readonly #poster: Http1Poster;
  readonly #timeoutMs: number;
  readonly #backoffBaseMs: number;
  readonly #pending = new Set<Promise<ExportFailure | undefined>>();
  #closed = false;

  constructor(o: OtlpHttpOptions) {
    // An invalid endpoint fails here, when the settings are applied. Exports come every batch delay (5 s by
    // default): a connection stays open 30 s, so each export does not pay a new one.
    this.#poster = new Http1Poster(new URL(o.url));
    this.#timeoutMs = o.timeoutMs;
    this.#backoffBaseMs = o.backoffBaseMs ?? 250;
  }

  export(spans: readonly SpanRecord[]): Promise<ExportFailure | undefined> {
    if (this.#closed) return Promise.resolve({ reason: 'shut_down' });
    let body: Buffer;
    try {
      body = encodeTraceRequest(spans);
    } catch (error) {
      return Promise.resolve({ reason: 'encode_failed', error: errorText(error) });
    }
    const done = sendWithRetries(body, this.#timeoutMs, {
      post: (b, timeoutMs) => this.#poster.post(b, timeoutMs),
      now: () => performance.now(),
      closed: () => this.#closed,
      backoffBaseMs: this.#backoffBaseMs,
    }).catch((error: unknown): ExportFailure => ({ reason: 'internal_error', error: errorText(error) }));
    this.#pending.add(done);
    void done.finally(() => this.#pending.delete(done));
    return done;
  }

  /** Waits for the exports under way (no new retry starts), then closes the idle connections. */
  async shutdown(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#pending);
    this.#poster.close();
  }
}
