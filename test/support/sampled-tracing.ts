// Request tracing that samples everything into memory: the spans a test makes, without a collector.
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { DEFAULT_TRACING } from '../../protocol/tracing-config.ts';
import { RequestTracing } from '../../sidecar/tracing/request-tracing.ts';

export async function sampledTracing(
  serviceName: string,
  namespace: string,
): Promise<{ exporter: InMemorySpanExporter; tracing: RequestTracing }> {
  const exporter = new InMemorySpanExporter();
  const tracing = new RequestTracing({
    resource: { 'service.name': serviceName },
    identity: () => undefined,
    exporter,
  });
  await tracing.apply(
    { ...DEFAULT_TRACING, endpoint: 'http://collector.invalid/v1/traces', samplingRatio: 1 },
    namespace,
  );
  return { exporter, tracing };
}
