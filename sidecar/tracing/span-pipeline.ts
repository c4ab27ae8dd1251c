// From ended spans to the collector: a bounded batch of span records, sent every `batchDelayMs` (or as soon
// as a full batch is queued) through Sluice's OTLP/HTTP protobuf sender (otlp-http-exporter.ts), with every
// span's fate counted. Nothing here runs on a request's path except end(), which only appends to the batch.
import { OtlpHttpExporter } from './otlp-http-exporter.ts';
import type { SpanRecord, SpanResource } from './span-record.ts';

/** What became of spans: sent to the collector, or lost (queue full, export failed after its retries). */
export type SpanOutcome = 'exported' | 'dropped_queue_full' | 'dropped_export_failed';

/** Where batches go: OTLP/HTTP, or (tests) memory. */
export interface SpanExporter {
  /** True when the collector took the spans; false when they are lost. Never rejects. */
  export(spans: readonly SpanRecord[]): Promise<boolean>;
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
  readonly onSpans: (outcome: SpanOutcome, count: number) => void;
  /** Tests: another exporter in place of OTLP/HTTP. */
  readonly exporter?: SpanExporter;
}

const BATCH_SIZE = 512;

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
      this.#o.onSpans('dropped_queue_full', 1);
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
        .catch(() => false)
        .then((ok) => {
          this.#held = Math.max(0, this.#held - batch.length);
          this.#o.onSpans(ok ? 'exported' : 'dropped_export_failed', batch.length);
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
