// The OTLP/HTTP export's own thread (started by OtlpHttpExporter at its first export): each message is
// one encoded batch, POSTed on a keep-alive connection and retried with backoff on 429/502/503/504 and
// network errors until the export's deadline; the outcome goes back as { id, ok }. Its HTTP client, sockets
// and streams live in this isolate, so the proxy's own request path never shares their code (ADR 0019).
import http from 'node:http';
import https from 'node:https';
import { parentPort, workerData } from 'node:worker_threads';

export interface ExportWorkerData {
  readonly url: string;
  /** The delay before the first retry; it doubles per retry up to 16 times this, with jitter. */
  readonly backoffBaseMs: number;
}

/**
 * A batch to send (its ArrayBuffer transferred, not copied) by `deadline` (retries included; wall-clock ms
 * from the monotonic clock, `performance.timeOrigin + performance.now()`, which both threads share), or the
 * exporter shutting down.
 */
export type ExportWorkerRequest =
  | { readonly id: number; readonly body: ArrayBuffer; readonly length: number; readonly deadline: number }
  | { readonly close: true };

export interface ExportWorkerResult {
  readonly id: number;
  readonly ok: boolean;
}

const RETRYABLE = new Set([429, 502, 503, 504]);

// A thread's performance.now() counts from its own start; its timeOrigin makes the two threads' agree.
const wallNow = (): number => performance.timeOrigin + performance.now();

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

const backoff = (attempt: number): number =>
  Math.min(data.backoffBaseMs * 2 ** (attempt - 1), data.backoffBaseMs * 16) * (0.5 + Math.random() / 2);

async function send(body: Uint8Array, deadline: number): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    const left = deadline - wallNow();
    if (left <= 0) return false;
    const status = await post(body, left);
    if (status !== undefined && status >= 200 && status < 300) return true;
    if (status !== undefined && !RETRYABLE.has(status)) return false;
    const wait = backoff(attempt);
    if (closed || wallNow() + wait >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** One POST: its status, or undefined for a network error or the time running out. */
function post(body: Uint8Array, timeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (status: number | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(status);
    };
    const req = client.request(url, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length },
    });
    const timer = setTimeout(() => {
      req.destroy(new Error('export timed out'));
      finish(undefined);
    }, timeoutMs);
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => finish(res.statusCode));
      res.on('error', () => finish(undefined));
    });
    req.on('error', () => finish(undefined));
    req.end(body);
  });
}

port.on('message', (m: ExportWorkerRequest) => {
  if ('close' in m) {
    closed = true;
    return;
  }
  void send(new Uint8Array(m.body, 0, m.length), m.deadline).then(
    (ok) => port.postMessage({ id: m.id, ok } satisfies ExportWorkerResult),
    () => port.postMessage({ id: m.id, ok: false } satisfies ExportWorkerResult),
  );
});
