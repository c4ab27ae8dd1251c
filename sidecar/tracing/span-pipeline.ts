// From ended spans to the collector: a bounded batch of span records, sent every `batchDelayMs` (or as soon
// as a full batch is queued) through Sluice's OTLP/HTTP protobuf sender (otlp-http-exporter.ts), with every
// span's fate counted. Nothing here runs on a request's path except end(), which only appends to the batch.
import { errorText } from '../../lib/error-text.ts';
import { OtlpHttpExporter } from './otlp-http-exporter.ts';
import type { SpanRecord, SpanResource } from './span-record.ts';

/** What became of spans: sent to the collector, or lost (queue full, export failed after its retries). */
export type SpanOutcome = 'exported' | 'dropped_queue_full' | 'dropped_export_failed';

/**
 * Why spans were lost. `reason` is the label of sluice_trace_spans_dropped_total; the other fields go to the
 * log line (docs/observability.md lists them). `attempts` counts the POSTs made (more than 1: retried).
 */
export type ExportFailure =
  | { readonly reason: 'queue_full' }
  | { readonly reason: 'http_status'; readonly status: number; readonly attempts: number }
  | { readonly reason: 'network_error'; readonly error: string; readonly attempts: number }
  /** The budget ran out; `status` or `error`: what the attempt before met. */
  | {
      readonly reason: 'timed_out';
      readonly attempts: number;
      readonly status?: number;
      readonly error?: string;
    }
  /** The export thread did not answer by the export's deadline (slow to start, or stuck). */
  | { readonly reason: 'no_answer' }
  | { readonly reason: 'thread_start_failed'; readonly exitCode?: number; readonly error?: string }
  | { readonly reason: 'thread_exited'; readonly exitCode: number; readonly error?: string }
  | { readonly reason: 'encode_failed' | 'internal_error'; readonly error: string }
  | { readonly reason: 'shut_down' };

/** Where batches go: OTLP/HTTP, or (tests) memory. */
export interface SpanExporter {
  /** Undefined when the collector took the spans; otherwise why they are lost. Never rejects. */
  export(spans: readonly SpanRecord[]): Promise<ExportFailure | undefined>;
  shutdown(): Promise<void>;
}

export interface PipelineOptions {
  readonly endpoint: string;
  readonly resource: Readonly<Record<string, string>>;
  /** One export, retries included (the exporter backs off on 429/502/503/504 and network errors). */
  readonly exportTimeoutMs: number;
  /** Spans held (queued or being exported) at most; more are dropped and counted. */
  readonly maxQueueSpans: number;
  readonly batchDelayMs: number;
  /** Every span's fate; a dropped one's with why. */
  readonly onSpans: (outcome: SpanOutcome, count: number, failure?: ExportFailure) => void;
  /** Tests: another exporter in place of OTLP/HTTP. */
  readonly exporter?: SpanExporter;
}

const BATCH_SIZE = 512;
const QUEUE_FULL: ExportFailure = { reason: 'queue_full' };

export class SpanPipeline {
  readonly resource: SpanResource;
  readonly #o: PipelineOptions;
  readonly #exporter: SpanExporter;
  readonly #batchSize: number;
  readonly #exports = new Set<Promise<void>>();
  #queue: SpanRecord[] = [];
  /** Spans queued or in an export that has not ended. */
  #held = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(o: PipelineOptions) {
    this.#o = o;
    this.resource = { attributes: o.resource };
    this.#exporter = o.exporter ?? new OtlpHttpExporter({ url: o.endpoint, timeoutMs: o.exportTimeoutMs });
    this.#batchSize = Math.max(1, Math.min(BATCH_SIZE, o.maxQueueSpans));
  }

  /** An ended span: queued for the next batch, or dropped (and counted) when the bound is reached. */
  end(span: SpanRecord): void {
    if (this.#closed) return; // a request that outlived its pipeline (settings changed): not exported
    if (this.#held >= this.#o.maxQueueSpans) {
      this.#o.onSpans('dropped_queue_full', 1, QUEUE_FULL);
      return;
    }
    this.#held++;
    this.#queue.push(span);
    if (this.#queue.length >= this.#batchSize) this.#send();
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.#send(), this.#o.batchDelayMs);
      this.#timer.unref();
    }
  }

  /** Sends what is queued now, in batches. */
  #send(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#batchSize);
      const done = this.#exporter
        .export(batch)
        .catch((error: unknown): ExportFailure => ({ reason: 'internal_error', error: errorText(error) }))
        .then((failure) => {
          this.#held = Math.max(0, this.#held - batch.length);
          if (failure) this.#o.onSpans('dropped_export_failed', batch.length, failure);
          else this.#o.onSpans('exported', batch.length);
        });
      this.#exports.add(done);
      void done.finally(() => this.#exports.delete(done));
    }
  }

  /** Exports what is queued and waits for every export under way (tests, shutdown). */
  async flush(): Promise<void> {
    this.#send();
    await Promise.all(this.#exports);
  }

  async shutdown(): Promise<void> {
    this.#closed = true;
    await this.flush();
    await this.#exporter.shutdown();
  }
}
