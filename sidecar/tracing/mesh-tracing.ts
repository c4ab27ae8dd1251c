// A proxy's tracing (sidecar or gateway): the RequestTracing of the workload, kept on the mesh settings
// that come with each config (the ConfigMap sluice-system/sluice-mesh-config), applied when they change.
import { tracingFromData } from '../../protocol/tracing-config.ts';
import type { Logger } from '../../lib/json-log.ts';
import type { ProxyMetrics } from '../metrics.ts';
import { RequestTracing, type TracingOptions } from './request-tracing.ts';

/** The workload's own tracing options (flags); identity and span counting come from the proxy. */
export type WorkloadTracingOptions = Omit<TracingOptions, 'identity' | 'onSpans'>;

export class MeshTracing {
  readonly tracing: RequestTracing;
  readonly #log: Logger;
  readonly #endpointFlag: string | undefined;
  #applied = '';

  constructor(
    options: WorkloadTracingOptions,
    deps: { identity: () => string | undefined; metrics: ProxyMetrics; log: Logger },
  ) {
    this.#log = deps.log;
    this.#endpointFlag = options.endpoint;
    this.tracing = new RequestTracing({
      ...options,
      identity: deps.identity,
      onSpans: (outcome, count) => deps.metrics.spans.inc([outcome], count),
    });
  }

  /** Settings from a new config: applied when they (or the namespace) changed, warnings logged once. */
  follow(namespace: string, meshConfig: Readonly<Record<string, string>> | undefined): void {
    const text = JSON.stringify([namespace, meshConfig ?? null]);
    if (text === this.#applied) return;
    this.#applied = text;
    const { settings, warnings } = tracingFromData(meshConfig);
    for (const w of warnings) this.#log.warn('tracing setting ignored', { warning: w });
    const tracing = this.tracing;
    try {
      tracing.apply(settings, namespace);
    } catch (err) {
      return this.#log.warn('tracing not started', { error: err instanceof Error ? err : String(err) });
    }
    this.#log.info('tracing settings applied', {
      enabled: tracing.enabled,
      endpoint: settings.endpoint ?? this.#endpointFlag ?? null,
      samplingRatio: settings.samplingRatio,
    });
  }

  /** The last spans go out, for at most `ms` (a dead collector does not hold a drain). */
  drain(ms = 1000): Promise<void> {
    return Promise.race([
      this.tracing.shutdown(),
      new Promise<void>((resolve) => setTimeout(resolve, ms).unref()),
    ]);
  }
}
