// Sends encoded spans to an OTLP/HTTP endpoint: one POST per batch on a keep-alive connection, retried with
// backoff on 429/502/503/504 and network errors until the export's deadline; the outcome goes back to the
// pipeline. A collector that is slow or down costs spans, never a request.
import http from 'node:http';
import https from 'node:https';
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
  readonly #agent: http.Agent;
  readonly #pending = new Set<Promise<void>>();
  #closed = false;

  constructor(o: OtlpHttpOptions) {
    this.#url = new URL(o.url);
    this.#timeoutMs = o.timeoutMs;
    this.#backoff = o.backoffMs ?? defaultBackoff;
    const secure = this.#url.protocol === 'https:';
    this.#agent = new (secure ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: 4 });
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
    return new Promise((resolve) => {
      const u = this.#url;
      const req = (u.protocol === 'https:' ? https : http).request(
        {
          protocol: u.protocol,
          hostname: u.hostname.replace(/^\[|\]$/g, ''),
          port: u.port || (u.protocol === 'https:' ? 443 : 80),
          path: u.pathname + u.search,
          method: 'POST',
          agent: this.#agent,
          headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode));
          res.on('error', () => resolve(undefined));
        },
      );
      const timer = setTimeout(() => req.destroy(new Error('export timed out')), timeoutMs);
      timer.unref();
      req.on('error', () => resolve(undefined));
      req.on('close', () => clearTimeout(timer));
      req.end(body);
    });
  }

  async shutdown(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#pending);
    this.#agent.destroy();
  }
}
