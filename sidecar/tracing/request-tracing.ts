// Spans for the requests a sidecar handles: a SERVER span per inbound request, a CLIENT span per outbound
// one (a gateway: both, see startGateway), parented on the caller's context and propagated to the next hop. The sampling decision comes first;
// an unsampled request gets no span object and keeps its headers (see startOutbound for the one exception).
// A sampled one gets a SpanRecord (span-record.ts), filled in place and queued when it ends (ADR 0017).
import type { Attributes } from '@opentelemetry/api';
import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderMap } from '../../mesh-model/header-edits.ts';
import type { Endpoint } from '../../mesh-model/endpoints.ts';
import type { MatchEntry } from '../../mesh-model/model.ts';
import {
  DEFAULT_TRACING,
  FORCE_TRACE_HEADER,
  samplingRatioFor,
  type TracingSettings,
} from '../../protocol/tracing-config.ts';
import { extractContext, injectContext, type ContextFormat, type RemoteContext } from './trace-context.ts';
import { otelMethod } from '../../lib/otel-method.ts';
import { decide, RateLimiter, type SamplingReason } from './sampling.ts';
import { bounded, recordedTraceState } from './span-limits.ts';
import { SpanPipeline, type PipelineOptions, type SpanExporter } from './span-pipeline.ts';
import { hrNow, randomHex, SPAN_KIND, SPAN_STATUS, SpanRecord, type SpanKindValue } from './span-record.ts';
import { hostText } from '../../lib/host-text.ts';

/** The request fields tracing reads (http.IncomingMessage and Http2ServerRequest both have them). */
export interface TracedRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly httpVersion: string;
  readonly socket: {
    readonly localAddress?: string | undefined;
    readonly remoteAddress?: string | undefined;
    readonly remotePort?: number | undefined;
  } | null;
}

export interface TracingOptions {
  /** Resource attributes of this workload: service.name, k8s.pod.name, ... (k8s.namespace.name is added). */
  readonly resource: Readonly<Record<string, string>>;
  /** This sidecar's SPIFFE ID (caller on outbound spans, callee on inbound ones). */
  readonly identity: () => string | undefined;
  /** The pod's own sampling override, 0..1 (annotation sluice.dev/tracing-sampling-percent). */
  readonly podSamplingRatio?: number | undefined;
  /** Used when the mesh config names no endpoint (flag --tracing-endpoint). */
  readonly endpoint?: string | undefined;
  readonly onSpans?: PipelineOptions['onSpans'];
  /** Tests: numbers in [0, 1), the clock (ms) of the forced-trace limiter, and the exporter. */
  readonly random?: () => number;
  readonly now?: () => number;
  readonly exporter?: SpanExporter;
}

const NO_FORMATS: ReadonlySet<ContextFormat> = new Set();

/** A fresh unsampled context, so that later hops follow this hop's "no" instead of rolling again. */
function unsampledTraceparent(): string {
  return `00-${randomHex(16)}-${randomHex(8)}-00`;
}

function one(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function splitAuthority(authority: string): { host: string; port: number | undefined } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(authority);
  if (!m) return { host: authority, port: undefined };
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] === undefined ? undefined : Number(m[2]) };
}

function pathOnly(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

function protocolVersion(req: TracedRequest): string {
  return req.httpVersion === '2.0' ? '2' : req.httpVersion;
}

/** The request's path, without the query, as a span keeps it (bounded). */
function spanPath(req: TracedRequest): string {
  const url = req.url ?? '/';
  return bounded(pathOnly(url), url);
}

/** http.request.method_original, for a method OTel reports as _OTHER. */
function addMethodOriginal(attrs: Attributes, method: string): void {
  if (otelMethod(method) === '_OTHER') attrs['http.request.method_original'] = bounded(method);
}

/** The OTel HTTP client attributes of a request sent to `authority`. */
function clientAttributes(req: TracedRequest, authority: string, reason: SamplingReason): Attributes {
  const { host, port } = splitAuthority(authority);
  const method = req.method ?? 'GET';
  const attrs: Attributes = {
    'http.request.method': otelMethod(method),
    'url.full': bounded(`http://${authority}${spanPath(req)}`),
    'server.address': bounded(host, authority),
    'network.protocol.version': protocolVersion(req),
    'sluice.sampling.reason': reason,
  };
  if (port !== undefined) attrs['server.port'] = port;
  addMethodOriginal(attrs, method);
  return attrs;
}

/** The OTel HTTP server attributes of a request received on `address`:`port`. */
function serverAttributes(
  req: TracedRequest,
  address: string,
  port: number,
  scheme: 'http' | 'https',
  reason: SamplingReason,
): Attributes {
  const authority = one(req.headers[':authority']) ?? req.headers.host ?? '';
  const method = req.method ?? 'GET';
  const attrs: Attributes = {
    'http.request.method': otelMethod(method),
    'url.path': spanPath(req),
    'url.scheme': scheme,
    'server.address': bounded(splitAuthority(authority).host, authority) || address,
    'server.port': port,
    'network.protocol.version': protocolVersion(req),
    'sluice.sampling.reason': reason,
  };
  const remote = req.socket?.remoteAddress;
  if (remote) attrs['client.address'] = remote;
  addMethodOriginal(attrs, method);
  return attrs;
}

/** What the forwarders tell a traced request as it proceeds (http-forward.ts). */
export interface RequestSpan {
  route(entry: MatchEntry | undefined, backend: string): void;
  routeLabel(label: string): void;
  attempt(ep: Endpoint): void;
  mirror(backend: string): void;
  /** The gRPC status the response carried (grpc-status in its trailers or headers). */
  grpcStatus(code: number): void;
  end(status: number, cause?: string): void;
}

// Canonical gRPC status codes (grpc/doc/statuscodes.md), for error.type.
const GRPC_CODES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

/** One request's span; the forwarders call these as the request proceeds. */
export class HttpSpan implements RequestSpan {
  readonly #record: SpanRecord;
  readonly #pipeline: SpanPipeline;
  #attempts = 0;
  #ended = false;
  #grpc: number | undefined;

  constructor(record: SpanRecord, pipeline: SpanPipeline) {
    this.#record = record;
    this.#pipeline = pipeline;
  }

  get traceId(): string {
    return this.#record.traceId;
  }

  get spanId(): string {
    return this.#record.spanId;
  }

  /** The route rule that matched (undefined: none) and the backend Service port chosen. */
  route(entry: MatchEntry | undefined, backend: string): void {
    if (this.#ended) return;
    const a = this.#record.attributes;
    a['sluice.backend.service'] = backend;
    if (entry) {
      a['sluice.route.kind'] = entry.rule.route.kind;
      a['sluice.route.namespace'] = entry.rule.route.namespace;
      a['sluice.route.name'] = entry.rule.route.name;
      a['sluice.route.rule'] = entry.rule.name ?? String(entry.rule.index);
    }
  }

  /** A local reply's route ("ns/name" or "none"). */
  routeLabel(label: string): void {
    const slash = label.indexOf('/');
    if (slash === -1 || this.#ended) return;
    const a = this.#record.attributes;
    a['sluice.route.namespace'] = label.slice(0, slash);
    a['sluice.route.name'] = label.slice(slash + 1);
  }

  /** An attempt on an endpoint: the first one, a connect retry on another endpoint, or a policy retry. */
  attempt(ep: Endpoint): void {
    if (this.#ended) return;
    this.#attempts++;
    const a = this.#record.attributes;
    a['network.peer.address'] = ep.address;
    a['network.peer.port'] = ep.port;
    a['sluice.endpoint'] = `${hostText(ep.address)}:${ep.port}`;
    if (this.#record.kind === SPAN_KIND.CLIENT) {
      if (ep.identity) a['sluice.callee.identity'] = ep.identity;
      if (ep.pod) a['sluice.endpoint.pod'] = ep.pod;
      if (this.#attempts > 1) {
        a['http.request.resend_count'] = this.#attempts - 1;
        a['sluice.retry.attempt'] = this.#attempts - 1;
      }
    }
    if (this.#attempts > 1) this.#event('retry', { 'sluice.retry.attempt': this.#attempts - 1 });
  }

  /** A RequestMirror copy went to this backend (its response is not traced). */
  mirror(backend: string): void {
    this.#event('mirror', { 'sluice.mirror.backend': backend });
  }

  grpcStatus(code: number): void {
    if (this.#ended) return;
    this.#grpc = code;
    this.#record.attributes['rpc.grpc.status_code'] = code;
  }

  #event(name: string, attributes: Attributes): void {
    if (this.#ended) return;
    (this.#record.events ??= []).push({ time: hrNow(), name, attributes });
  }

  /**
   * The response status; `cause` for replies the proxy made itself (no_endpoint, timeout, upstream, ...).
   * A gRPC response with a status other than OK is an error too, whatever its HTTP status.
   */
  end(status: number, cause?: string): void {
    if (this.#ended) return;
    this.#ended = true;
    const r = this.#record;
    const a = r.attributes;
    a['http.response.status_code'] = status;
    if (cause !== undefined) {
      a['sluice.local_reply'] = true;
      a['sluice.local_reply.cause'] = cause;
    }
    const failed = r.kind === SPAN_KIND.SERVER ? status >= 500 : status >= 400;
    const grpc = this.#grpc;
    if (failed || (cause !== undefined && cause !== 'redirect')) {
      a['error.type'] = cause ?? String(status);
      r.status = { code: SPAN_STATUS.ERROR, message: cause ?? `HTTP ${status}` };
    } else if (grpc !== undefined && grpc !== 0) {
      const name = GRPC_CODES[grpc] ?? String(grpc);
      a['error.type'] = name;
      r.status = { code: SPAN_STATUS.ERROR, message: `gRPC ${name}` };
    }
    r.endTime = hrNow();
    this.#pipeline.end(r);
  }
}

/**
 * A request through a gateway: the SERVER span of the client's request and the CLIENT span of the call to
 * the backend, its child. Endpoint attempts and mirrors belong to the call; route and outcome to both.
 */
class GatewaySpan implements RequestSpan {
  readonly #server: HttpSpan;
  readonly #client: HttpSpan;
  constructor(server: HttpSpan, client: HttpSpan) {
    this.#server = server;
    this.#client = client;
  }
  route(entry: MatchEntry | undefined, backend: string): void {
    this.#server.route(entry, backend);
    this.#client.route(entry, backend);
  }
  routeLabel(label: string): void {
    this.#server.routeLabel(label);
    this.#client.routeLabel(label);
  }
  attempt(ep: Endpoint): void {
    this.#client.attempt(ep);
  }
  mirror(backend: string): void {
    this.#client.mirror(backend);
  }
  grpcStatus(code: number): void {
    this.#server.grpcStatus(code);
    this.#client.grpcStatus(code);
  }
  end(status: number, cause?: string): void {
    this.#client.end(status, cause);
    this.#server.end(status, cause);
  }
}

/** The tracing half of a sidecar or gateway; `apply` takes new mesh settings without a restart. */
export class RequestTracing {
  readonly #o: TracingOptions;
  readonly #random: () => number;
  readonly #limiter: RateLimiter;
  #settings: TracingSettings = DEFAULT_TRACING;
  #ratio: number;
  #namespace = '';
  #pipeline: SpanPipeline | undefined;
  #pipelineKey = '';
  #formats: ReadonlySet<ContextFormat> = NO_FORMATS;

  constructor(options: TracingOptions) {
    this.#o = options;
    this.#random = options.random ?? Math.random;
    this.#limiter = new RateLimiter(DEFAULT_TRACING.forcedTracesPerSecond, options.now);
    this.#ratio = samplingRatioFor(DEFAULT_TRACING, '', options.podSamplingRatio);
    this.apply(DEFAULT_TRACING, '');
  }

  get settings(): TracingSettings {
    return this.#settings;
  }

  get namespace(): string {
    return this.#namespace;
  }

  get enabled(): boolean {
    return this.#pipeline !== undefined;
  }

  /**
   * New settings, and the pod's namespace (known once the config names it); the export pipeline is rebuilt
   * only when what it depends on changed.
   */
  apply(settings: TracingSettings, namespace: string): void {
    this.#settings = settings;
    this.#namespace = namespace;
    this.#ratio = samplingRatioFor(settings, namespace, this.#o.podSamplingRatio);
    this.#limiter.perSecond = settings.forcedTracesPerSecond;
    this.#formats = new Set(settings.propagation);
    const endpoint = settings.endpoint ?? this.#o.endpoint;
    const resource: Record<string, string> = { ...settings.resourceAttributes, ...this.#o.resource };
    if (namespace) resource['k8s.namespace.name'] = namespace;
    const key = endpoint
      ? JSON.stringify([
          endpoint,
          resource,
          settings.exportTimeoutMs,
          settings.maxQueueSpans,
          settings.batchDelayMs,
        ])
      : '';
    if (key === this.#pipelineKey) return;
    const old = this.#pipeline;
    this.#pipelineKey = key;
    this.#pipeline = undefined;
    // Spans of the old pipeline still go out (to the old endpoint) in the background.
    void old?.shutdown().catch(() => undefined);
    if (!endpoint) return;
    this.#pipeline = new SpanPipeline({
      endpoint,
      resource,
      exportTimeoutMs: settings.exportTimeoutMs,
      maxQueueSpans: settings.maxQueueSpans,
      batchDelayMs: settings.batchDelayMs,
      onSpans: this.#o.onSpans ?? (() => undefined),
      ...(this.#o.exporter ? { exporter: this.#o.exporter } : {}),
    });
  }

  /** The sampling decision for a request: its parent's, a forced trace, or the ratio. */
  #decide(req: TracedRequest, parent: ReturnType<typeof extractContext>): ReturnType<typeof decide> {
    const forced = req.headers[FORCE_TRACE_HEADER] !== undefined;
    return decide(parent, forced, this.#ratio, this.#limiter, this.#random);
  }

  /**
   * A CLIENT span for a request the app sent, or undefined when not sampled. `headers` are the ones
   * forwarded (undefined for a local reply). An unsampled request that arrived without any context gets an
   * unsampled traceparent, so the server's sidecar follows this decision instead of starting a trace alone.
   */
  startOutbound(req: TracedRequest, headers: HeaderMap | undefined, authority: string): HttpSpan | undefined {
    const pipeline = this.#pipeline;
    if (!pipeline) return undefined;
    const parent = extractContext(req.headers);
    const d = this.#decide(req, parent);
    if (!d.sampled) {
      if (parent === undefined && headers) headers.traceparent = unsampledTraceparent();
      return undefined;
    }
    const attrs = clientAttributes(req, authority, d.reason);
    return this.#start(pipeline, SPAN_KIND.CLIENT, req, attrs, parent, headers);
  }

  /** A SERVER span for a request a peer (or a client outside the mesh) sent to this pod's app. */
  startInbound(
    req: TracedRequest,
    headers: HeaderMap,
    info: { address: string; port: number; peerIdentity: string | undefined },
  ): HttpSpan | undefined {
    const pipeline = this.#pipeline;
    if (!pipeline) return undefined;
    const parent = extractContext(req.headers);
    const d = this.#decide(req, parent);
    if (!d.sampled) return undefined;
    const attrs = serverAttributes(req, info.address, info.port, 'http', d.reason);
    if (info.peerIdentity) attrs['sluice.caller.identity'] = info.peerIdentity;
    return this.#start(pipeline, SPAN_KIND.SERVER, req, attrs, parent, headers);
  }

  /**
   * A request arriving at a gateway: its SERVER span and, when it is forwarded (`upstream`: the headers and
   * authority sent on; undefined for a local reply), the CLIENT span of the call to the backend as its child,
   * whose context the backend receives. One sampling decision for both; unsampled requests are treated as
   * the sidecar's outbound ones.
   */
  startGateway(
    req: TracedRequest,
    info: { readonly port: number; readonly scheme: 'http' | 'https' },
    upstream: { headers: HeaderMap; authority: string } | undefined,
  ): RequestSpan | undefined {
    const pipeline = this.#pipeline;
    if (!pipeline) return undefined;
    const parent = extractContext(req.headers);
    const d = this.#decide(req, parent);
    if (!d.sampled) {
      if (parent === undefined && upstream) upstream.headers.traceparent = unsampledTraceparent();
      return undefined;
    }
    const address = req.socket?.localAddress ?? '';
    const serverAttrs = serverAttributes(req, address, info.port, info.scheme, d.reason);
    const server = this.#start(pipeline, SPAN_KIND.SERVER, req, serverAttrs, parent, undefined);
    if (!upstream) return server;
    const child: RemoteContext = {
      traceId: server.traceId,
      spanId: server.spanId,
      sampled: true,
      traceState: typeof parent === 'object' ? parent.traceState : undefined,
      format: 'w3c',
    };
    const clientAttrs = clientAttributes(req, upstream.authority, 'parent');
    const client = this.#start(pipeline, SPAN_KIND.CLIENT, req, clientAttrs, child, upstream.headers, false);
    return new GatewaySpan(server, client);
  }

  #start(
    pipeline: SpanPipeline,
    kind: SpanKindValue,
    req: TracedRequest,
    attrs: Attributes,
    parent: RemoteContext | 'deny' | undefined,
    headers: HeaderMap | undefined,
    parentIsRemote = true,
  ): HttpSpan {
    const own = this.#o.identity();
    if (own) attrs[kind === SPAN_KIND.CLIENT ? 'sluice.caller.identity' : 'sluice.callee.identity'] = own;
    const ua = one(req.headers['user-agent']);
    if (ua) attrs['user_agent.original'] = bounded(ua);
    if (req.headers['content-type']?.startsWith('application/grpc')) {
      const url = req.url ?? '';
      const [, service, rpc] = pathOnly(url).split('/');
      attrs['rpc.system'] = 'grpc';
      if (service) attrs['rpc.service'] = bounded(service, url);
      if (rpc) attrs['rpc.method'] = bounded(rpc, url);
    }
    // OTel's span name for a method it does not know is "HTTP".
    const method = req.method ?? 'GET';
    const name = otelMethod(method) === '_OTHER' ? 'HTTP' : method;
    const remote = typeof parent === 'object' ? parent : undefined;
    const record = new SpanRecord(
      pipeline.resource,
      {
        traceId: remote?.traceId ?? randomHex(16),
        spanId: randomHex(8),
        parentSpanId: remote?.spanId,
        parentIsRemote: remote !== undefined && parentIsRemote,
      },
      recordedTraceState(remote?.traceState),
      name,
      kind,
      attrs,
    );
    if (headers) {
      // B3 goes on in every form the caller sent, even when traceparent (sent with it by a sidecar) won.
      const b3 = req.headers.b3 !== undefined;
      const b3multi = req.headers['x-b3-traceid'] !== undefined;
      const formats =
        b3 || b3multi
          ? new Set<ContextFormat>([
              ...this.#formats,
              ...(b3 ? ['b3' as const] : []),
              ...(b3multi ? ['b3multi' as const] : []),
            ])
          : this.#formats;
      injectContext(
        headers,
        {
          traceId: record.traceId,
          spanId: record.spanId,
          sampled: true,
          traceState: remote?.traceState,
          parentSpanId: remote?.spanId,
        },
        formats,
      );
    }
    return new HttpSpan(record, pipeline);
  }

  /** Exports what is queued; for tests and a drain. Export failures are counted, not thrown. */
  flush(): Promise<void> {
    return this.#pipeline?.flush().catch(() => undefined) ?? Promise.resolve();
  }

  shutdown(): Promise<void> {
    const p = this.#pipeline;
    this.#pipeline = undefined;
    this.#pipelineKey = '';
    return p?.shutdown().catch(() => undefined) ?? Promise.resolve();
  }
}
