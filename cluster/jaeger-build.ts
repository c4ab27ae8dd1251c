// Jaeger v2 (an OpenTelemetry Collector distribution with an in-memory store and the query API), built from
// the wrapper module cluster/go/jaeger like the cluster's own components, for the tracing tests and the demo.
import type { GoBuild } from './go-build.ts';

export const JAEGER_BUILD: GoBuild = {
  name: 'jaeger',
  moduleDir: 'cluster/go/jaeger',
  packages: ['github.com/jaegertracing/jaeger/cmd/jaeger'],
  binaries: ['jaeger'],
  coldBuildMinutes: 25,
};

export const JAEGER_OTLP_HTTP_PORT = 4318;
export const JAEGER_QUERY_PORT = 16686;

/**
 * A Jaeger configuration: OTLP/HTTP on `listen`:4318, the query API and UI on `queryHost`:16686, spans kept
 * in memory; no other receiver, no self-telemetry port. `batchTimeout` short, so tests see spans soon.
 */
export function jaegerConfig(options: { listen: string; queryHost: string; batchTimeout?: string }): string {
  return `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: "${options.queryHost}:${JAEGER_QUERY_PORT}"
    grpc:
      endpoint: "${options.queryHost}:16685"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "${options.listen}:${JAEGER_OTLP_HTTP_PORT}"
processors:
  batch:
    timeout: ${options.batchTimeout ?? '200ms'}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`;
}
