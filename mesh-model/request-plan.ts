// One request plan: what the mesh does with one request, decided once. The sidecar executes it,
// `route explain` and `route test` print it. See docs/adr/0008-one-request-plan.md.
import type { BackendTarget, CompiledRule, HeaderEdit, MatchEntry, Mirror, RetryPolicy } from './model.ts';
import type { PortRouting } from './port-routing.ts';
import { decide } from './decide.ts';
import { applyHeaderEdit, type HeaderMap } from './header-edits.ts';
import { modifyPath, pickBackend, redirectLocation } from './request-filters.ts';
import type { RequestHeaders } from './request-match.ts';
import { normalizePath, type NormalizeOptions } from './request-target.ts';

export interface PlanRequest {
  method: string;
  /**
   * Without the query, as received: plan() normalises it (request-target.ts) before matching, and the
   * normalised path is the one forwarded. An absolute-form target is split by the caller
   * (parseRequestTarget), its authority passed as `authority`.
   */
  path: string;
  /** Without the "?". */
  query: string;
  /** The request target as received (path?query), if at hand: reused when the path is not rewritten. */
  target?: string;
  /**
   * The scheme the request arrived with. The sidecar always passes "http": apps talk plaintext to it
   * (TLS from the app is opaque TCP, never routed). A redirect without a scheme keeps this one.
   */
  scheme: string;
  /** Host header (HTTP/1.1) or :authority (HTTP/2) as received. */
  authority: string;
  /** Lowercased names, as received; used for matching only (the plan never copies them). */
  headers: RequestHeaders;
  /** How the path is normalised (the proxy's --merge-slashes, --escaped-slashes); defaults when absent. */
  normalize?: NormalizeOptions | undefined;
}

export type ReplyCause = 'bad_path' | 'no_route' | 'invalid_rule' | 'invalid_backend' | 'redirect';

export interface LocalReplyPlan {
  kind: 'reply';
  status: number;
  cause: ReplyCause;
  /** Why, in a few words. */
  reason: string;
  /** The reply body: the reason with where it comes from; for a redirect, "redirect to LOCATION". */
  message: string;
  location: string | undefined;
  /** The matched rule, if any. */
  entry: MatchEntry | undefined;
}

export interface ServicePort {
  namespace: string;
  name: string;
  port: number;
}

export interface ForwardPlan {
  kind: 'forward';
  /** undefined: no route applies, the request goes to the Service it was sent to. */
  entry: MatchEntry | undefined;
  /** The Service port whose endpoints receive the request. */
  backend: ServicePort;
  method: string;
  /** Path sent upstream, query included. */
  path: string;
  /** Host / :authority sent upstream: URLRewrite hostname or a Host set by a header modifier wins. */
  authority: string;
  /** Request header edits, applied in order (rule, then backend); see applyRequestEdits. */
  requestEdits: readonly HeaderEdit[];
  /** Response header edits, applied in order (rule, then backend). */
  responseEdits: readonly HeaderEdit[];
  /** Every mirror of the rule with its fraction; the executor rolls the dice per mirror. */
  mirrors: readonly Mirror[];
  /** Milliseconds; undefined: no timeout. */
  requestTimeoutMs: number | undefined;
  backendRequestTimeoutMs: number | undefined;
  retry: RetryPolicy | undefined;
}

export type RequestPlan = LocalReplyPlan | ForwardPlan;

/** A number in [0, 1) or a source of them; only called when more than one backend can be chosen. */
export type Random = number | (() => number);

const NO_EDITS: readonly HeaderEdit[] = [];
const NO_MIRRORS: readonly Mirror[] = [];

/** Per rule + backend facts that do not depend on the request, computed once. */
interface BackendFacts {
  requestEdits: readonly HeaderEdit[];
  responseEdits: readonly HeaderEdit[];
  /** The authority the filters force (last one wins), or undefined to keep the client's. */
  authority: string | undefined;
}

const factsCache = new WeakMap<object, BackendFacts>();

/** The Host value an edit forces: set and add both replace (Host is single-valued); remove is ignored. */
function hostOf(edit: HeaderEdit | undefined): string | undefined {
  if (!edit) return undefined;
  let host: string | undefined;
  for (const [name, value] of edit.set) if (name === 'host') host = value;
  for (const [name, value] of edit.add) if (name === 'host') host = value;
  return host;
}

function factsFor(rule: CompiledRule, backend: BackendTarget | undefined): BackendFacts {
  const key = backend ?? rule;
  let facts = factsCache.get(key);
  if (facts) return facts;
  const req = [rule.requestHeaders, backend?.requestHeaders].filter((e): e is HeaderEdit => !!e);
  const res = [rule.responseHeaders, backend?.responseHeaders].filter((e): e is HeaderEdit => !!e);
  // Order: rule RequestHeaderModifier, rule URLRewrite hostname, then the backend's RequestHeaderModifier.
  const authority = hostOf(backend?.requestHeaders) ?? rule.rewrite?.hostname ?? hostOf(rule.requestHeaders);
  facts = {
    requestEdits: req.length === 0 ? NO_EDITS : req,
    responseEdits: res.length === 0 ? NO_EDITS : res,
    authority,
  };
  factsCache.set(key, facts);
  return facts;
}

function withQuery(path: string, query: string): string {
  return query === '' ? path : `${path}?${query}`;
}

/**
 * The forward plan for a matched rule and one of its backends. `backend` undefined: only the rule-level
 * filters (explain uses this when several backends can be chosen).
 */
export function forwardThrough(
  entry: MatchEntry,
  backend: BackendTarget | undefined,
  req: PlanRequest,
): ForwardPlan {
  const rule = entry.rule;
  const facts = factsFor(rule, backend);
  const rewrite = rule.rewrite?.path;
  return {
    kind: 'forward',
    entry,
    backend: backend ?? { namespace: '', name: '', port: 0 },
    method: req.method,
    path: rewrite
      ? withQuery(modifyPath(rewrite, entry, req.path), req.query)
      : (req.target ?? withQuery(req.path, req.query)),
    authority: facts.authority ?? req.authority,
    requestEdits: facts.requestEdits,
    responseEdits: facts.responseEdits,
    mirrors: rule.mirrors.length === 0 ? NO_MIRRORS : rule.mirrors,
    requestTimeoutMs: rule.requestTimeoutMs || undefined,
    backendRequestTimeoutMs: rule.backendRequestTimeoutMs || undefined,
    retry: rule.retry,
  };
}

const ownPorts = new WeakMap<PortRouting, ServicePort>();

function ownServicePort(routing: PortRouting): ServicePort {
  let port = ownPorts.get(routing);
  if (!port) {
    port = { namespace: routing.service.namespace, name: routing.service.name, port: routing.port };
    ownPorts.set(routing, port);
  }
  return port;
}

/** Backends with a non-zero weight: more than one means the choice depends on the random number. */
export function liveBackends(rule: CompiledRule): BackendTarget[] {
  return rule.backends.filter((b) => b.weight > 0);
}

/**
 * Plans one request to a Service port. Pure: `random` decides the weighted backend choice.
 * The sidecar calls this per request, so the common paths allocate only the returned plan.
 */
export function plan(routing: PortRouting, received: PlanRequest, random: Random): RequestPlan {
  const normalized = normalizePath(received.path, received.normalize);
  if (!normalized.ok) {
    return {
      kind: 'reply',
      status: 400,
      cause: 'bad_path',
      reason: normalized.reason,
      message: `bad request: ${normalized.reason}`,
      location: undefined,
      entry: undefined,
    };
  }
  const req =
    normalized.path === received.path ? received : { ...received, path: normalized.path, target: undefined };
  const decision = decide(routing, req);
  if (decision.action === 'passthrough') {
    return {
      kind: 'forward',
      entry: undefined,
      backend: ownServicePort(routing),
      method: req.method,
      path: req.target ?? withQuery(req.path, req.query),
      authority: req.authority,
      requestEdits: NO_EDITS,
      responseEdits: NO_EDITS,
      mirrors: NO_MIRRORS,
      requestTimeoutMs: undefined,
      backendRequestTimeoutMs: undefined,
      retry: undefined,
    };
  }
  const entry = decision.entry;
  if (decision.action === 'reject') {
    const rule = entry?.rule;
    const message = rule
      ? `route ${rule.route.namespace}/${rule.route.name} rule ${rule.index}: ${decision.reason}`
      : `${decision.reason} (${req.method} ${req.path})`;
    const cause = decision.status === 404 ? 'no_route' : 'invalid_rule';
    return {
      kind: 'reply',
      status: decision.status,
      cause,
      reason: decision.reason,
      message,
      location: undefined,
      entry,
    };
  }
  const rule = decision.entry.rule;
  if (decision.action === 'redirect') {
    const location = redirectLocation(rule.redirect!, decision.entry, {
      scheme: req.scheme,
      host: req.authority,
      path: req.path,
      query: req.query,
      port: routing.port,
    });
    return {
      kind: 'reply',
      status: decision.status,
      cause: 'redirect',
      reason: 'RequestRedirect',
      message: `redirect to ${location}`,
      location,
      entry: decision.entry,
    };
  }
  const only = rule.backends.length === 1 ? rule.backends[0] : undefined;
  const backend = only ?? pickBackend(rule, typeof random === 'number' ? random : random())!;
  if (backend.invalid) {
    const label = `${backend.namespace}/${backend.name}:${backend.port}`;
    return {
      kind: 'reply',
      status: 500,
      cause: 'invalid_backend',
      reason: backend.invalid,
      message: `backend ${label} is invalid: ${backend.invalid}`,
      location: undefined,
      entry: decision.entry,
    };
  }
  return forwardThrough(decision.entry, backend, req);
}

/**
 * Applies a forward plan's request header edits to a header map the caller owns, then sets Host to the
 * plan's authority (HTTP/1.1) or drops it (HTTP/2 carries :authority instead).
 */
export function applyRequestEdits(p: ForwardPlan, headers: HeaderMap, h2: boolean): HeaderMap {
  for (const edit of p.requestEdits) applyHeaderEdit(headers, edit);
  if (h2) delete headers.host;
  else headers.host = p.authority;
  return headers;
}

/** Applies a forward plan's response header edits to a header map the caller owns. */
export function applyResponseEdits(p: ForwardPlan, headers: HeaderMap): HeaderMap {
  for (const edit of p.responseEdits) applyHeaderEdit(headers, edit);
  return headers;
}
