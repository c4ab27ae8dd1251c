// From ended spans to the collector: the OpenTelemetry SDK's tracer provider, its batch processor and
// Sluice's own OTLP/HTTP protobuf encoder and sender (otlp-encode.ts, otlp-http-exporter.ts), with a bound on spans held and every span's fate counted. Nothing here runs
// on a request's path except onEnd, which only appends to the batch.
import type { Context } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOnSampler,
  BatchSpanProcessor,
  TracerProvider,
  type ReadableSpan,
  type Span,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import type { Tracer } from '@opentelemetry/api';
import { OtlpHttpExporter } from './otlp-http-exporter.ts';

/** What became of spans: sent to the collector, or lost (queue full, export failed after its retries). */
export type SpanOutcome = 'exported' | 'dropped_queue_full' | 'dropped_export_failed';

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

export interface SpanPipeline {
  readonly tracer: Tracer;
  /** Exports what is queued (tests, shutdown). */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

const BATCH_SIZE = 512;

/** Counts export results and releases the held-span budget when an export ends either way. */
class CountingExporter implements SpanExporter {
  readonly #inner: SpanExporter;
  readonly #done: (count: number, ok: boolean) => void;
  constructor(inner: SpanExporter, done: (count: number, ok: boolean) => void) {
    this.#inner = inner;
    this.#done = done;
  }
  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    let reported = false;
    this.#inner.export(spans, (result) => {
      if (!reported) {
        reported = true;
        this.#done(spans.length, result.code === ExportResultCode.SUCCESS);
      }
      resultCallback(result);
    });
  }
  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** Drops (and counts) spans beyond the bound before they reach the batch processor. */
class BoundedProcessor implements SpanProcessor {
  readonly #inner: SpanProcessor;
  readonly #max: number;
  readonly #dropped: () => void;
  held = 0;
  constructor(inner: SpanProcessor, max: number, dropped: () => void) {
    this.#inner = inner;
    this.#max = max;
    this.#dropped = dropped;
  }
  onStart(_span: Span, _parent: Context): void {}
  onEnd(span: ReadableSpan): void {
    if (this.held >= this.#max) return this.#dropped();
    this.held++;
    this.#inner.onEnd(span);
  }
  forceFlush(): Promise<void> {
    return this.#inner.forceFlush();
  }
  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }
}

export function createSpanPipeline(o: PipelineOptions): SpanPipeline {
  const exporter = o.exporter ?? new OtlpHttpExporter({ url: o.endpoint, timeoutMs: o.exportTimeoutMs });
  let bounded: BoundedProcessor | undefined = undefined;
  const counting = new CountingExporter(exporter, (count, ok) => {
    if (bounded) bounded.held = Math.max(0, bounded.held - count);
    o.onSpans(ok ? 'exported' : 'dropped_export_failed', count);
  });
  const batch = new BatchSpanProcessor({
    exporter: counting,
    // The bound is enforced in front of it; this queue never fills first.
    maxQueueSize: o.maxQueueSpans + BATCH_SIZE,
    maxExportBatchSize: Math.min(BATCH_SIZE, o.maxQueueSpans),
    scheduledDelayMillis: o.batchDelayMs,
    exportTimeoutMillis: o.exportTimeoutMs + 1000,
  });
  bounded = new BoundedProcessor(batch, o.maxQueueSpans, () => o.onSpans('dropped_queue_full', 1));
  const provider = new TracerProvider({
    resource: resourceFromAttributes(o.resource),
    sampler: new AlwaysOnSampler(), // the decision is made before a span is started (sampling.ts)
    spanProcessors: [bounded],
  });
  return {
    tracer: provider.getTracer('sluice-sidecar'),
    flush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}
