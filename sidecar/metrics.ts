// Prometheus text exposition for the proxy. Label values come from config (route and backend names) and
// status codes, never from request data, so series stay bounded.

import { familyHeader, histogramLines, labelPairs, sampleLine } from '../lib/prometheus-text.ts';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

abstract class Metric {
  readonly name: string;
  readonly help: string;
  readonly labels: readonly string[];
  constructor(name: string, help: string, labels: readonly string[]) {
    this.name = name;
    this.help = help;
    this.labels = labels;
  }
}

class Counter extends Metric {
  readonly #series = new Map<string, { labels: string; value: number }>();

  // Keyed by the raw values joined; the escaped label text is built once per series, not per request.
  inc(values: readonly string[], by = 1): void {
    const key = values.join('\u0001');
    const series = this.#series.get(key);
    if (series) series.value += by;
    else this.#series.set(key, { labels: labelPairs(this.labels, values), value: by });
  }

  render(out: string[]): void {
    out.push(...familyHeader(this.name, 'counter', this.help));
    for (const s of this.#series.values()) out.push(sampleLine(this.name, s.labels, s.value));
  }
}

class Histogram extends Metric {
  readonly #series = new Map<string, { labels: string; counts: number[]; sum: number; count: number }>();

  observe(values: readonly string[], seconds: number): void {
    const key = values.join('\u0001');
    let s = this.#series.get(key);
    if (!s) {
      s = { labels: labelPairs(this.labels, values), counts: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    // Cumulative buckets are summed at render time; one increment per observation here.
    const i = LATENCY_BUCKETS.findIndex((le) => seconds <= le);
    if (i !== -1) s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }

  render(out: string[]): void {
    out.push(...familyHeader(this.name, 'histogram', this.help));
    for (const s of this.#series.values()) {
      out.push(...histogramLines(this.name, s.labels, LATENCY_BUCKETS, s.counts, s.sum, s.count));
    }
  }
}

export class ProxyMetrics {
  readonly requests = new Counter('sluice_requests_total', 'HTTP requests handled', [
    'direction',
    'route',
    'backend',
    'code',
  ]);
  readonly latency = new Histogram('sluice_request_duration_seconds', 'HTTP request latency', [
    'direction',
    'route',
    'backend',
  ]);
  readonly errors = new Counter('sluice_errors_total', 'Requests that failed in the proxy, by cause', [
    'direction',
    'cause',
  ]);
  readonly connections = new Counter(
    'sluice_connections_total',
    'Accepted connections by detected protocol',
    ['direction', 'protocol'],
  );
  readonly reloads = new Counter('sluice_config_reloads_total', 'Config snapshots applied', ['source']);
  readonly timeouts = new Counter(
    'sluice_timeouts_total',
    'Downstream connections or streams closed by a timeout, by which one',
    ['direction', 'timeout'],
  );
  readonly overflows = new Counter(
    'sluice_overflow_total',
    'Connections refused or requests answered 503 because a cap was reached',
    ['direction', 'limit'],
  );

  readonly spans = new Counter(
    'sluice_trace_spans_total',
    'Spans by outcome: exported, or dropped (queue full, export failed after retries)',
    ['outcome'],
  );

  /** One finished request: its count by status code and its latency since `startedMs` (performance.now()). */
  request(direction: string, route: string, backend: string, code: number, startedMs: number): void {
    this.requests.inc([direction, route, backend, String(code)]);
    this.latency.observe([direction, route, backend], (performance.now() - startedMs) / 1000);
  }

  render(): string {
    const out: string[] = [];
    for (const m of [
      this.requests,
      this.latency,
      this.errors,
      this.connections,
      this.reloads,
      this.timeouts,
      this.overflows,
      this.spans,
    ])
      m.render(out);
    return `${out.join('\n')}\n`;
  }
}
