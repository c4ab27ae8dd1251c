// The OTLP/HTTP export's own thread (started by OtlpHttpExporter at its first export): each message is
// one encoded batch, POSTed on a keep-alive connection and retried with backoff on 429/502/503/504 and
// network errors within the export's time budget; the outcome goes back as { id, ok, failure }. Its HTTP
// client (otlp-http1-post.ts) and sockets live in this isolate, so the proxy's own request path never shares their
// code (ADR 0019).
import { parentPort, workerData } from 'node:worker_threads';
import { errorText } from '../../lib/error-text.ts';
import { Http1Poster } from './otlp-http1-post.ts';
import { sendWithRetries } from './otlp-export-retries.ts';
import type { ExportFailure } from './span-pipeline.ts';

export interface ExportWorkerData {
  readonly url: string;
  /** The delay before the first retry; it doubles per retry up to 16 times this, with jitter. */
  readonly backoffBaseMs: number;
}

/**
 * A batch to send (its ArrayBuffer transferred, not copied) within `budgetMs` of its receipt (retries
 * included), or the exporter shutting down. Only a duration crosses threads, never a point in time
 * (ADR 0019, "The flake and its cause").
 */
export type ExportWorkerRequest =
  | { readonly id: number; readonly body: ArrayBuffer; readonly length: number; readonly budgetMs: number }
  | { readonly close: true };

export type ExportWorkerResult =
  | { readonly id: number; readonly ok: true }
  | { readonly id: number; readonly ok: false; readonly failure: ExportFailure };

const port = parentPort;
if (!port) throw new Error('otlp-export-worker runs as a worker thread');
const data = workerData as ExportWorkerData;
// Exports come every batch delay (5 s by default): a connection stays open 30 s, so each export does not
// pay a new one. A collector's own idle limit still wins when shorter.
const poster = new Http1Poster(new URL(data.url));
const post = poster.post.bind(poster);
let closed = false;

port.on('message', (m: ExportWorkerRequest) => {
  if ('close' in m) {
    closed = true;
    poster.close();
    return;
  }
  const answer = (failure: ExportFailure | undefined): void =>
    port.postMessage(
      (failure ? { id: m.id, ok: false, failure } : { id: m.id, ok: true }) satisfies ExportWorkerResult,
    );
  sendWithRetries(new Uint8Array(m.body, 0, m.length), m.budgetMs, {
    post,
    now: () => performance.now(),
    closed: () => closed,
    backoffBaseMs: data.backoffBaseMs,
  }).then(answer, (error: unknown) => answer({ reason: 'internal_error', error: errorText(error) }));
});
