// Prometheus text exposition for the proxy. Label values come from config (route and backend names) and
// status codes, never from request data, so series stay bounded.

import type { Socket } from 'node:net';
import {
  type HistogramSeries,
  familyHeader,
  LabelledHistogram as Histogram,
  labelPairs,
  sampleLine,
} from '../lib/prometheus-text.ts';
import { otelMethod } from '../lib/otel-method.ts';
/** Body sizes, bytes: empty, small JSON, pages, uploads. */
const SIZE_BUCKETS = [0, 64, 256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216];
/** Distinct peer identities kept as label values; later ones are reported as _other (bounded series). */
export const MAX_PEER_IDENTITIES = 50;

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
    this.series(values).value += by;
  }

  series(values: readonly string[]): { labels: string; value: number } {
    const key = values.join('\u0001');
    let series = this.#series.get(key);
    if (!series) this.#series.set(key, (series = { labels: labelPairs(this.labels, values), value: 0 }));
    return series;
  }

  render(out: string[]): void {
    out.push(...familyHeader(this.name, 'counter', this.help));
    for (const s of this.#series.values()) out.push(sampleLine(this.name, s.labels, s.value));
  }
}

/** The first `max` distinct values pass as they are, later ones become `_other`: a label with a bound. */
export class BoundedValues {
  readonly #max: number;
  readonly #seen = new Set<string>();
  constructor(max: number) {
    this.#max = max;
  }
  of(value: string): string {
    if (this.#seen.has(value)) return value;
    if (this.#seen.size >= this.#max) return '_other';
    this.#seen.add(value);
    return value;
  }
}

interface TcpTotals {
  opened: number;
  closed: number;
  received: number;
  sent: number;
  readonly open: Set<Socket>;
}

/**
 * Opaque TCP relayed by the proxy: connections opened and closed, bytes received from and sent to the
 * downstream peer, per direction and backend. Bytes of open connections are read from their sockets at
 * render time, so a long-lived connection shows up before it closes.
 */
class TcpMetrics {
  readonly #by = new Map<string, TcpTotals>();
  readonly #peers: BoundedValues;

  constructor(peers: BoundedValues) {
    this.#peers = peers;
  }

  /**
   * A downstream connection from now on relayed byte for byte to `backend`. `peerIdentity`: the SPIFFE ID
   * of the mTLS peer, verified in the handshake (inbound: the caller; outbound: the endpoint's).
   */
  track(direction: string, backend: string, socket: Socket, peerIdentity?: string): void {
    const peer = peerIdentity === undefined ? 'none' : this.#peers.of(peerIdentity);
    const key = `${direction}\u0001${backend}\u0001${peer}`;
    let t = this.#by.get(key);
    if (!t) this.#by.set(key, (t = { opened: 0, closed: 0, received: 0, sent: 0, open: new Set() }));
    const totals = t;
    totals.opened++;
    totals.open.add(socket);
    socket.once('close', () => {
      totals.open.delete(socket);
      totals.closed++;
      totals.received += socket.bytesRead;
      totals.sent += socket.bytesWritten;
    });
  }

  render(out: string[]): void {
    const opened: string[] = [];
    const closed: string[] = [];
    const bytes: string[] = [];
    const names = ['direction', 'sluice_backend', 'sluice_peer_identity'];
    for (const [key, t] of this.#by) {
      const [direction = '', backend = '', peer = ''] = key.split('\u0001');
      const pairs = labelPairs(names, [direction, backend, peer]);
      opened.push(sampleLine('sluice_tcp_connections_opened_total', pairs, t.opened));
      closed.push(sampleLine('sluice_tcp_connections_closed_total', pairs, t.closed));
      let received = t.received;
      let sent = t.sent;
      for (const s of t.open) {
        received += s.bytesRead;
        sent += s.bytesWritten;
      }
      const io = (d: string): string =>
        labelPairs([...names, 'network_io_direction'], [direction, backend, peer, d]);
      bytes.push(sampleLine('sluice_tcp_io_bytes_total', io('receive'), received));
      bytes.push(sampleLine('sluice_tcp_io_bytes_total', io('transmit'), sent));
    }
    out.push(
      ...familyHeader('sluice_tcp_connections_opened_total', 'counter', 'Opaque TCP connections relayed'),
      ...opened,
      ...familyHeader('sluice_tcp_connections_closed_total', 'counter', 'Opaque TCP connections closed'),
      ...closed,
      ...familyHeader(
        'sluice_tcp_io_bytes_total',
        'counter',
        'Bytes of opaque TCP connections, received from (receive) and sent to (transmit) the downstream peer',
      ),
      ...bytes,
    );
  }
}

/** What is known of a request once its response went out. */
export interface RequestFacts {
  /** The peer's SPIFFE ID: the caller (inbound) or the endpoint that answered (outbound, gateway). */
  readonly peerIdentity?: string | undefined;
  /** Body bytes received from the client and sent to it. */
  readonly requestBytes?: number;
  readonly responseBytes?: number;
}

/** The series one kind of request is counted in. */
interface RequestSeries {
  requests: { value: number };
  latency: HistogramSeries;
  /** The OTel histograms' label values (when the method is known). */
  labels?: string[];
  duration?: HistogramSeries;
  requestSize?: HistogramSeries;
  responseSize?: HistogramSeries;
}

/** Raw (status, method, peer) values seen per group before the group stops remembering new ones. */
const MAX_RAW_KEYS = 256;

/**
 * The series of one (direction, route, backend). A request finds its own by its status, method and peer
 * as they come (the last one first: consecutive requests mostly share them), without building a key; the
 * label values (OTel method, bounded peer) are worked out only for a combination not seen before.
 */
export class RequestSeriesGroup {
  readonly direction: string;
  readonly route: string;
  readonly backend: string;
  /** By the label values' key: shared by raw values that map to the same labels. */
  readonly byLabels = new Map<string, RequestSeries>();
  /** By status, then raw method, then raw peer (bounded by MAX_RAW_KEYS in all). */
  readonly #byRaw = new Map<number, Map<string | undefined, Map<string | undefined, RequestSeries>>>();
  #rawKeys = 0;
  #lastCode = -1;
  #lastMethod: string | undefined;
  #lastPeer: string | undefined;
  #last: RequestSeries | undefined;

  constructor(direction: string, route: string, backend: string) {
    this.direction = direction;
    this.route = route;
    this.backend = backend;
  }

  of(
    code: number,
    method: string | undefined,
    peer: string | undefined,
    create: (
      group: RequestSeriesGroup,
      code: number,
      method: string | undefined,
      peer: string | undefined,
    ) => RequestSeries,
  ): RequestSeries {
    if (this.#last && code === this.#lastCode && method === this.#lastMethod && peer === this.#lastPeer)
      return this.#last;
    let byMethod = this.#byRaw.get(code);
    let byPeer = byMethod?.get(method);
    let s = byPeer?.get(peer);
    if (!s) {
      s = create(this, code, method, peer);
      if (this.#rawKeys < MAX_RAW_KEYS) {
        this.#rawKeys++;
        if (!byMethod)
          this.#byRaw.set(
            code,
            (byMethod = new Map<string | undefined, Map<string | undefined, RequestSeries>>()),
          );
        if (!byPeer) byMethod.set(method, (byPeer = new Map<string | undefined, RequestSeries>()));
        byPeer.set(peer, s);
      }
    }
    this.#lastCode = code;
    this.#lastMethod = method;
    this.#lastPeer = peer;
    this.#last = s;
    return s;
  }
}

const SERVER_LABELS = [
  'http_request_method',
  'http_response_status_code',
  'sluice_backend',
  'sluice_peer_identity',
];
const CLIENT_LABELS = [
  'http_request_method',
  'http_response_status_code',
  'sluice_route',
  'sluice_backend',
  'sluice_peer_identity',
];

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
  readonly spansDropped = new Counter(
    'sluice_trace_spans_dropped_total',
    'Dropped spans by reason (queue_full, http_status, network_error, timed_out, thread_exited, ...)',
    ['reason'],
  );

  // OTel HTTP metrics in Prometheus form: http.server.* for requests to this pod's app, http.client.* for
  // requests the proxy sends on for a client (sidecar outbound, gateway). Label values come from config, the
  // method list and the bounded peer identities.
  readonly httpServer = new Histogram(
    'http_server_request_duration_seconds',
    'Duration of inbound HTTP requests (OTel http.server.request.duration)',
    SERVER_LABELS,
  );
  readonly httpServerRequestSize = new Histogram(
    'http_server_request_body_size_bytes',
    'Body size of inbound HTTP requests (OTel http.server.request.body.size)',
    SERVER_LABELS,
    SIZE_BUCKETS,
  );
  readonly httpServerResponseSize = new Histogram(
    'http_server_response_body_size_bytes',
    'Body size of the responses to inbound HTTP requests (OTel http.server.response.body.size)',
    SERVER_LABELS,
    SIZE_BUCKETS,
  );
  readonly httpClient = new Histogram(
    'http_client_request_duration_seconds',
    'Duration of outbound HTTP requests (OTel http.client.request.duration)',
    CLIENT_LABELS,
  );
  readonly httpClientRequestSize = new Histogram(
    'http_client_request_body_size_bytes',
    'Body size of outbound HTTP requests (OTel http.client.request.body.size)',
    CLIENT_LABELS,
    SIZE_BUCKETS,
  );
  readonly httpClientResponseSize = new Histogram(
    'http_client_response_body_size_bytes',
    'Body size of the responses to outbound HTTP requests (OTel http.client.response.body.size)',
    CLIENT_LABELS,
    SIZE_BUCKETS,
  );
  // One bound for the peer label across HTTP and TCP series.
  readonly #peers = new BoundedValues(MAX_PEER_IDENTITIES);
  readonly tcp = new TcpMetrics(this.#peers);

  /**
   * One finished request: its count by status code and its latency since `startedMs` (performance.now()),
   * also in the OTel-named histograms of its direction when the method is given: duration always, body
   * sizes when `facts` has them.
   */
  request(
    direction: string,
    route: string,
    backend: string,
    code: number,
    startedMs: number,
    method?: string,
    facts: RequestFacts = {},
  ): void {
    this.recordIn(this.requestSeries(direction, route, backend), code, startedMs, method, facts);
  }

  /**
   * The series of one (direction, route, backend), for a caller that records many requests into them (the
   * inbound listener keeps one per connection): no key is built per request.
   */
  requestSeries(direction: string, route: string, backend: string): RequestSeriesGroup {
    // Nested by each label value: the label strings come from caches, so their hashes are, and nothing is
    // joined per request.
    let byRoute = this.#groups.get(direction);
    if (!byRoute) this.#groups.set(direction, (byRoute = new Map<string, Map<string, RequestSeriesGroup>>()));
    let byBackend = byRoute.get(route);
    if (!byBackend) byRoute.set(route, (byBackend = new Map<string, RequestSeriesGroup>()));
    let group = byBackend.get(backend);
    if (!group) byBackend.set(backend, (group = new RequestSeriesGroup(direction, route, backend)));
    return group;
  }

  /** request(), into series found with requestSeries(). */
  recordIn(
    group: RequestSeriesGroup,
    code: number,
    startedMs: number,
    method: string | undefined,
    facts: RequestFacts,
  ): void {
    const seconds = (performance.now() - startedMs) / 1000;
    const s = group.of(code, method, facts.peerIdentity, this.#seriesFor);
    s.requests.value++;
    this.latency.record(s.latency, seconds);
    if (!s.duration) return;
    const server = group.direction === 'inbound';
    (server ? this.httpServer : this.httpClient).record(s.duration, seconds);
    if (facts.requestBytes !== undefined) {
      const h = server ? this.httpServerRequestSize : this.httpClientRequestSize;
      h.record((s.requestSize ??= h.series(s.labels!)), facts.requestBytes);
    }
    if (facts.responseBytes !== undefined) {
      const h = server ? this.httpServerResponseSize : this.httpClientResponseSize;
      h.record((s.responseSize ??= h.series(s.labels!)), facts.responseBytes);
    }
  }

  readonly #groups = new Map<string, Map<string, Map<string, RequestSeriesGroup>>>();

  /** The series of a request not seen before in its group (the peer still unbounded). */
  readonly #seriesFor = (
    group: RequestSeriesGroup,
    code: number,
    method: string | undefined,
    peerIdentity: string | undefined,
  ): RequestSeries => {
    const { direction, route, backend } = group;
    const m = method === undefined ? undefined : otelMethod(method);
    const peer = peerIdentity === undefined ? 'none' : this.#peers.of(peerIdentity);
    // Distinct raw values may share a series (methods outside the standard set, peers past the bound).
    const key = `${code}\u0001${m}\u0001${peer}`;
    let s = group.byLabels.get(key);
    if (s) return s;
    s = {
      requests: this.requests.series([direction, route, backend, String(code)]),
      latency: this.latency.series([direction, route, backend]),
    };
    group.byLabels.set(key, s);
    if (m === undefined) return s;
    const server = direction === 'inbound';
    const labels = server ? [m, String(code), backend, peer] : [m, String(code), route, backend, peer];
    s.labels = labels;
    s.duration = (server ? this.httpServer : this.httpClient).series(labels);
    return s;
  };

  /** Upstream requests the proxy holds now (read at scrape time, nothing on the request path). */
  upstreamInFlight: () => number = () => 0;

  render(): string {
    const out: string[] = [];
    out.push(
      ...familyHeader(
        'sluice_upstream_requests_in_flight',
        'gauge',
        'Requests held by the upstream pools now: running or queued on HTTP/1.1, streams on HTTP/2',
      ),
      sampleLine('sluice_upstream_requests_in_flight', '', this.upstreamInFlight()),
    );
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
      this.spansDropped,
      this.httpServer,
      this.httpServerRequestSize,
      this.httpServerResponseSize,
      this.httpClient,
      this.httpClientRequestSize,
      this.httpClientResponseSize,
      this.tcp,
    ])
      m.render(out);
    return `${out.join('\n')}\n`;
  }
}
