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

// OTel HTTP semantic conventions: methods outside the standard set are reported as _OTHER (bounded labels).
const KNOWN_METHODS = new Set([
  'CONNECT',
  'DELETE',
  'GET',
  'HEAD',
  'OPTIONS',
  'PATCH',
  'POST',
  'PUT',
  'TRACE',
]);

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
  readonly retries = new Counter(
    'sluice_upstream_retries_total',
    'Upstream attempts sent again after a transport failure, by failure kind (ADR 0015)',
    ['direction', 'failure'],
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

  // http.server.request.duration and http.client.request.duration (OTel HTTP metrics) in Prometheus form.
  readonly httpServer = new Histogram(
    'http_server_request_duration_seconds',
    'Duration of inbound HTTP requests (OTel http.server.request.duration)',
    ['http_request_method', 'http_response_status_code', 'sluice_backend'],
  );
  readonly httpClient = new Histogram(
    'http_client_request_duration_seconds',
    'Duration of outbound HTTP requests (OTel http.client.request.duration)',
    ['http_request_method', 'http_response_status_code', 'sluice_route', 'sluice_backend'],
  );

  /**
   * One finished request: its count by status code and its latency since `startedMs` (performance.now()),
   * also as the OTel-named histogram of its direction when the method is given.
   */
  request(
    direction: string,
    route: string,
    backend: string,
    code: number,
    startedMs: number,
    method?: string,
  ): void {
    const seconds = (performance.now() - startedMs) / 1000;
    this.requests.inc([direction, route, backend, String(code)]);
    this.latency.observe([direction, route, backend], seconds);
    if (method === undefined) return;
    const m = KNOWN_METHODS.has(method) ? method : '_OTHER';
    if (direction === 'inbound') this.httpServer.observe([m, String(code), backend], seconds);
    else this.httpClient.observe([m, String(code), route, backend], seconds);
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
      this.retries,
      this.spans,
      this.httpServer,
      this.httpClient,
    ])
      m.render(out);
    return `${out.join('\n')}\n`;
  }
}
