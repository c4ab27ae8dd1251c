// Request tracing that samples everything into memory: the spans a test makes, without a collector.
import { DEFAULT_TRACING } from '../../protocol/tracing-config.ts';
import { RequestTracing } from '../../sidecar/tracing/request-tracing.ts';
import type { SpanExporter } from '../../sidecar/tracing/span-pipeline.ts';
import type { SpanRecord } from '../../sidecar/tracing/span-record.ts';

/** Keeps every exported span record, in order. */
export class MemorySpanExporter implements SpanExporter {
  readonly spans: SpanRecord[] = [];
  export(spans: readonly SpanRecord[]): Promise<undefined> {
    this.spans.push(...spans);
    return Promise.resolve(undefined);
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

export function sampledTracing(
  serviceName: string,
  namespace: string,
): { exporter: MemorySpanExporter; tracing: RequestTracing } {
  const exporter = new MemorySpanExporter();
  const tracing = new RequestTracing({
    resource: { 'service.name': serviceName },
    identity: () => undefined,
    exporter,
  });
  tracing.apply(
    { ...DEFAULT_TRACING, endpoint: 'http://collector.invalid/v1/traces', samplingRatio: 1 },
    namespace,
  );
  return { exporter, tracing };
}
