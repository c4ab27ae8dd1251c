// Sends encoded spans to an OTLP/HTTP endpoint from a worker thread of its own (otlp-export-worker.ts): the
// batch is encoded here and its bytes transferred to the worker, which POSTs it, retries and backs off, and
// answers with the outcome. A collector that is slow or down costs spans, never a request.
// Why a thread: with the export's HTTP client in the proxy's isolate, ~95 inline-cache sites of the proxy's
// own request path (undici, node:net, streams) went polymorphic from the first export on, and 1 % sampling
// cost 2–5 points more than encoding the same batches without sending them (ADR 0017, ADR 0019). The
// hand-written POST on the main thread instead still cost 1.6–4.2 points more (ADR 0019, fifth session).
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { errorText } from '../../lib/error-text.ts';
import { encodeBatch } from './otlp-encode.ts';
import type { ExportWorkerData, ExportWorkerRequest, ExportWorkerResult } from './otlp-export-worker.ts';
import type { ExportFailure, SpanExporter } from './span-pipeline.ts';
import type { SpanRecord } from './span-record.ts';

export interface OtlpHttpOptions {
  readonly url: string;
  /** One export, retries included. */
  readonly timeoutMs: number;
  /** The delay before the first retry (doubling per retry, with jitter); default 250 ms. */
  readonly backoffBaseMs?: number;
}

// The sources run as .ts (Node's type stripping), the image as compiled .js: the worker's file is this
// module's sibling in either form.
const WORKER_URL = new URL(
  `./otlp-export-worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`,
  import.meta.url,
);

/** The export thread's options, all but its data (exported for the benchmark's hand-off diagnostics). */
export const EXPORT_THREAD_OPTIONS = {
  name: 'otlp-export',
  // A small young generation: ~2 MB less RSS than the default, for a thread that allocates a little
  // every batch delay. Past the old-generation bound the thread dies and is replaced (its batch lost).
  resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 64 },
  // Not piped to the process's stdout and stderr (the thread writes nothing): piping ran the stream
  // code every socket runs with the thread's stdio streams, making it megamorphic (ADR 0022).
  stdout: true,
  stderr: true,
} as const satisfies WorkerOptions;

interface ExportThread {
  readonly worker: Worker;
  /** Exports sent to it and not answered yet. */
  readonly waiting: Map<number, (failure: ExportFailure | undefined) => void>;
}

/**
 * The proxy gives up on an export this long after its budget: the thread's own answer (with its reason)
 * normally comes first, since the thread's budget runs from its receipt, a little later than from export().
 */
const ANSWER_GRACE_MS = 1000;

export class OtlpHttpExporter implements SpanExporter {
  readonly #data: ExportWorkerData;
  readonly #timeoutMs: number;
  #thread: ExportThread | undefined;
  #nextId = 1;
  readonly #pending = new Set<Promise<ExportFailure | undefined>>();
  #closed = false;

  constructor(o: OtlpHttpOptions) {
    new URL(o.url); // an invalid endpoint fails here, when the settings are applied
    this.#data = { url: o.url, backoffBaseMs: o.backoffBaseMs ?? 250 };
    this.#timeoutMs = o.timeoutMs;
  }

  export(spans: readonly SpanRecord[]): Promise<ExportFailure | undefined> {
    if (this.#closed) return Promise.resolve({ reason: 'shut_down' });
    const body = encodeBatch(spans);
    if (!Buffer.isBuffer(body)) return Promise.resolve(body);
    let thread: ExportThread;
    try {
      thread = this.#thread ??= this.#start();
    } catch (error) {
      // no thread (out of memory, ...): this batch is lost, the next tries again
      return Promise.resolve({ reason: 'thread_start_failed', error: errorText(error) });
    }
    const id = this.#nextId++;
    // The proxy's own deadline runs from now: a thread that is slow to start (or stuck) does not stretch it.
    const done = new Promise<ExportFailure | undefined>((resolve) => {
      const timer = setTimeout(() => settle({ reason: 'no_answer' }), this.#timeoutMs + ANSWER_GRACE_MS);
      timer.unref();
      const settle = (failure: ExportFailure | undefined): void => {
        clearTimeout(timer);
        thread.waiting.delete(id);
        resolve(failure);
      };
      thread.waiting.set(id, settle);
    });
    // The encoder's buffer owns its ArrayBuffer (never Node's shared pool): moved, not copied.
    const request: ExportWorkerRequest = {
      id,
      body: body.buffer as ArrayBuffer,
      length: body.length,
      budgetMs: this.#timeoutMs,
    };
    thread.worker.postMessage(request, [request.body]);
    this.#pending.add(done);
    void done.finally(() => this.#pending.delete(done));
    return done;
  }

  /**
   * The export thread, started at the first export (a proxy with tracing off or at 0 % never pays its
   * isolate) and unref'd. One that dies fails its exports (counted as dropped, with its exit code and error)
   * and is started again at the next one.
   */
  #start(): ExportThread {
    const worker = new Worker(WORKER_URL, { ...EXPORT_THREAD_OPTIONS, workerData: this.#data });
    worker.unref();
    const thread: ExportThread = { worker, waiting: new Map() };
    let online = false;
    let error: string | undefined;
    worker.on('online', () => (online = true));
    worker.on('message', (r: ExportWorkerResult) => thread.waiting.get(r.id)?.(r.ok ? undefined : r.failure));
    worker.on('error', (e) => (error = errorText(e))); // its exit follows
    worker.on('exit', (exitCode) => {
      if (this.#thread === thread) this.#thread = undefined;
      const failure: ExportFailure = online
        ? { reason: 'thread_exited', exitCode, ...(error === undefined ? {} : { error }) }
        : { reason: 'thread_start_failed', exitCode, ...(error === undefined ? {} : { error }) };
      for (const settle of [...thread.waiting.values()]) settle(failure);
    });
    return thread;
  }

  /** Tests: the export thread, while one runs. */
  get worker(): Worker | undefined {
    return this.#thread?.worker;
  }

  /** Waits for the exports under way (no new retry starts), then ends the thread. */
  async shutdown(): Promise<void> {
    this.#closed = true;
    const thread = this.#thread;
    thread?.worker.postMessage({ close: true } satisfies ExportWorkerRequest);
    await Promise.all(this.#pending);
    await thread?.worker.terminate();
  }
}
