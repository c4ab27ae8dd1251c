// Sends encoded spans to an OTLP/HTTP endpoint from a worker thread of its own (otlp-export-worker.ts): the
// batch is encoded here and its bytes transferred to the worker, which POSTs it, retries and backs off, and
// answers with the outcome. A collector that is slow or down costs spans, never a request.
// Why a thread: with the export's HTTP client in the proxy's isolate, ~95 inline-cache sites of the proxy's
// own request path (undici, node:net, streams) went polymorphic from the first export on, and 1 % sampling
// cost 2–5 points more than encoding the same batches without sending them (ADR 0017, ADR 0019).
import { Worker } from 'node:worker_threads';
import { encodeTraceRequest } from './otlp-encode.ts';
import type { ExportWorkerData, ExportWorkerRequest, ExportWorkerResult } from './otlp-export-worker.ts';
import type { SpanExporter } from './span-pipeline.ts';
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

interface ExportThread {
  readonly worker: Worker;
  /** Exports sent to it and not answered yet. */
  readonly waiting: Map<number, (ok: boolean) => void>;
}

export class OtlpHttpExporter implements SpanExporter {
  readonly #data: ExportWorkerData;
  readonly #timeoutMs: number;
  #thread: ExportThread | undefined;
  #nextId = 1;
  readonly #pending = new Set<Promise<boolean>>();
  #closed = false;

  constructor(o: OtlpHttpOptions) {
    new URL(o.url); // an invalid endpoint fails here, when the settings are applied
    this.#data = { url: o.url, backoffBaseMs: o.backoffBaseMs ?? 250 };
    this.#timeoutMs = o.timeoutMs;
  }

  export(spans: readonly SpanRecord[]): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    let body: Buffer;
    try {
      body = encodeTraceRequest(spans);
    } catch {
      return Promise.resolve(false);
    }
    let thread: ExportThread;
    try {
      thread = this.#thread ??= this.#start();
    } catch {
      return Promise.resolve(false); // no thread (out of memory, ...): this batch is lost, the next tries again
    }
    const id = this.#nextId++;
    // The deadline runs from now: a thread that is slow to start (or stuck) does not stretch it.
    const done = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => settle(false), this.#timeoutMs);
      timer.unref();
      const settle = (ok: boolean): void => {
        clearTimeout(timer);
        thread.waiting.delete(id);
        resolve(ok);
      };
      thread.waiting.set(id, settle);
    });
    const deadline = performance.timeOrigin + performance.now() + this.#timeoutMs;
    // The encoder's buffer owns its ArrayBuffer (never Node's shared pool): moved, not copied.
    const message: ExportWorkerRequest = {
      id,
      body: body.buffer as ArrayBuffer,
      length: body.length,
      deadline,
    };
    thread.worker.postMessage(message, [message.body]);
    this.#pending.add(done);
    void done.finally(() => this.#pending.delete(done));
    return done;
  }

  /**
   * The export thread, started at the first export (a proxy with tracing off or at 0 % never pays its
   * isolate) and unref'd. One that dies fails its exports (counted as dropped) and is started again at
   * the next one.
   */
  #start(): ExportThread {
    const worker = new Worker(WORKER_URL, {
      workerData: this.#data,
      name: 'otlp-export',
      // A small young generation: ~2 MB less RSS than the default, for a thread that allocates a little
      // every batch delay. Past the old-generation bound the thread dies and is replaced (its batch lost).
      resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 64 },
    });
    worker.unref();
    const thread: ExportThread = { worker, waiting: new Map() };
    worker.on('message', (r: ExportWorkerResult) => thread.waiting.get(r.id)?.(r.ok));
    worker.on('error', () => undefined); // its exit follows
    worker.on('exit', () => {
      if (this.#thread === thread) this.#thread = undefined;
      for (const settle of [...thread.waiting.values()]) settle(false);
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
