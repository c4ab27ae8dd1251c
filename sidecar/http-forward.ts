import type * as http from 'node:http';
import http2 from 'node:http2';
import type { IncomingHttpHeaders } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import type { Endpoint } from '../mesh-model/endpoints.ts';
import { endpointsFor, type ProxyView } from '../mesh-model/proxy-view.ts';
import type { PortRouting } from '../mesh-model/port-routing.ts';
import { servicePortKey, type MatchEntry, type Mirror, type RetryPolicy } from '../mesh-model/model.ts';
import type { HeaderMap } from '../mesh-model/header-edits.ts';
import {
  applyRequestEdits,
  applyResponseEdits,
  plan,
  type ForwardPlan,
  type RequestPlan,
} from '../mesh-model/request-plan.ts';
import { normalizeTarget, parseRequestTarget, type NormalizeOptions } from '../mesh-model/request-target.ts';
import {
  forwardHeaders,
  forwardResponseHeaders,
  NOT_PROCESSED_HEADER,
  RESET_BY_APP_HEADER,
  PEER_IDENTITY_HEADER,
} from './http-headers.ts';
import {
  declaredBodyBytes,
  isGrpc,
  localReply,
  type DownstreamRequest,
  type DownstreamResponse,
  cutResponse,
} from './local-reply.ts';
import type { Logger } from '../lib/json-log.ts';
import type { EndpointStats, LoadBalancer } from './load-balancer.ts';
import { CONNECT_TIMEOUT, isConnectFailure, whenConnected, type UpstreamPools } from './upstream-pools.ts';
import type { H1Controller, H1Handler } from './http1-client.ts';
import {
  classifyHttp1,
  classifyHttp2,
  DEFAULT_TRANSPORT_RETRIES,
  shouldRetry,
  whyNotRetried,
  type FailureKind,
} from './retry-rules.ts';
import type { ProxyMetrics, RequestFacts } from './metrics.ts';
import { countFlowingBytes, grpcStatusOf } from './body-bytes.ts';
import type { RequestSpan, RequestTracing } from './tracing/request-tracing.ts';
import { throttledLog } from './throttled-log.ts';

/**
 * The error's code (else its class); a stream cancelled because its session's
 * connection timed out says so.
 */
function upstreamErrorCode(err: Error): string {
  const { code, cause } = err as NodeJS.ErrnoException & { cause?: { code?: unknown } };
  if (cause?.code === CONNECT_TIMEOUT) return CONNECT_TIMEOUT;
  return code ?? (err.name === 'Error' ? 'EUNKNOWN' : err.name);
}

export interface ForwardDeps {
  pools: UpstreamPools;
  lb: LoadBalancer;
  metrics: ProxyMetrics;
  /** Numbers in [0, 1) for the weighted backend choice and mirror fractions; Math.random unless a test injects one. */
  random?: () => number;
  /** Where the details of upstream errors go (endpoint address, the TLS error); never into a reply body. */
  log?: Logger;
  /** Path normalisation options (the proxy's --merge-slashes, --escaped-slashes). */
  normalize?: NormalizeOptions;
  /** Spans and trace context (sidecar/tracing/); absent or disabled: requests are not looked at. */
  tracing?: RequestTracing;
  /** Extra attempts after a transport failure (retry-rules.ts; default DEFAULT_TRANSPORT_RETRIES). */
  transportRetries?: number;
}

/** Where a request goes after routing: a backend Service port's endpoints, or an address as-is. */
export interface Target {
  routeLabel: string;
  backendLabel: string;
  endpoints: readonly Endpoint[];
  /** undefined for destinations that are not Services (nothing to apply). */
  plan: ForwardPlan | undefined;
}

export type OutboundPlan =
  | { kind: 'reply'; code: number; message: string; cause: string; routeLabel: string; location?: string }
  | { kind: 'forward'; target: Target; request: UpstreamRequest };

// Labels per route entry and backend object (both live as long as their config): the same string for every
// request, so the metrics find their series without building or hashing a new one.
const routeLabels = new WeakMap<MatchEntry, string>();
const backendLabels = new WeakMap<object, string>();

function routeLabelOf(entry: MatchEntry | undefined): string {
  if (!entry) return 'none';
  let label = routeLabels.get(entry);
  if (label === undefined)
    routeLabels.set(entry, (label = `${entry.rule.route.namespace}/${entry.rule.route.name}`));
  return label;
}

/** Also the key of the backend's endpoints in the view (servicePortKey), found without building it again. */
function backendLabelOf(b: { namespace: string; name: string; port: number }): string {
  let label = backendLabels.get(b);
  if (label === undefined) backendLabels.set(b, (label = servicePortKey(b.namespace, b.name, b.port)));
  return label;
}

/**
 * The routing half of an outbound request: mesh-model's plan() for Service destinations, executed as far
 * as the request goes (endpoints looked up, headers copied and edited). `routing` is undefined for
 * destinations that are not Services (sent as-is).
 */
export function planOutbound(
  deps: Pick<ForwardDeps, 'random' | 'normalize'>,
  view: ProxyView,
  routing: PortRouting | undefined,
  destination: { address: string; port: number },
  req: DownstreamRequest,
): OutboundPlan {
  const url = req.url || '/';
  const h2 = req.httpVersionMajor === 2;
  const method = req.method ?? 'GET';
  const received = parseRequestTarget(url);
  if (!received.ok) return badTarget(received.reason);
  // An absolute-form target's authority wins over Host (RFC 9112 §3.2.2); the app gets it as Host.
  const authority =
    received.authority ??
    String(
      (h2 ? req.headers[':authority'] : req.headers.host) ?? `${destination.address}:${destination.port}`,
    );
  const headers = forwardHeaders(req.headers, !h2 && req.headers.upgrade !== undefined);
  if (!routing) {
    const n = normalizeTarget(url, deps.normalize);
    if (!n.ok) return badTarget(n.reason);
    if (!h2) headers.host = authority;
    return {
      kind: 'forward',
      target: asAddressed(destination),
      request: { method, path: n.target, authority, headers, h2 },
    };
  }
  const p = plan(
    routing,
    {
      method,
      path: received.path,
      query: received.query,
      target: received.authority === undefined ? url : undefined,
      // Apps talk plaintext HTTP to the sidecar: a redirect without a scheme keeps "http".
      scheme: 'http',
      authority,
      headers:
        received.authority === undefined || h2 ? req.headers : { ...req.headers, host: received.authority },
      normalize: deps.normalize,
    },
    deps.random ?? Math.random,
  );
  return outboundPlanOf(view, p, headers, h2);
}

/**
 * A mesh-model RequestPlan made executable: the reply as is, or the backend's endpoints looked up and the
 * request headers (already copied by forwardHeaders) edited. Shared by the sidecar and the gateway.
 */
export function outboundPlanOf(
  view: Pick<ProxyView, 'endpoints'>,
  p: RequestPlan,
  headers: HeaderMap,
  h2: boolean,
): OutboundPlan {
  const routeLabel = routeLabelOf(p.entry);
  if (p.kind === 'reply') {
    return {
      kind: 'reply',
      code: p.status,
      message: p.message,
      cause: p.cause,
      routeLabel,
      ...(p.location === undefined ? {} : { location: p.location }),
    };
  }
  const backendLabel = backendLabelOf(p.backend);
  const target: Target = {
    routeLabel,
    backendLabel,
    endpoints: view.endpoints.get(backendLabel) ?? [],
    plan: p,
  };
  applyRequestEdits(p, headers, h2);
  delete headers[PEER_IDENTITY_HEADER]; // not even a route filter may set it: only the server side does
  return {
    kind: 'forward',
    target,
    request: { method: p.method, path: p.path, authority: p.authority, headers, h2 },
  };
}

function badTarget(reason: string): OutboundPlan {
  return {
    kind: 'reply',
    code: 400,
    message: `bad request: ${reason}`,
    cause: 'bad_path',
    routeLabel: 'none',
  };
}

/** A destination that is not a Service: forwarded to the address the app dialled. */
function asAddressed(destination: { address: string; port: number }): Target {
  const ep: Endpoint = {
    address: destination.address,
    port: destination.port,
    ready: true,
    serving: true,
    terminating: false,
    identity: undefined,
    pod: undefined,
  };
  return { routeLabel: 'none', backendLabel: 'passthrough', endpoints: [ep], plan: undefined };
}

/** Routes and forwards one outbound HTTP request (HTTP/1.1 or HTTP/2). */
export function forwardOutbound(
  deps: ForwardDeps,
  view: ProxyView,
  routing: PortRouting | undefined,
  destination: { address: string; port: number },
  req: DownstreamRequest,
  res: DownstreamResponse,
): void {
  const started = performance.now();
  const outbound = planOutbound(deps, view, routing, destination, req);
  const span = deps.tracing?.startOutbound(
    req,
    outbound.kind === 'forward' ? outbound.request.headers : undefined,
    String(req.headers.host ?? req.headers[':authority'] ?? `${destination.address}:${destination.port}`),
  );
  executeOutbound(deps, 'outbound', view, outbound, req, res, started, span);
}

/**
 * Carries out an OutboundPlan: a local reply or redirect, or the request sent with retries and mirrors.
 * `span`: the request's CLIENT span when it is traced.
 */
export function executeOutbound(
  deps: ForwardDeps,
  direction: 'outbound' | 'gateway',
  view: Pick<ProxyView, 'endpoints'>,
  outbound: OutboundPlan,
  req: DownstreamRequest,
  res: DownstreamResponse,
  started: number,
  span?: RequestSpan,
): void {
  if (outbound.kind === 'reply') {
    span?.routeLabel(outbound.routeLabel);
    span?.end(outbound.code, outbound.location === undefined ? outbound.cause : 'redirect');
    const requestBytes = declaredBodyBytes(req);
    const { routeLabel, code } = outbound;
    if (outbound.location !== undefined) {
      deps.metrics.request(direction, routeLabel, 'redirect', code, started, req.method, {
        requestBytes,
        responseBytes: 0,
      });
      const out = res as http.ServerResponse;
      out.writeHead(code, { location: outbound.location, 'content-length': 0 });
      out.end();
      return;
    }
    deps.metrics.errors.inc([direction, outbound.cause]);
    const responseBytes = localReply(req, res, code, outbound.message);
    deps.metrics.request(direction, routeLabel, 'none', code, started, req.method, {
      requestBytes,
      responseBytes,
    });
    return;
  }
  const { target, request } = outbound;
  const p = target.plan;
  span?.route(p?.entry, target.backendLabel);
  if (p && p.mirrors.length > 0 && isBodyless(req)) mirror(deps, view, p.mirrors, request, span);
  sendWithRetries(new OutboundSend(deps, direction, target, request, req, res, started, span));
}

/**
 * The SendOptions of an outbound or gateway request: its outcome recorded by methods of one object, where
 * the options, three closures and their context were made per request.
 */
class OutboundSend implements SendOptions {
  readonly deps: ForwardDeps;
  readonly direction: 'outbound' | 'gateway';
  readonly target: Target;
  readonly request: UpstreamRequest;
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  readonly started: number;
  readonly span: RequestSpan | undefined;

  constructor(
    deps: ForwardDeps,
    direction: 'outbound' | 'gateway',
    target: Target,
    request: UpstreamRequest,
    req: DownstreamRequest,
    res: DownstreamResponse,
    started: number,
    span: RequestSpan | undefined,
  ) {
    this.deps = deps;
    this.direction = direction;
    this.target = target;
    this.request = request;
    this.req = req;
    this.res = res;
    this.started = started;
    this.span = span;
  }

  editResponse(headers: HeaderMap): void {
    const p = this.target.plan;
    if (p && p.responseEdits.length > 0) applyResponseEdits(p, headers);
  }

  finish(code: number, facts: RequestFacts): void {
    this.span?.end(code);
    this.#record(code, facts);
  }

  fail(code: number, message: string, cause: string): void {
    this.span?.end(code, cause);
    this.deps.metrics.errors.inc([this.direction, cause]);
    const responseBytes = localReply(this.req, this.res, code, message);
    this.#record(code, { requestBytes: declaredBodyBytes(this.req), responseBytes });
  }

  #record(code: number, facts: RequestFacts): void {
    const { target } = this;
    this.deps.metrics.request(
      this.direction,
      target.routeLabel,
      target.backendLabel,
      code,
      this.started,
      this.req.method,
      facts,
    );
  }
}

export interface UpstreamRequest {
  method: string;
  path: string;
  authority: string;
  headers: HeaderMap;
  h2: boolean;
}

/** Error codes of a TLS handshake whose peer certificate or SPIFFE ID was refused. */
const TRUST_FAILURE = /SPIFFE|CERT|TLS|SSL|SIGNATURE|ISSUER/;

const DEFAULT_RETRY_ATTEMPTS = 1;
const DEFAULT_RETRY_BACKOFF_MS = 25;

/** Request bodies up to this size (declared by Content-Length) are read before sending, to be replayable. */
const REPLAY_BODY_BYTES = 64 * 1024;

/** The declared length of a small body kept for a retry; undefined for none or a streamed one. */
function replayableLength(req: DownstreamRequest): number | undefined {
  if (isBodyless(req) || req.headers['transfer-encoding'] !== undefined) return undefined;
  const n = Number(req.headers['content-length']);
  return Number.isInteger(n) && n > 0 && n <= REPLAY_BODY_BYTES ? n : undefined;
}

/**
 * Streamed request bodies (gRPC and HTTP/2 ones without Content-Length, HTTP/1.1 chunked ones) are copied
 * as they flow upstream, up to REPLAY_BODY_BYTES: an attempt that failed before the app got anything
 * (REFUSED_STREAM, GOAWAY, x-sluice-not-processed, a stale keep-alive connection) after the body went out
 * can then be sent again once the body has ended.
 */
const streamedCopies = new WeakMap<Readable, { chunks: Buffer[]; bytes: number }>();

/** The copy of `req`'s body, started empty on first use. */
function copyOf(req: Readable): { chunks: Buffer[]; bytes: number } {
  let copy = streamedCopies.get(req);
  if (!copy) streamedCopies.set(req, (copy = { chunks: [], bytes: 0 }));
  return copy;
}

function keep(copy: { chunks: Buffer[]; bytes: number }, chunk: Buffer): void {
  copy.bytes += chunk.length;
  if (copy.bytes > REPLAY_BODY_BYTES) copy.chunks = [];
  else copy.chunks.push(chunk);
}

/** Starts copying `req`'s body as it flows (once: a retry finds it copying already). */
function keepCopying(req: Readable): void {
  if (streamedCopies.has(req)) return;
  const copy = copyOf(req);
  req.on('data', (chunk: Buffer) => keep(copy, chunk));
}

function pipeKeepingCopy(req: Readable, to: NodeJS.WritableStream): void {
  keepCopying(req);
  req.pipe(to);
}

/** The whole body of a streamed request that has ended, if it was small enough to be copied. */
function streamedBody(req: DownstreamRequest): Buffer | undefined {
  const copy = streamedCopies.get(req);
  if (!copy || copy.bytes > REPLAY_BODY_BYTES || !(req as Readable).readableEnded) return undefined;
  return Buffer.concat(copy.chunks);
}

/** The request can be sent again as it was: no body, a kept one, one nobody read, or a copied one. */
function replayable(req: DownstreamRequest, kept: Buffer | undefined): boolean {
  return (
    kept !== undefined ||
    isBodyless(req) ||
    !(req as Readable).readableDidRead ||
    streamedBody(req) !== undefined
  );
}

const APP_RESET = 'the app reset the request before answering';

/** The 502 of a reset request that was not sent again: what happened, where, and why not (whyNotRetried). */
const resetNotRetried = (what: string, where: string, why: string): string =>
  `${what} (${where}); not retried: ${why}`;

/**
 * Nothing follows the request's head: an HTTP/2 stream that ended with its headers, an HTTP/1.1 request
 * without Content-Length or Transfer-Encoding. Unlike isBodyless, an HTTP/2 GET with a body is not.
 */
function endedWithHeaders(req: DownstreamRequest): boolean {
  if (req.httpVersionMajor === 2)
    return (req as Partial<http2.Http2ServerRequest>).stream?.endAfterHeaders === true;
  return req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined;
}

function isBodyless(req: DownstreamRequest): boolean {
  if (req.httpVersionMajor === 2)
    return (
      req.method === 'GET' ||
      req.method === 'HEAD' ||
      (req as http2.Http2ServerRequest).stream.endAfterHeaders
    );
  return req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined;
}

/**
 * Sends to an endpoint picked by the load balancer. An attempt that failed before any response byte is
 * sent again, to another endpoint when there is one, as retry-rules.ts decides (ADR 0015): whatever the
 * method when no byte reached the app, idempotent bodyless requests on any reset; one extra attempt unless
 * configured. The rule's retry policy (response codes) is applied to requests without a body, which can be
 * replayed without buffering. Applies request and backendRequest timeouts.
 */
export interface SendOptions {
  readonly deps: ForwardDeps;
  readonly target: Pick<Target, 'endpoints' | 'backendLabel' | 'plan'>;
  readonly request: UpstreamRequest;
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  // The three methods are called as methods of the options: a class may implement them.
  /** Applied to the upstream response's headers before they are sent on. */
  editResponse(headers: HeaderMap): void;
  /** The response went out with this status; the peer that answered and the body sizes. */
  finish(code: number, facts: RequestFacts): void;
  /**
   * No upstream answered: reply locally with this status. `notProcessed`: every attempt failed before any
   * byte reached the app (the inbound sidecar tells the client sidecar so, with NOT_PROCESSED_HEADER).
   * `resetByApp`: an attempt was reset after the request went out, before any response byte (RESET_BY_APP_HEADER).
   */
  fail(code: number, message: string, cause: string, notProcessed?: boolean, resetByApp?: boolean): void;
  /** For the overflow metric; outbound unless said. */
  readonly direction?: 'inbound' | 'outbound' | 'gateway';
  /**
   * The request's span when it is traced: told each endpoint attempt. Always set (undefined when not
   * traced), so that traced and untraced requests give these options one shape (ADR 0017).
   */
  readonly span: RequestSpan | undefined;
}

export function sendWithRetries(options: SendOptions): void {
  new RetryingSend(options).start();
}

/**
 * One request's attempts (sendWithRetries): its state in one object and each attempt's in another, not
 * in closures and handler objects made per request and attempt (measurable garbage at thousands a second).
 */
class RetryingSend {
  readonly o: SendOptions;
  /** Endpoints already tried; made on the first retry (most requests take one attempt). */
  tried: Set<Endpoint> | undefined;
  readonly keptLength: number | undefined;
  /** The request body, once read, when it is small enough to keep for a retry. */
  kept: Buffer | undefined;
  readonly retry: RetryPolicy | undefined;
  retriesLeft: number;
  transportRetriesLeft: number;
  /** A retry may go back to an endpoint already tried (on a new connection) when no other is left. */
  mayReuseTried = false;
  /** Some attempt may have reached the app (a failure after writing, or any response). */
  reachedApp = false;
  /** An attempt was reset after the request (or part of it) went out, before any response byte. */
  resetSeen = false;
  /** Set while a transport retry looks for its endpoint: counted once it has one. */
  retryingAfter: FailureKind | undefined;
  /** The current attempt's request, to cancel: its client went (its response may be drained, see H1Exchange) or a timeout. */
  exchange: Cancellable | undefined;
  /** The current attempt: ends its in-flight count at the load balancer, if nothing else has. */
  current: Attempt | undefined;
  done = false;
  requestTimer: NodeJS.Timeout | undefined;
  attemptTimer: NodeJS.Timeout | undefined;
  lastError: string | undefined;
  /** The last failure's error code, and why it was not sent again (whyNotRetried), for the 502's body. */
  lastCode: string | undefined;
  notRetried: string | undefined;
  /** What the last endpoint's failure answers: 502, or 503 when no connection came up in time. */
  lastFailure: { code: number; cause: string } = UPSTREAM_FAILURE;
  overflowed = false;
  readonly started = performance.now();
  /** A connection failed the peer's certificate or identity check: a misconfiguration, answered 502. */
  untrusted = false;
  readonly requestBytes: () => number;

  constructor(o: SendOptions) {
    this.o = o;
    const { req, deps } = o;
    const p = o.target.plan;
    this.keptLength = replayableLength(req);
    this.retry = p?.retry && (isBodyless(req) || this.keptLength !== undefined) ? p.retry : undefined;
    this.retriesLeft = this.retry ? (this.retry.attempts ?? DEFAULT_RETRY_ATTEMPTS) : 0;
    this.transportRetriesLeft = deps.transportRetries ?? DEFAULT_TRANSPORT_RETRIES;
    // A bodyless request has nothing to count: no listener for it.
    this.requestBytes = isBodyless(req) ? noBytes : countFlowingBytes(req);
  }

  start(): void {
    const { req, res } = this.o;
    const ms = this.o.target.plan?.requestTimeoutMs;
    if (ms) this.requestTimer = setTimeout(timedOut, ms, this, ms, 'request');
    res.on('close', () => this.clientClosed());
    if (this.keptLength === undefined) return this.attempt();
    const chunks: Buffer[] = [];
    (req as Readable).on('data', (chunk: Buffer) => chunks.push(chunk));
    (req as Readable).once('end', () => {
      this.kept = Buffer.concat(chunks);
      if (!this.done) this.attempt();
    });
  }

  clientClosed(): void {
    if (this.done) return;
    const { deps, target, res } = this.o;
    // Nothing is answered and no metric is counted: the caller gave up (its timeout) or went away.
    // Under overload clients give up by the hundred: throttled like the overflow line.
    if (deps.log) {
      const ep = this.current?.ep;
      throttledLog(deps.log).warn('request cancelled by the client', target.backendLabel, {
        endpoint: ep === undefined ? null : `${ep.address}:${ep.port}`,
        attempts: this.tried?.size ?? (ep === undefined ? 0 : 1),
        responseStarted: (res as http.ServerResponse).headersSent,
        ms: Math.round(performance.now() - this.started),
      });
    }
    this.end();
    this.exchange?.cancel(true);
    this.current?.settle();
  }

  /** A 503 at once because a bound on held upstream requests is reached (`limit`: which one). */
  overflow(limit: 'upstream_connections' | 'held_requests', message: string): void {
    const { deps, target } = this.o;
    deps.metrics.overflows.inc([this.o.direction ?? 'outbound', limit]);
    if (deps.log)
      throttledLog(deps.log).warn('upstream overflow: 503', target.backendLabel, {
        cause: 'upstream_overflow',
      });
    this.o.fail(503, message, 'upstream_overflow');
  }

  end(): void {
    this.done = true;
    clearTimeout(this.requestTimer);
    clearTimeout(this.attemptTimer);
  }

  timedOut(ms: number, what: string): void {
    if (this.done) return;
    this.end();
    this.exchange?.cancel(false);
    this.current?.settle();
    this.o.fail(504, `upstream ${what} timeout after ${ms} ms (${this.o.target.backendLabel})`, 'timeout');
  }

  /**
   * Every attempt failed: 502 when one may have reached the app or met an endpoint it could not trust
   * (the cause then says which). When none did (refused, reset before the
   * request was written, a peer sidecar's NOT_PROCESSED_HEADER), no endpoint could take the request: the
   * same 503 as no endpoints at all (ADR 0015), or the connect timeout's own 503.
   */
  failAttempts(): void {
    const { target } = this.o;
    const { lastFailure, lastError, notRetried } = this;
    if (this.resetSeen && !this.untrusted && lastFailure.cause === 'upstream' && notRetried !== undefined) {
      // Said plainly: the caller learns the request may have been processed and why it was not sent again.
      const what = this.o.direction === 'inbound' ? APP_RESET : 'the connection was reset before an answer';
      const where = `${target.backendLabel}, ${this.lastCode ?? 'reset'}`;
      return this.o.fail(502, resetNotRetried(what, where, notRetried), 'upstream', false, true);
    }
    if (this.reachedApp || this.untrusted)
      return this.o.fail(
        lastFailure.code,
        lastError ?? 'upstream failed',
        lastFailure.cause,
        false,
        this.resetSeen,
      );
    if (lastFailure.cause === 'connect_timeout')
      return this.o.fail(503, lastError ?? 'upstream connect timeout', 'connect_timeout', true);
    this.o.fail(503, `no healthy endpoints for ${target.backendLabel}`, 'no_endpoint', true);
  }

  upstreamError(ep: Endpoint, code: string, failure: string, error: string): void {
    this.o.deps.log?.warn('upstream error', {
      backend: this.o.target.backendLabel,
      endpoint: `${ep.address}:${ep.port}`,
      code,
      failure,
      error,
    });
  }

  attempt(): void {
    const { deps, target, request, req } = this.o;
    const direction = this.o.direction ?? 'outbound';
    // The first attempt's endpoint is kept in `current` alone; the set is made once a second one comes.
    if (this.current !== undefined) this.tried ??= new Set([this.current.ep]);
    let ep = deps.lb.pick(target.endpoints, this.tried);
    if (!ep && this.mayReuseTried) {
      this.mayReuseTried = false;
      this.tried?.clear();
      ep = deps.lb.pick(target.endpoints);
    }
    if (ep && !deps.pools.mayHoldMore()) {
      this.end();
      return this.overflow(
        'held_requests',
        `upstream requests held at the limit, for ${target.backendLabel}`,
      );
    }
    if (ep && !deps.pools.hasCapacity(ep, request.h2 ? 'h2' : 'http1')) {
      // Every connection to this endpoint is busy and its queue full: another endpoint, or a 503 now.
      this.overflowed = true;
      (this.tried ??= new Set()).add(ep);
      return this.attempt();
    }
    if (!ep) {
      this.end();
      if (this.lastError) return this.failAttempts();
      if (this.overflowed)
        return this.overflow(
          'upstream_connections',
          `upstream connections and queue full for ${target.backendLabel}`,
        );
      const none = target.endpoints.length === 0 ? 'no endpoints' : 'no healthy endpoints';
      return this.o.fail(503, `${none} for ${target.backendLabel}`, 'no_endpoint');
    }
    this.tried?.add(ep);
    if (this.retryingAfter !== undefined) {
      deps.metrics.retries.inc([direction, this.retryingAfter]);
      deps.log?.info('upstream retry', {
        backend: target.backendLabel,
        endpoint: `${ep.address}:${ep.port}`,
        failure: this.retryingAfter,
      });
      this.retryingAfter = undefined;
    }
    this.o.span?.attempt(ep);
    const attempt = (this.current = new Attempt(this, ep));
    const backendMs = target.plan?.backendRequestTimeoutMs;
    clearTimeout(this.attemptTimer);
    if (backendMs) this.attemptTimer = setTimeout(timedOut, backendMs, this, backendMs, 'backendRequest');
    try {
      this.exchange = request.h2
        ? sendH2(deps, ep, request, req, attempt, this.kept)
        : sendH1(deps, ep, request, req, attempt, this.kept);
    } catch (err) {
      // Thrown before anything was sent (no identity loaded, a session already closing).
      attempt.error(err as Error, 'connect', true);
    }
  }
}

const UPSTREAM_FAILURE = { code: 502, cause: 'upstream' };
const CONNECT_TIMEOUT_FAILURE = { code: 503, cause: 'connect_timeout' };
const noBytes = (): number => 0;

/** A request or backendRequest timer (setTimeout's arguments, so no closure is made per request). */
function timedOut(send: RetryingSend, ms: number, what: string): void {
  send.timedOut(ms, what);
}

/** One attempt of a RetryingSend at one endpoint: its upstream handlers and load-balancer bookkeeping. */
class Attempt implements UpstreamHandlers, BodySink {
  readonly send: RetryingSend;
  readonly ep: Endpoint;
  readonly stats: EndpointStats;
  readonly t0 = performance.now();
  inFlight = true;
  status = 0;
  headers: IncomingHttpHeaders | undefined;
  body: UpstreamBody | undefined;

  constructor(send: RetryingSend, ep: Endpoint) {
    this.send = send;
    this.ep = ep;
    this.stats = send.o.deps.lb.start(ep);
  }

  settle(failed = false): void {
    if (!this.inFlight) return;
    this.inFlight = false;
    const { lb } = this.send.o.deps;
    if (failed) lb.failed(this.stats, this.ep.terminating);
    else lb.finish(this.stats, (performance.now() - this.t0) * 1e6);
  }

  /** Sends the request again when retry-rules.ts allows it after this failure; false when it does not. */
  retried(kind: FailureKind, replayable: boolean): boolean {
    const s = this.send;
    const { request, req } = s.o;
    this.settle(kind === 'connect' || kind === 'refused');
    if (kind === 'reset' || kind === 'other') s.reachedApp = true;
    const question = {
      kind,
      method: request.method,
      hasRetryPolicy: s.o.target.plan?.retry !== undefined,
      replayable,
      retriesLeft: s.transportRetriesLeft,
    };
    if (!shouldRetry(question)) {
      s.notRetried = kind === 'reset' ? whyNotRetried({ ...question, grpc: isGrpc(req) }) : undefined;
      return false;
    }
    s.transportRetriesLeft--;
    if (s.kept === undefined && (req as Readable).readableDidRead) s.kept = streamedBody(req);
    s.mayReuseTried = kind !== 'connect';
    clearTimeout(s.attemptTimer);
    s.retryingAfter = kind;
    s.attempt();
    return true;
  }

  /** What a peer sidecar said of its app, logged; whether the request went elsewhere for it. */
  peerSaid(status: number, code: string, kind: 'refused' | 'reset', what: string): boolean {
    const s = this.send;
    s.upstreamError(this.ep, code, kind, `peer sidecar answered ${status}: its app ${what}`);
    return this.retried(kind, replayable(s.o.req, s.kept));
  }

  response(status: number, headers: IncomingHttpHeaders, body: UpstreamBody): void {
    const s = this.send;
    const { ep } = this;
    const { target, req, res } = s.o;
    if (s.done) return body.destroy();
    const retry = s.retry;
    const retryStatus = retry !== undefined && s.retriesLeft > 0 && retry.codes.includes(status);
    // A peer sidecar (mTLS-verified, it strips the header from app responses) says its app never got
    // the request: its app was not listening (ADR 0015).
    if (ep.identity !== undefined && headers[NOT_PROCESSED_HEADER] !== undefined) {
      if (this.peerSaid(status, 'not_processed', 'refused', 'did not get the request')) return body.discard();
      body.discard();
      s.end();
      return s.failAttempts();
    } else if (ep.identity !== undefined && headers[RESET_BY_APP_HEADER] !== undefined) {
      // Its app reset the connection before answering: an idempotent request may go elsewhere.
      // Logged here too: when it is not retried, the peer's 502 goes to the caller as it is.
      if (this.peerSaid(status, 'reset_by_app', 'reset', 'reset the request before answering'))
        return body.discard();
      if (!retryStatus) {
        // This proxy's own 502: the peer's body names only the app's reset, not this retry decision.
        body.discard();
        s.end();
        const why = s.notRetried ?? 'no retry left';
        return s.o.fail(502, resetNotRetried(APP_RESET, target.backendLabel, why), 'upstream', false, true);
      }
    } else s.reachedApp = true;
    if (retryStatus) {
      s.retriesLeft--;
      body.discard();
      this.settle();
      clearTimeout(s.attemptTimer);
      s.tried?.clear();
      // The set is made here (empty) so the next attempt does not add this endpoint to it.
      s.tried ??= new Set();
      setTimeout(() => {
        if (!s.done) s.attempt();
      }, retry.backoffMs ?? DEFAULT_RETRY_BACKOFF_MS);
      return;
    }
    const out = forwardResponseHeaders(headers);
    s.o.editResponse(out);
    writeResponseHead(req, res, status, out);
    this.status = status;
    this.headers = headers;
    this.body = body;
    body.forward(res, this);
  }

  bodyDone(trailers: http.OutgoingHttpHeaders | undefined): void {
    const s = this.send;
    s.end();
    this.settle();
    const { span } = s.o;
    if (span) {
      const grpc = grpcStatusOf(this.headers!, trailers);
      if (grpc !== undefined) span.grpcStatus(grpc);
    }
    s.o.finish(this.status, {
      peerIdentity: this.ep.identity,
      requestBytes: s.requestBytes(),
      responseBytes: this.body!.bytes,
    });
  }

  bodyFailed(cause: string): void {
    const s = this.send;
    s.end();
    this.settle();
    // After the response started nothing is sent again: the caller sees its stream cut.
    s.o.deps.log?.warn('upstream response cut', {
      backend: s.o.target.backendLabel,
      endpoint: `${this.ep.address}:${this.ep.port}`,
      status: this.status,
      cause,
      bytes: this.body!.bytes,
    });
    cutResponse(s.o.res);
  }

  error(err: Error, kind: FailureKind, replayable: boolean): void {
    const s = this.send;
    if (s.done) return;
    const { backendLabel } = s.o.target;
    const code = upstreamErrorCode(err);
    s.lastCode = code;
    // A connection that never came up is "unavailable" (503, as Envoy answers a connect timeout).
    s.lastFailure = code === CONNECT_TIMEOUT ? CONNECT_TIMEOUT_FAILURE : UPSTREAM_FAILURE;
    s.lastError =
      code === CONNECT_TIMEOUT
        ? `upstream connect timeout (${backendLabel})`
        : `upstream ${code} (${backendLabel})`;
    s.upstreamError(this.ep, code, kind, err.message);
    if (kind === 'reset') s.resetSeen = true;
    if (TRUST_FAILURE.test(code)) s.untrusted = true;
    if (this.retried(kind, replayable)) return;
    s.end();
    s.failAttempts();
  }
}

/** The request says it takes trailers (`te: trailers`, which gRPC clients send), or is gRPC. */
function takesTrailers(req: DownstreamRequest): boolean {
  return req.headers.te !== undefined || isGrpc(req);
}

/**
 * Node's HTTP/2 compatibility response always asks for trailers (`waitForTrailers`): its last DATA frame never
 * carries END_STREAM, which follows in an empty frame sent from a setImmediate, a second socket write (and
 * TLS record, and read at the peer) for every response. A response with a content-length to a request that
 * does not take trailers (no `te: trailers`, which gRPC clients send) and is not gRPC is started on the
 * stream itself, without them: its head, body and end go out in one write. Only with a content-length: a
 * response cut later (cutResponse) then still reads as cut (too short) to its caller, where without trailers
 * to wait for the reset would follow an END_STREAM. Headers the compatibility layer would drop or refuse
 * (a route filter's) fail that, and take its path as before.
 */
function writeResponseHead(
  req: DownstreamRequest,
  res: DownstreamResponse,
  status: number,
  headers: HeaderMap,
): void {
  if (
    res instanceof http2.Http2ServerResponse &&
    headers['content-length'] !== undefined &&
    !takesTrailers(req)
  ) {
    headers[':status'] = String(status);
    try {
      return res.stream.respond(headers);
    } catch {
      delete headers[':status'];
    }
  }
  (res as http.ServerResponse).writeHead(status, headers as http.OutgoingHttpHeaders);
}

/**
 * An upstream response's body, handed to the response handler: forwarded, discarded or given up.
 * HTTP/1.1 bodies come straight from the pool's handler callbacks (no stream in between), HTTP/2 ones
 * from the client stream.
 */
interface UpstreamBody {
  /**
   * Writes the body to `res` as it arrives, honouring `res`'s back-pressure, then its trailers, and ends
   * `res`: `sink.bodyDone` then, `sink.bodyFailed` if the upstream fails first (`res` is left to the caller), with what ended
   * it (an error code; for HTTP/2 the stream's RST code too: INTERNAL_ERROR from a peer sidecar is its own
   * upstream's cut, CANCEL a lost connection).
   */
  forward(res: DownstreamResponse, sink: BodySink): void;
  /** Read to its end and dropped: the connection serves the next request. */
  discard(): void;
  /** Given up before its end: the connection is closed. */
  destroy(): void;
  /** Body bytes forwarded so far. */
  readonly bytes: number;
}

/** Told how a forwarded body ended (UpstreamBody.forward). */
interface BodySink {
  bodyDone(trailers: http.OutgoingHttpHeaders | undefined): void;
  bodyFailed(cause: string): void;
}

interface UpstreamHandlers {
  response(status: number, headers: IncomingHttpHeaders, body: UpstreamBody): void;
  /**
   * No response byte arrived. `kind`: how far the request got (retry-rules.ts); `replayable`: it can be
   * sent again as it was (no body, or a body nobody has read yet).
   */
  error(err: Error, kind: FailureKind, replayable: boolean): void;
}

function trailersOf(t: IncomingHttpHeaders | undefined): http.OutgoingHttpHeaders | undefined {
  if (!t) return undefined;
  for (const _ in t) return t;
  return undefined;
}

type BodyState = 'waiting' | 'forwarding' | 'discarding' | 'gone';

/**
 * The body of an HTTP/1.1 response as the pool's handler callbacks deliver it. Chunks are written to the
 * downstream response directly; the last chunk of a read is held for a microtask so that a response
 * whose body ends in the same read goes out with res.end(chunk): head, body and end in one write.
 */
class DispatchBody implements UpstreamBody {
  bytes = 0;
  #state: BodyState = 'waiting';
  readonly #controller: H1Controller;
  /** Whether the pool is done with the response (ended or failed): nothing to abort. */
  #settled = false;
  /** Chunks that came before the handler chose what to do (normally none). */
  #early: Buffer[] | undefined;
  #earlyEnd: { trailers: IncomingHttpHeaders | undefined } | undefined;
  #earlyError: Error | undefined;
  #res: http.ServerResponse | undefined;
  #held: Buffer | undefined;
  #sink: BodySink | undefined;
  #paused = false;
  /** Dropped for a client that went: given up past ORPHAN_BYTES. */
  #orphaned = false;
  #dropped = 0;

  constructor(controller: H1Controller) {
    this.#controller = controller;
  }

  forward(res: DownstreamResponse, sink: BodySink): void {
    if (this.#state !== 'waiting') return;
    this.#state = 'forwarding';
    this.#res = res as http.ServerResponse;
    this.#sink = sink;
    this.#replay();
  }

  discard(): void {
    if (this.#state !== 'waiting') return;
    this.#state = 'discarding';
    this.#early = undefined;
  }

  /**
   * The client went while the body was being forwarded: the rest is read and dropped, so the connection
   * survives (see H1Exchange.cancel). False when it is too late for that (already done or given up).
   */
  orphan(): boolean {
    if (this.#settled || this.#state === 'gone') return false;
    this.#state = 'discarding';
    this.#orphaned = true;
    this.#early = undefined;
    this.#held = undefined;
    if (this.#paused) {
      this.#paused = false;
      this.#controller.resume();
    }
    return true;
  }

  destroy(): void {
    if (this.#state === 'gone') return;
    this.#state = 'gone';
    this.#early = undefined;
    this.#held = undefined;
    // Given up before its end (client gone, timeout, error): the connection goes too, as pausing its
    // parser for a reader that never comes would hold it forever.
    if (!this.#settled) this.#controller.abort(new Error('response discarded'));
  }

  #replay(): void {
    const early = this.#early;
    this.#early = undefined;
    if (early) for (const chunk of early) this.data(chunk);
    if (this.#earlyError) this.error(this.#earlyError);
    else if (this.#earlyEnd) this.end(this.#earlyEnd.trailers);
  }

  data(chunk: Buffer): void {
    switch (this.#state) {
      case 'forwarding':
        this.bytes += chunk.length;
        if (this.#held) this.#write(this.#held);
        else queueMicrotask(this.#flush);
        this.#held = chunk;
        return;
      case 'waiting':
        (this.#early ??= []).push(chunk);
        return;
      case 'discarding':
        this.#dropped += chunk.length;
        if (this.#orphaned && this.#dropped > ORPHAN_BYTES) this.destroy();
        return;
      default:
    }
  }

  readonly #flush = (): void => {
    const held = this.#held;
    if (!held || this.#state !== 'forwarding') return;
    this.#held = undefined;
    this.#write(held);
  };

  #write(chunk: Buffer): void {
    const res = this.#res!;
    if (res.write(chunk) || this.#paused || res.destroyed) return;
    this.#paused = true;
    this.#controller.pause();
    res.once('drain', () => {
      this.#paused = false;
      this.#controller.resume();
    });
  }

  end(trailers: IncomingHttpHeaders | undefined): void {
    this.#settled = true;
    switch (this.#state) {
      case 'forwarding': {
        this.#state = 'gone';
        const res = this.#res!;
        const t = trailersOf(trailers);
        if (t) res.addTrailers(t);
        const held = this.#held;
        this.#held = undefined;
        if (held) res.end(held);
        else res.end();
        this.#sink!.bodyDone(t);
        return;
      }
      case 'waiting':
        this.#earlyEnd = { trailers };
        return;
      default:
    }
  }

  error(err: Error): void {
    this.#settled = true;
    switch (this.#state) {
      case 'forwarding':
        this.#state = 'gone';
        this.#held = undefined;
        this.#sink!.bodyFailed(upstreamErrorCode(err));
        return;
      case 'waiting':
        this.#earlyError = err;
        return;
      default:
    }
  }
}

function sendH1(
  deps: ForwardDeps,
  ep: Endpoint,
  r: UpstreamRequest,
  req: DownstreamRequest,
  h: UpstreamHandlers,
  kept?: Buffer,
): Cancellable {
  // The client does not send Expect: the downstream server has already answered 100-continue if it was asked.
  const bodyless = kept === undefined && (isBodyless(req) || (req as Readable).readableEnded);
  const pool = deps.pools.pool(ep); // throws before anything is counted when no identity is loaded
  const exchange = new H1Exchange(deps.pools, ep, req, h, kept, bodyless);
  exchange.controller = pool.request(
    { path: r.path, method: r.method, headers: r.headers, body: kept ?? (bodyless ? null : req) },
    exchange,
  );
  return exchange;
}

/** An attempt's upstream request, cancelled when its client went (`clientGone`) or it timed out. */
interface Cancellable {
  cancel(clientGone: boolean): void;
}

/** One upstream HTTP/1.1 request (sendH1) as the pool's handler (http1-client.ts): its state in one object. */
class H1Exchange implements H1Handler, Cancellable {
  // Which connection it went out on, for retry-rules.ts's classifyHttp1.
  reused: boolean | undefined = undefined;
  writtenAt: number | undefined = undefined;
  controller: H1Controller | undefined;
  readonly #pools: UpstreamPools;
  readonly #ep: Endpoint;
  readonly #req: DownstreamRequest;
  readonly #h: UpstreamHandlers;
  readonly #kept: Buffer | undefined;
  readonly #bodyless: boolean;
  #body: DispatchBody | undefined;
  #cancelled = false;
  #settled = false;
  // Holds a place in the endpoint's queue bound until the pool lets go of it.
  #counted = true;

  constructor(
    pools: UpstreamPools,
    ep: Endpoint,
    req: DownstreamRequest,
    h: UpstreamHandlers,
    kept: Buffer | undefined,
    bodyless: boolean,
  ) {
    this.#pools = pools;
    this.#ep = ep;
    this.#req = req;
    this.#h = h;
    this.#kept = kept;
    this.#bodyless = bodyless;
    pools.countOutstanding(ep, 1);
  }

  letGo(): void {
    if (this.#counted) this.#pools.countOutstanding(this.#ep, -1);
    this.#counted = false;
  }

  onRequestStart(_c: H1Controller, reused: boolean): void {
    this.reused = reused;
    this.writtenAt = performance.now();
    // A streamed body small enough is copied as it goes, for a retry (see streamedCopies).
    if (
      this.#kept === undefined &&
      !this.#bodyless &&
      !(Number(this.#req.headers['content-length']) > REPLAY_BODY_BYTES)
    )
      keepCopying(this.#req);
  }

  onResponseStart(c: H1Controller, status: number, responseHeaders: IncomingHttpHeaders): void {
    const body = (this.#body = new DispatchBody(c));
    // Its client went after it was sent: read and dropped (see cancel).
    if (this.#cancelled) return void body.orphan();
    this.#h.response(status, responseHeaders, body);
  }

  onResponseData(_c: H1Controller, chunk: Buffer): void {
    this.#body!.data(chunk);
  }

  onResponseEnd(_c: H1Controller, trailers: IncomingHttpHeaders | undefined): void {
    this.#settled = true;
    this.letGo();
    this.#body!.end(trailers);
  }

  onResponseError(_c: H1Controller, err: Error): void {
    this.#settled = true;
    this.letGo();
    if (this.#cancelled && this.#body === undefined) return;
    if (this.#body) return this.#body.error(err);
    const req = this.#req;
    // Read and not copied in full: it cannot be sent again.
    const bodyRead =
      this.#kept === undefined &&
      !this.#bodyless &&
      (req as Readable).readableDidRead &&
      streamedBody(req) === undefined;
    const kind = classifyHttp1({
      code: (err as NodeJS.ErrnoException).code ?? '',
      connectFailed: isConnectFailure(err),
      reused: this.reused,
      sinceWrittenMs: this.writtenAt === undefined ? undefined : performance.now() - this.writtenAt,
      bodyRead,
    });
    this.#h.error(err, kind, !bodyRead);
  }

  cancel(clientGone: boolean): void {
    if (this.#cancelled || this.#settled) return;
    this.#cancelled = true;
    const controller = this.controller!;
    // Still queued: the pool drops it, and no byte of it is sent.
    if (this.writtenAt === undefined) return controller.abort(new Error('request cancelled while queued'));
    // Sent, and its client gone (gave up, timed out on its side): HTTP/1.1 can only cancel by closing the
    // connection, and under overload, when clients give up by the hundred, that turned into a storm of new
    // mTLS connections deepening the backlog (the app has the request anyway). The response of a request
    // sent in full is read and dropped instead, for up to ORPHAN_MS and ORPHAN_BYTES; a request still
    // uploading its body, a longer or bigger response, or our own timeout end the connection as before.
    const sentInFull = this.#kept !== undefined || this.#bodyless || (this.#req as Readable).readableEnded;
    const body = this.#body;
    if (clientGone && sentInFull && (body === undefined || body.orphan())) {
      setTimeout(() => {
        if (!this.#settled) controller.abort(new Error('request cancelled'));
      }, ORPHAN_MS).unref();
      return;
    }
    controller.abort(new Error('request cancelled'));
  }
}

/** How long the response of a request whose client went may take to be read and dropped (see H1Exchange.cancel). */
const ORPHAN_MS = 30_000;
/** And how many body bytes are dropped at most before the connection is closed instead. */
const ORPHAN_BYTES = 1024 * 1024;

function sendH2(
  deps: ForwardDeps,
  ep: Endpoint,
  r: UpstreamRequest,
  req: DownstreamRequest,
  h: UpstreamHandlers,
  kept?: Buffer,
): Cancellable {
  const session = deps.pools.session(ep);
  // The request's headers are its own copy (forwardHeaders): the pseudo-headers go in it, set again by each
  // attempt (the scheme is the endpoint's), rather than in one more copy per request (Node copies it anyway).
  const headers = r.headers as http2.OutgoingHttpHeaders;
  headers[':method'] = r.method;
  headers[':path'] = r.path;
  headers[':authority'] = r.authority;
  headers[':scheme'] = ep.identity ? 'https' : 'http';
  const stream = session.request(headers) as ExchangeStream;
  deps.pools.streamOpened(session);
  const exchange = new H2Exchange(deps.pools, session, stream, req, h, kept);
  stream.sluice = exchange;
  stream.on('response', h2Response);
  stream.on('trailers', h2Trailers);
  stream.on('error', h2Error);
  // A session that ends without an error (the peer closed its connection, or destroyed its session)
  // closes its open streams with no 'error' event: without this, such a request would wait for its
  // caller to give up.
  stream.on('close', h2Close);
  // One 'connect' listener per session however many requests wait for it (not one per request).
  if (session.connecting) whenConnected(session, () => exchange.start());
  else exchange.start();
  return exchange;
}

type ExchangeStream = http2.ClientHttp2Stream & { sluice: H2Exchange };
type H2ResponseHeaders = http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader;

// The listeners of every upstream HTTP/2 stream: one function each, the stream's state in its H2Exchange.
function h2Response(this: ExchangeStream, headers: H2ResponseHeaders): void {
  this.sluice.response(headers);
}
function h2Trailers(this: ExchangeStream, trailers: http2.IncomingHttpHeaders): void {
  this.sluice.trailers = trailers;
}
function h2Error(this: ExchangeStream, err: NodeJS.ErrnoException): void {
  this.sluice.error(err);
}
function h2Close(this: ExchangeStream): void {
  this.sluice.closed();
}
function h2Data(this: ExchangeStream, chunk: Buffer): void {
  this.sluice.data(chunk);
}
function h2End(this: ExchangeStream): void {
  this.sluice.end();
}

/**
 * One upstream HTTP/2 stream (sendH2) and its response body: the state in one object and the listeners
 * shared by every stream (see above), where about a dozen closures and listeners were made per stream.
 * The body's chunks are written to the downstream response as they come, pausing the stream while the
 * response is full.
 */
class H2Exchange implements UpstreamBody, Cancellable {
  bytes = 0;
  readonly #pools: UpstreamPools;
  readonly #session: http2.ClientHttp2Session;
  readonly #stream: ExchangeStream;
  readonly #req: DownstreamRequest;
  readonly #h: UpstreamHandlers;
  readonly #kept: Buffer | undefined;
  /** The request went out (the session was connected). */
  #sent = false;
  /** A response or an error was handed on: the stream's end concerns the handlers no more. */
  #settled = false;
  trailers: http2.IncomingHttpHeaders | undefined;
  #res: http.ServerResponse | undefined;
  #sink: BodySink | undefined;
  #waiting = false;
  /**
   * Body bytes still to come by the response's content-length, when its response takes no trailers: the
   * chunk that completes it ends the downstream response at once (END_STREAM on its DATA frame, see
   * writeResponseHead) rather than when the upstream's END_STREAM comes, often in a read of its own.
   */
  #remaining = -1;
  /** The downstream response was ended that way. */
  #ended = false;

  constructor(
    pools: UpstreamPools,
    session: http2.ClientHttp2Session,
    stream: ExchangeStream,
    req: DownstreamRequest,
    h: UpstreamHandlers,
    kept: Buffer | undefined,
  ) {
    this.#pools = pools;
    this.#session = session;
    this.#stream = stream;
    this.#req = req;
    this.#h = h;
    this.#kept = kept;
  }

  start(): void {
    const stream = this.#stream;
    if (stream.destroyed) return;
    this.#sent = true;
    if (this.#kept) stream.end(this.#kept);
    // No body (or a retry of a bodyless request, which finds the downstream request already ended): no
    // pipe, no copy.
    else if (endedWithHeaders(this.#req) || (this.#req as Readable).readableEnded) stream.end();
    else pipeKeepingCopy(this.#req, stream);
  }

  response(headers: H2ResponseHeaders): void {
    this.#settled = true;
    const length = Number(headers['content-length']);
    if (length > 0 && !takesTrailers(this.#req)) this.#remaining = length;
    this.#h.response(headers[':status'] ?? 502, headers, this);
  }

  #failed(err: Error): void {
    this.#settled = true;
    const kind = classifyHttp2({
      code: (err as NodeJS.ErrnoException).code ?? '',
      rstCode: this.#stream.rstCode,
      started: this.#sent,
    });
    this.#h.error(err, kind, replayable(this.#req, this.#kept));
  }

  error(err: NodeJS.ErrnoException): void {
    if (this.#ended) return;
    // Once the body is forwarded the response has started: nothing can be sent again, the caller sees it cut.
    if (this.#sink) return this.#sink.bodyFailed(`${err.code ?? 'error'}, rst ${this.#stream.rstCode}`);
    this.#failed(err);
  }

  closed(): void {
    this.#pools.streamClosed(this.#session);
    if (this.#settled) return;
    const err = Object.assign(new Error(`stream closed without a response (rst ${this.#stream.rstCode})`), {
      code: 'ERR_HTTP2_STREAM_CLOSED',
    });
    this.#failed(err);
  }

  forward(res: DownstreamResponse, sink: BodySink): void {
    this.#res = res as http.ServerResponse;
    this.#sink = sink;
    this.#stream.on('data', h2Data);
    this.#stream.on('end', h2End);
  }

  data(chunk: Buffer): void {
    if (this.#ended) return; // past its content-length: nghttp2 resets such a stream
    this.bytes += chunk.length;
    const out = this.#res!;
    if (this.#remaining > 0 && (this.#remaining -= chunk.length) === 0) {
      // Done for the caller, whose stream may close before the upstream's END_STREAM comes: nothing is
      // left to cancel then.
      this.#ended = true;
      out.end(chunk);
      return this.#sink!.bodyDone(undefined);
    }
    if (out.write(chunk) || this.#waiting || out.destroyed) return;
    // Full: no more data until it drains (a response that closes instead cancels the stream).
    this.#waiting = true;
    this.#stream.pause();
    out.once('drain', () => {
      this.#waiting = false;
      this.#stream.resume();
    });
  }

  end(): void {
    if (this.#ended) return;
    const stream = this.#stream;
    const res = this.#res!;
    // A connection lost mid-body also ends the stream, closed with a code (CANCEL) and no END_STREAM:
    // the response is cut, not complete.
    if (stream.closed && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR)
      return this.#sink!.bodyFailed(`closed, rst ${stream.rstCode}`);
    const trailers = trailersOf(this.trailers);
    if (trailers) res.addTrailers(trailers);
    res.end();
    this.#sink!.bodyDone(trailers);
  }

  discard(): void {
    this.#stream.resume();
  }

  cancel(): void {
    this.#stream.close(http2.constants.NGHTTP2_CANCEL);
  }

  destroy(): void {
    this.#stream.destroy();
  }
}

/**
 * RequestMirror: copies of the request go to the mirror backends (each at its configured fraction) and
 * their responses are discarded. Only bodyless requests are mirrored: replaying a body would mean
 * buffering it or slowing the real request to the mirror's pace.
 */
function mirror(
  deps: ForwardDeps,
  view: Pick<ProxyView, 'endpoints'>,
  mirrors: readonly Mirror[],
  request: UpstreamRequest,
  span: RequestSpan | undefined,
): void {
  for (const m of mirrors) {
    if (m.backend.invalid || (deps.random ?? Math.random)() >= m.fraction) continue;
    const ep = deps.lb.pick(endpointsFor(view, m.backend.namespace, m.backend.name, m.backend.port));
    if (!ep) continue;
    span?.mirror(`${m.backend.namespace}/${m.backend.name}:${m.backend.port}`);
    const ignore: UpstreamHandlers = {
      response: (_s, _h, body) => body.discard(),
      error: () => undefined,
    };
    const ended = Object.assign(new PassThrough(), { headers: {}, httpVersionMajor: request.h2 ? 2 : 1 });
    ended.end();
    ended.resume();
    try {
      if (request.h2) sendH2(deps, ep, request, ended as unknown as DownstreamRequest, ignore);
      else sendH1(deps, ep, request, ended as unknown as DownstreamRequest, ignore);
    } catch {
      // a mirror never affects the real request
    }
  }
}
