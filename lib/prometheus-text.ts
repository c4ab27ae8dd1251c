// Prometheus text exposition (format 0.0.4), for the controller's, the injector's and the proxy's /metrics.
// Callers keep label values to their own names (resource types, outcomes, route names, status codes), never
// request data, so series stay bounded.

import { otelMethod } from './otel-method.ts';

export function escapeLabel(value: string): string {
  return value.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** `a="x",b="y"`, without braces (empty for no labels). */
export function labelPairs(names: readonly string[], values: readonly string[]): string {
  return names.map((n, i) => `${n}="${escapeLabel(values[i]!)}"`).join(',');
}

function labelText(labels: Readonly<Record<string, string>> | undefined): string {
  const pairs = labelPairs(Object.keys(labels ?? {}), Object.values(labels ?? {}));
  return pairs === '' ? '' : `{${pairs}}`;
}

/** The HELP and TYPE lines of a family. */
export function familyHeader(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
}

/** One sample line; `pairs` as from labelPairs(). */
export function sampleLine(name: string, pairs: string, value: number): string {
  return `${name}${pairs === '' ? '' : `{${pairs}}`} ${numberText(value)}`;
}

/** The lines of one histogram series: per-bucket (non-cumulative) `counts`, summed here. */
export function histogramLines(
  name: string,
  pairs: string,
  buckets: readonly number[],
  counts: readonly number[],
  sum: number,
  count: number,
): string[] {
  const prefix = pairs === '' ? '' : `${pairs},`;
  const out: string[] = [];
  let cumulative = 0;
  buckets.forEach((le, i) => {
    cumulative += counts[i]!;
    out.push(`${name}_bucket{${prefix}le="${le}"} ${cumulative}`);
  });
  out.push(
    `${name}_bucket{${prefix}le="+Inf"} ${count}`,
    sampleLine(`${name}_sum`, pairs, sum),
    sampleLine(`${name}_count`, pairs, count),
  );
  return out;
}

function numberText(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

export class Histogram {
  readonly buckets: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(buckets: readonly number[]) {
    this.buckets = [...buckets].sort((a, b) => a - b);
    this.#counts = this.buckets.map(() => 0);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const i = this.buckets.findIndex((le) => value <= le);
    if (i !== -1) this.#counts[i]!++;
    this.#sum += value;
    this.#count++;
  }

  get count(): number {
    return this.#count;
  }

  render(name: string, help: string): string[] {
    return [
      ...familyHeader(name, 'histogram', help),
      ...histogramLines(name, '', this.buckets, this.#counts, this.#sum, this.#count),
    ];
  }
}

export interface Sample {
  readonly labels?: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A counter or gauge family: HELP, TYPE and one line per sample. */
export function renderFamily(
  name: string,
  type: 'counter' | 'gauge',
  help: string,
  samples: readonly Sample[],
): string[] {
  return [
    ...familyHeader(name, type, help),
    ...samples.map((s) => `${name}${labelText(s.labels)} ${numberText(s.value)}`),
  ];
}

/** The process's own memory and CPU, under the names Prometheus client libraries use. */
export function processFamilies(): string[] {
  const memory = process.memoryUsage();
  const cpu = process.cpuUsage();
  return [
    ...renderFamily('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes', [
      { value: memory.rss },
    ]),
    ...renderFamily('process_cpu_seconds_total', 'counter', 'User and system CPU time in seconds', [
      { value: (cpu.user + cpu.system) / 1e6 },
    ]),
    ...renderFamily('nodejs_heap_size_used_bytes', 'gauge', 'V8 heap in use', [{ value: memory.heapUsed }]),
    ...renderFamily('nodejs_heap_size_total_bytes', 'gauge', 'V8 heap committed', [
      { value: memory.heapTotal },
    ]),
    ...renderFamily('nodejs_external_memory_bytes', 'gauge', 'Memory of C++ objects bound to JS objects', [
      { value: memory.external },
    ]),
  ];
}

/** Request durations, seconds: sub-millisecond proxy hops to 10 s (OTel's advice for http.*.duration). */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** A histogram family with labels; series keyed by their values, label text escaped once per series. */
/** One label set of a LabelledHistogram. */
export interface HistogramSeries {
  readonly labels: string;
  readonly counts: number[];
  sum: number;
  count: number;
}

export class LabelledHistogram {
  readonly name: string;
  readonly help: string;
  readonly labels: readonly string[];
  readonly #series = new Map<string, HistogramSeries>();
  readonly #buckets: readonly number[];

  constructor(name: string, help: string, labels: readonly string[], buckets = LATENCY_BUCKETS) {
    this.name = name;
    this.help = help;
    this.labels = labels;
    this.#buckets = buckets;
  }

  observe(values: readonly string[], value: number): void {
    this.record(this.series(values), value);
  }

  /** The series of these label values, for a caller that records into it often (no key built per value). */
  series(values: readonly string[]): HistogramSeries {
    const key = values.join('\u0001');
    let s = this.#series.get(key);
    if (!s) {
      s = { labels: labelPairs(this.labels, values), counts: this.#buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    return s;
  }

  record(s: HistogramSeries, value: number): void {
    // Cumulative buckets are summed at render time; one increment per observation here.
    const buckets = this.#buckets;
    for (let i = 0; i < buckets.length; i++) {
      if (value <= buckets[i]!) {
        s.counts[i]!++;
        break;
      }
    }
    s.sum += value;
    s.count++;
  }

  render(out: string[]): void {
    out.push(...familyHeader(this.name, 'histogram', this.help));
    for (const s of this.#series.values()) {
      out.push(...histogramLines(this.name, s.labels, this.#buckets, s.counts, s.sum, s.count));
    }
  }
}

/**
 * OTel's http.server.request.duration for a server of the control plane (the injector's webhook, the
 * controller's config and certificate endpoints), labelled by method, route template and status code.
 */
export class HttpServerDuration {
  readonly #histogram = new LabelledHistogram(
    'http_server_request_duration_seconds',
    'Duration of HTTP requests served (OTel http.server.request.duration)',
    ['http_request_method', 'http_route', 'http_response_status_code'],
  );

  /** `route`: a fixed template chosen by the caller (never the request's own path). */
  observe(method: string | undefined, route: string, status: number, seconds: number): void {
    this.#histogram.observe([otelMethod(method), route, String(status)], seconds);
  }

  render(): string[] {
    const out: string[] = [];
    this.#histogram.render(out);
    return out;
  }
}
