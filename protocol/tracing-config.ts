// Mesh-wide tracing settings (ADR 0011): the ConfigMap sluice-system/sluice-mesh-config, streamed to sidecars
// with the routing config and read by every sidecar, so a change applies without restarting pods. Pure.
//
//   data:
//     tracing.otlpEndpoint: http://jaeger.observability:4318/v1/traces   # empty or absent: tracing off
//     tracing.samplingPercent: "1"                                        # mesh-wide, 0..100
//     tracing.namespaceSamplingPercent: "shop=100, batch=0"               # per-namespace overrides
//     tracing.forcedTracesPerSecond: "10"                                 # bound on x-sluice-force-trace
//     tracing.propagation: "w3c,b3,b3multi"                               # formats always emitted
//     tracing.resourceAttributes: "deployment.environment=dev,team=shop"  # added to every span's resource
//     tracing.exportTimeoutMs / tracing.maxQueueSpans / tracing.batchDelayMs
export { MESH_CONFIG_NAME, MESH_CONFIG_NAMESPACE } from '../mesh-model/mesh-config.ts';
/** The pod's own share of new traces, passed to its sidecar as --tracing-sampling-percent. */
export const TRACING_SAMPLING_ANNOTATION = 'sluice.dev/tracing-sampling-percent';
/** The request header that asks for a trace (docs/security.md: rate-limited per sidecar). */
export const FORCE_TRACE_HEADER = 'x-sluice-force-trace';

export interface TracingSettings {
  /** OTLP/HTTP protobuf traces URL; undefined: tracing off (no span, no header touched). */
  readonly endpoint: string | undefined;
  /** Mesh-wide share of new traces, 0..1. */
  readonly samplingRatio: number;
  readonly namespaceSamplingRatio: Readonly<Record<string, number>>;
  readonly forcedTracesPerSecond: number;
  /** B3 forms emitted on every sampled request (W3C always; B3 also in every form the caller sent). */
  readonly propagation: readonly ('b3' | 'b3multi')[];
  readonly resourceAttributes: Readonly<Record<string, string>>;
  readonly exportTimeoutMs: number;
  readonly maxQueueSpans: number;
  readonly batchDelayMs: number;
}

export const DEFAULT_TRACING: TracingSettings = {
  endpoint: undefined,
  samplingRatio: 0.01,
  namespaceSamplingRatio: {},
  forcedTracesPerSecond: 10,
  propagation: [],
  resourceAttributes: {},
  exportTimeoutMs: 10_000,
  maxQueueSpans: 2048,
  // OTel's default: at low span rates each export's fixed cost (and its cold code) dominates (ADR 0018).
  batchDelayMs: 5000,
};

/** The sidecar's own overrides (flags; the pod annotation sluice.dev/tracing-sampling-percent). */
export interface TracingOverrides {
  readonly endpoint?: string | undefined;
  readonly podSamplingRatio?: number | undefined;
}

function percent(text: string, what: string, warnings: string[]): number | undefined {
  const n = Number(text.trim());
  if (text.trim() === '' || !Number.isFinite(n) || n < 0 || n > 100) {
    warnings.push(`${what}: '${text}' is not a percentage between 0 and 100`);
    return undefined;
  }
  return n / 100;
}

function whole(text: string, what: string, min: number, max: number, warnings: string[]): number | undefined {
  const n = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || n < min || n > max) {
    warnings.push(`${what}: '${text}' is not a whole number between ${min} and ${max}`);
    return undefined;
  }
  return n;
}

function pairs(text: string): [string, string][] {
  return text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      return eq === -1 ? [p, ''] : [p.slice(0, eq).trim(), p.slice(eq + 1).trim()];
    });
}

/** An OTLP URL the sidecar may post to: http or https with a host. */
export function checkEndpoint(text: string): string | undefined {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== ''
      ? url.href
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Settings from the ConfigMap's data; a bad value keeps its default and yields a warning (a typo must not
 * turn tracing off mesh-wide, nor stop the routing config from applying).
 */
export function tracingFromData(data: Readonly<Record<string, unknown>> | undefined): {
  settings: TracingSettings;
  warnings: string[];
} {
  const warnings: string[] = [];
  const s: { -readonly [K in keyof TracingSettings]: TracingSettings[K] } = { ...DEFAULT_TRACING };
  const get = (key: string): string | undefined => {
    const v = data?.[`tracing.${key}`];
    return typeof v === 'string' ? v : undefined;
  };
  const endpoint = get('otlpEndpoint');
  if (endpoint !== undefined && endpoint.trim() !== '') {
    s.endpoint = checkEndpoint(endpoint.trim());
    if (s.endpoint === undefined) warnings.push(`tracing.otlpEndpoint: '${endpoint}' is not an http(s) URL`);
  }
  const ratio = get('samplingPercent');
  if (ratio !== undefined)
    s.samplingRatio = percent(ratio, 'tracing.samplingPercent', warnings) ?? s.samplingRatio;
  const perNs = get('namespaceSamplingPercent');
  if (perNs !== undefined) {
    const out: Record<string, number> = {};
    for (const [ns, p] of pairs(perNs)) {
      const r = percent(p, `tracing.namespaceSamplingPercent[${ns}]`, warnings);
      if (r !== undefined && ns !== '') out[ns] = r;
    }
    s.namespaceSamplingRatio = out;
  }
  const forced = get('forcedTracesPerSecond');
  if (forced !== undefined)
    s.forcedTracesPerSecond =
      whole(forced, 'tracing.forcedTracesPerSecond', 0, 10_000, warnings) ?? s.forcedTracesPerSecond;
  const propagation = get('propagation');
  if (propagation !== undefined) {
    const forms: ('b3' | 'b3multi')[] = [];
    for (const f of propagation.split(',').map((x) => x.trim().toLowerCase())) {
      if (f === 'b3' || f === 'b3multi') forms.push(f);
      else if (f !== 'w3c' && f !== '') warnings.push(`tracing.propagation: unknown format '${f}'`);
    }
    s.propagation = forms;
  }
  const attrs = get('resourceAttributes');
  if (attrs !== undefined) s.resourceAttributes = Object.fromEntries(pairs(attrs).filter(([k]) => k !== ''));
  const timeout = get('exportTimeoutMs');
  if (timeout !== undefined)
    s.exportTimeoutMs =
      whole(timeout, 'tracing.exportTimeoutMs', 100, 120_000, warnings) ?? s.exportTimeoutMs;
  const queue = get('maxQueueSpans');
  if (queue !== undefined)
    s.maxQueueSpans = whole(queue, 'tracing.maxQueueSpans', 1, 1_000_000, warnings) ?? s.maxQueueSpans;
  const delay = get('batchDelayMs');
  if (delay !== undefined)
    s.batchDelayMs = whole(delay, 'tracing.batchDelayMs', 1, 60_000, warnings) ?? s.batchDelayMs;
  return { settings: s, warnings };
}

/** The share of new traces for one sidecar: its pod's override, else its namespace's, else the mesh's. */
export function samplingRatioFor(settings: TracingSettings, namespace: string, podRatio?: number): number {
  return podRatio ?? settings.namespaceSamplingRatio[namespace] ?? settings.samplingRatio;
}
