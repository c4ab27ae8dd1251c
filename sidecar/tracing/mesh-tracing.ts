// A proxy's tracing (sidecar or gateway): the RequestTracing of the workload, kept on the mesh settings
// that come with each config (the ConfigMap sluice-system/sluice-mesh-config), applied when they change.
import { tracingFromData } from '../../protocol/tracing-config.ts';
import type { Logger } from '../../lib/json-log.ts';
import type { ProxyMetrics } from '../metrics.ts';
import { throttledLog } from '../throttled-log.ts';
import { RequestTracing, type TracingOptions } from './request-tracing.ts';
import type { ExportFailure } from './span-pipeline.ts';

/** The workload's own tracing options (flags); identity and span counting come from the proxy. */
export type WorkloadTracingOptions = Omit<TracingOptions, 'identity' | 'onSpans'>;

export class MeshTracing {
  readonly tracing: RequestTracing;
  readonly #log: Logger;
  readonly #metrics: ProxyMetrics;
  readonly #endpointFlag: string | undefined;
  #applied = '';

  constructor(
    options: WorkloadTracingOptions,
    deps: { identity: () => string | undefined; metrics: ProxyMetrics; log: Logger },
  ) {
    this.#log = deps.log;
    this.#metrics = deps.metrics;
    this.#endpointFlag = options.endpoint;
    this.tracing = new RequestTracing({
      ...options,
      identity: deps.identity,
      onSpans: (outcome, count, failure) => {
        deps.metrics.spans.inc([outcome], count);
        if (failure) this.#dropped(failure, count);
      },
    });
  }

  /** Every drop counted by reason and logged, throttled per reason (a dead collector fails every batch). */
  #dropped(failure: ExportFailure, spans: number): void {
    this.#metrics.spansDropped.inc([failure.reason], spans);
    const endpoint = this.tracing.settings.endpoint ?? this.#endpointFlag ?? '';
    throttledLog(this.#log).warn(`spans dropped: ${failure.reason}`, endpoint, { ...failure, spans });
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
