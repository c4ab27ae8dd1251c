// The OTLP/HTTP export's own thread (started by OtlpHttpExporter at its first export): each message is
// one encoded batch, POSTed on a keep-alive connection and retried with backoff on 429/502/503/504 and
// network errors within the export's time budget; the outcome goes back as { id, ok, failure }. Its HTTP
// client, sockets and streams live in this isolate, so the proxy's own request path never shares their
// code (ADR 0019).
import http from 'node:http';
import https from 'node:https';
import { parentPort, workerData } from 'node:worker_threads';
import { errorText } from '../../lib/error-text.ts';
import { sendWithRetries, type PostResult } from './otlp-export-retries.ts';
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
const url = new URL(data.url);
// Exports come every batch delay (5 s by default): the socket stays open longer than that, so each export
// does not pay a new connection. A collector's own idle limit still wins when shorter.
// An https endpoint is verified against the system's CAs, as a collector's certificate would be anywhere.
const client = url.protocol === 'https:' ? https : http;
const agent = new client.Agent({ keepAlive: true, maxSockets: 4, timeout: 30_000 });
let closed = false;

/** One POST: its status, or the network error (its code) or the time running out. */
function post(body: Uint8Array, timeoutMs: number): Promise<PostResult> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: PostResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const req = client.request(url, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length },
    });
    const timer = setTimeout(() => {
      req.destroy(new Error('export timed out'));
      finish({ timedOut: true });
    }, timeoutMs);
    const failed = (error: Error & { code?: unknown }): void =>
      finish({ error: typeof error.code === 'string' ? error.code : error.message });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => finish({ status: res.statusCode ?? 0 }));
      res.on('error', failed);
    });
    req.on('error', failed);
    req.end(body);
  });
}

port.on('message', (m: ExportWorkerRequest) => {
  if ('close' in m) {
    closed = true;
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
