import { normalizePath, parseRequestTarget, type NormalizeOptions } from './request-target.ts';
import type { CompiledRule, HeaderEdit, MeshModel, MeshService, RouteKind, RouteType } from './model.ts';
import { buildPortRouting } from './port-routing.ts';
import type { HeaderMap } from './header-edits.ts';
import { endpointTier, type Endpoint, type EndpointTier } from './endpoints.ts';
import { servicePortKey } from './model.ts';
import { summarizePlan, type PlanSummary } from './plan-summary.ts';
import {
  applyRequestEdits,
  forwardThrough,
  liveBackends,
  plan,
  type PlanRequest,
  type RequestPlan,
} from './request-plan.ts';

export interface ExplainRequest {
  from: string;
  method: string;
  /** http://SERVICE[.NAMESPACE[.svc[.cluster.local]]][:PORT]/path?query, or the Service's clusterIP. */
  url: string;
  headers: readonly (readonly [string, string])[];
  /** The number in [0, 1) for the weighted backend choice in `details.plan` (default 0). */
  random?: number;
  /** As the proxy's --merge-slashes and --escaped-slashes. */
  normalize?: NormalizeOptions;
  /** The endpoints per Service port (mesh-model buildEndpoints), to list each backend's with its tier. */
  endpoints?: ReadonlyMap<string, readonly Endpoint[]>;
}

export interface BackendView {
  namespace: string;
  name: string;
  port: number;
  weight: number;
}

/** The `route explain --output json` contract; keep it stable, other tools read it. */
export interface Explanation {
  service: { namespace: string; name: string; port: number };
  route: { kind: RouteKind; namespace: string; name: string; type: RouteType } | null;
  ruleIndex: number | null;
  action: 'forward' | 'redirect' | 'reject' | 'passthrough';
  status: number | null;
  location: string | null;
  backends: BackendView[];
  /** `authority` (extension): the Host / :authority sent upstream. */
  request: { method: string; path: string; headers: Record<string, string>; authority?: string };
  responseHeaders: { set: Record<string, string>; add: Record<string, string>; remove: string[] };
  warnings: string[];
  /**
   * Extension: the one backend that can be chosen (its filters are applied to `request`), or null when the
   * choice is weighted among several (then `request` shows the rule-level filters only).
   */
  backend: BackendView | null;
}

/** Details beyond the JSON contract, for the text output and `route test`. */
export interface ExplanationDetails {
  reason: string | null;
  mirrors: { backend: BackendView; percent: number }[];
  requestTimeoutMs: number | null;
  backendRequestTimeoutMs: number | null;
  retry: { attempts: number | null; backoffMs: number | null; codes: number[] } | null;
  backendFilters: { backend: string; request: HeaderEdit | undefined; response: HeaderEdit | undefined }[];
  /** The plan the sidecar would execute, with ExplainRequest.random for the weighted choice. */
  plan: RequestPlan;
  /** The same plan as plain data (`route explain --output plan`, the golden files' format). */
  planSummary: PlanSummary;
  /** Each backend's endpoints (when ExplainRequest.endpoints is given) with the tier they are in (isEligible). */
  endpoints: { backend: string; address: string; pod: string | null; tier: EndpointTier }[];
}

/** Bad input to explain (unknown Service, malformed URL): the CLI exits 2 with this message. */
export class ExplainInputError extends Error {
  override name = 'ExplainInputError';
}

const SERVICE_SUFFIXES = ['', '.svc', '.svc.cluster.local'];

export function resolveService(model: MeshModel, host: string, from: string): MeshService {
  const byIp = model.servicesByIp.get(host.replace(/^\[|\]$/g, ''));
  if (byIp) return byIp;
  const parts = host.split('.');
  const name = parts[0]!;
  let namespace = from;
  if (parts.length > 1) {
    const rest = `.${parts.slice(2).join('.')}`.replace(/^\.$/, '');
    if (!SERVICE_SUFFIXES.includes(rest))
      throw new ExplainInputError(`cannot resolve host '${host}' to a Service`);
    namespace = parts[1]!;
  }
  const svc = model.services.get(`${namespace}/${name}`);
  if (!svc) throw new ExplainInputError(`unknown Service ${namespace}/${name} (host '${host}')`);
  return svc;
}

function parseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ExplainInputError(`malformed URL '${text}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ExplainInputError(`unsupported URL scheme '${url.protocol}' (use http:// or https://)`);
  }
  if (url.username || url.password) throw new ExplainInputError('URL must not contain credentials');
  return url;
}

/** Response edits as one set/add/remove view (later edits win a name, as when applied in order). */
function editToJson(edits: readonly HeaderEdit[]): Explanation['responseHeaders'] {
  const out: Explanation['responseHeaders'] = { set: {}, add: {}, remove: [] };
  for (const e of edits) {
    for (const [k, v] of e.set) out.set[k] = v;
    for (const [k, v] of e.add) out.add[k] = v;
    for (const k of e.remove) if (!out.remove.includes(k)) out.remove.push(k);
  }
  return out;
}

function flatten(headers: HeaderMap): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers))
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(',') : v;
  return out;
}

/** Explains what the mesh does with one request, offline. Pure; the same code path the sidecar uses. */
export function explain(
  model: MeshModel,
  input: ExplainRequest,
): Explanation & { details: ExplanationDetails } {
  const url = parseUrl(input.url);
  const method = input.method.toUpperCase();
  if (!/^[A-Z]+$/.test(method)) throw new ExplainInputError(`invalid method '${input.method}'`);
  const service = resolveService(model, url.hostname, input.from);
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  if (!service.ports.some((p) => p.port === port)) {
    throw new ExplainInputError(`Service ${service.namespace}/${service.name} has no port ${port}`);
  }
  const headers: HeaderMap = { host: url.host };
  for (const [rawName, value] of input.headers) {
    const name = rawName.toLowerCase();
    const prev = headers[name];
    headers[name] = name === 'host' || prev === undefined ? value : `${String(prev)},${value}`;
  }
  // The path as written (the URL parser would already resolve dot segments), normalised as the sidecar does;
  // one that cannot be normalised safely goes to plan() as is and gets its 400.
  const raw = parseRequestTarget(input.url);
  const rawPath = raw.ok ? raw.path : url.pathname;
  const query = raw.ok ? raw.query : url.search.slice(1);
  const normalized = normalizePath(rawPath, input.normalize);
  const path = normalized.ok ? normalized.path : rawPath;
  const routing = buildPortRouting(model, input.from, service, port);
  const warnings = [...model.warnings];
  if (url.protocol === 'https:') {
    warnings.push(
      'the sidecar reads plaintext HTTP from apps (TLS passes as opaque TCP, unrouted): explained as http',
    );
  }
  // As the sidecar does: the authority is the Host header (a -H Host: overrides the URL's).
  const authority = String(headers.host);
  const req: PlanRequest = {
    method,
    path,
    query,
    scheme: 'http',
    authority,
    headers,
    normalize: input.normalize,
  };
  // When several backends can be chosen, the printed request shows the rule's filters only (the
  // backend-level ones are listed per backend); with one choice, the random number does not matter.
  const p = plan(routing, req, input.random ?? 0);

  for (const { route, reason } of routing.ignored)
    warnings.push(`${route.kind} ${route.namespace}/${route.name} ignored: ${reason}`);
  const flatRequest = { method, path: query === '' ? path : `${path}?${query}`, headers: flatten(headers) };
  const out: Explanation & { details: ExplanationDetails } = {
    service: { namespace: service.namespace, name: service.name, port },
    route: null,
    ruleIndex: null,
    action: 'passthrough',
    status: null,
    location: null,
    backends: [],
    request: flatRequest,
    responseHeaders: editToJson([]),
    warnings,
    backend: null,
    details: {
      reason: null,
      mirrors: [],
      requestTimeoutMs: null,
      backendRequestTimeoutMs: null,
      retry: null,
      backendFilters: [],
      plan: p,
      planSummary: summarizePlan(p, headers),
      endpoints: [],
    },
  };
  const entry = p.entry;
  if (entry) {
    const route = entry.rule.route;
    out.route = { kind: route.kind, namespace: route.namespace, name: route.name, type: routing.type! };
    out.ruleIndex = entry.rule.index;
    for (const problem of route.problems)
      warnings.push(
        `${route.kind} ${route.namespace}/${route.name}: ${problem.type} ${problem.reason}: ${problem.message}`,
      );
  }
  // An invalid backend among several is one possible outcome of the weighted choice, not the rule's.
  if (p.kind === 'reply' && p.cause !== 'invalid_backend') {
    out.status = p.status;
    out.action = p.cause === 'redirect' ? 'redirect' : 'reject';
    if (p.cause === 'redirect') out.location = p.location!;
    else out.details.reason = p.reason;
    if (p.entry) addRuleDetails(out.details, p.entry.rule);
    return out;
  }
  if (!entry) {
    out.action = 'passthrough';
    out.backends = [{ namespace: service.namespace, name: service.name, port, weight: 1 }];
    out.backend = out.backends[0]!;
    out.request.authority = authority;
    out.details.reason = 'no route attached to this Service port: traffic goes to the Service itself';
    out.details.endpoints = endpointsOf(out.backends, input.endpoints);
    return out;
  }
  const rule = entry.rule;
  out.action = 'forward';
  const live = liveBackends(rule);
  const shown = p.kind === 'forward' && live.length === 1 ? p : forwardThrough(entry, undefined, req);
  const upstream = applyRequestEdits(shown, { ...headers }, false);
  out.request = { method: shown.method, path: shown.path, headers: flatten(upstream) };
  out.request.authority = shown.authority;
  out.responseHeaders = editToJson(shown.responseEdits);
  if (p.kind === 'forward' && live.length === 1) {
    out.backend = {
      namespace: p.backend.namespace,
      name: p.backend.name,
      port: p.backend.port,
      weight: live[0]!.weight,
    };
  }
  out.backends = rule.backends.map((b) => ({
    namespace: b.namespace,
    name: b.name,
    port: b.port,
    weight: b.weight,
  }));
  const d = out.details;
  addRuleDetails(d, rule);
  for (const b of rule.backends) {
    if (b.invalid && b.weight > 0)
      warnings.push(`backend ${b.namespace}/${b.name}:${b.port} gets a 500 for its share: ${b.invalid}`);
    if (b.requestHeaders || b.responseHeaders) {
      d.backendFilters.push({
        backend: `${b.namespace}/${b.name}:${b.port}`,
        request: b.requestHeaders,
        response: b.responseHeaders,
      });
    }
  }
  d.endpoints = endpointsOf(out.backends, input.endpoints);
  d.mirrors = rule.mirrors.map((m) => ({
    backend: { namespace: m.backend.namespace, name: m.backend.name, port: m.backend.port, weight: 1 },
    percent: Math.round(m.fraction * 10000) / 100,
  }));
  return out;
}

function endpointsOf(
  backends: readonly BackendView[],
  endpoints: ReadonlyMap<string, readonly Endpoint[]> | undefined,
): ExplanationDetails['endpoints'] {
  if (!endpoints) return [];
  return backends.flatMap((b) => {
    const backend = servicePortKey(b.namespace, b.name, b.port);
    const list = endpoints.get(backend) ?? [];
    const anyReady = list.some((ep) => ep.ready);
    return list.map((ep) => ({
      backend,
      address: `${ep.address}:${ep.port}`,
      pod: ep.pod ?? null,
      tier: endpointTier(ep, anyReady),
    }));
  });
}

function addRuleDetails(d: ExplanationDetails, rule: CompiledRule): void {
  d.requestTimeoutMs = rule.requestTimeoutMs ?? null;
  d.backendRequestTimeoutMs = rule.backendRequestTimeoutMs ?? null;
  d.retry = rule.retry
    ? {
        attempts: rule.retry.attempts ?? null,
        backoffMs: rule.retry.backoffMs ?? null,
        codes: [...rule.retry.codes],
      }
    : null;
}

/** The JSON contract only (drops the details used by text output and tests). */
export function explanationJson(e: Explanation & { details?: ExplanationDetails }): Explanation {
  const { details: _details, ...contract } = e;
  return contract;
}
