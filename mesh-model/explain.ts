import type { HeaderEdit, MeshModel, MeshService, RouteKind, RouteType } from './model.ts';
import { buildPortRouting } from './port-routing.ts';
import { decide } from './decide.ts';
import { applyHeaderEdit, type HeaderMap } from './header-edits.ts';
import { modifyPath, redirectLocation } from './request-filters.ts';

export interface ExplainRequest {
  from: string;
  method: string;
  /** http://SERVICE[.NAMESPACE[.svc[.cluster.local]]][:PORT]/path?query, or the Service's clusterIP. */
  url: string;
  headers: readonly (readonly [string, string])[];
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
  request: { method: string; path: string; headers: Record<string, string> };
  responseHeaders: { set: Record<string, string>; add: Record<string, string>; remove: string[] };
  warnings: string[];
}

/** Details beyond the JSON contract, for the text output and `route test`. */
export interface ExplanationDetails {
  reason: string | null;
  mirrors: { backend: BackendView; percent: number }[];
  requestTimeoutMs: number | null;
  backendRequestTimeoutMs: number | null;
  retry: { attempts: number | null; backoffMs: number | null; codes: number[] } | null;
  backendFilters: { backend: string; request: HeaderEdit | undefined; response: HeaderEdit | undefined }[];
}

/** Bad input to explain (unknown Service, malformed URL): the CLI exits 2 with this message. */
export class ExplainInputError extends Error {
  override name = 'ExplainInputError';
}

const SERVICE_SUFFIXES = ['', '.svc', '.svc.cluster.local'];

function resolveService(model: MeshModel, host: string, from: string): MeshService {
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

function editToJson(edit: HeaderEdit | undefined): Explanation['responseHeaders'] {
  return {
    set: Object.fromEntries(edit?.set ?? []),
    add: Object.fromEntries(edit?.add ?? []),
    remove: [...(edit?.remove ?? [])],
  };
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
  const path = url.pathname;
  const query = url.search.slice(1);
  const routing = buildPortRouting(model, input.from, service, port);
  const decision = decide(routing, { method, path, query, headers });

  const warnings = [...model.warnings];
  for (const { route, reason } of routing.ignored)
    warnings.push(`${route.kind} ${route.namespace}/${route.name} ignored: ${reason}`);
  const out: Explanation & { details: ExplanationDetails } = {
    service: { namespace: service.namespace, name: service.name, port },
    route: null,
    ruleIndex: null,
    action: decision.action,
    status: null,
    location: null,
    backends: [],
    request: { method, path: url.pathname + url.search, headers: flatten(headers) },
    responseHeaders: editToJson(undefined),
    warnings,
    details: {
      reason: null,
      mirrors: [],
      requestTimeoutMs: null,
      backendRequestTimeoutMs: null,
      retry: null,
      backendFilters: [],
    },
  };
  if (decision.action === 'passthrough') {
    out.backends = [{ namespace: service.namespace, name: service.name, port, weight: 1 }];
    out.details.reason = 'no route attached to this Service port: traffic goes to the Service itself';
    return out;
  }
  const entry = decision.entry;
  if (decision.action === 'reject') {
    out.status = decision.status;
    out.details.reason = decision.reason;
    if (!entry) return out;
  }
  const rule = entry!.rule;
  const route = rule.route;
  out.route = { kind: route.kind, namespace: route.namespace, name: route.name, type: routing.type! };
  out.ruleIndex = rule.index;
  for (const p of route.problems)
    warnings.push(`${route.kind} ${route.namespace}/${route.name}: ${p.type} ${p.reason}: ${p.message}`);
  if (decision.action === 'reject') return out;

  const clientHost = String(headers.host);
  if (rule.requestHeaders) applyHeaderEdit(headers, rule.requestHeaders);
  let upstreamPath = path;
  if (rule.rewrite?.hostname) headers.host = rule.rewrite.hostname;
  if (rule.rewrite?.path) upstreamPath = modifyPath(rule.rewrite.path, entry!, path);
  out.request = { method, path: upstreamPath + url.search, headers: flatten(headers) };
  out.responseHeaders = editToJson(rule.responseHeaders);
  const d = out.details;
  d.requestTimeoutMs = rule.requestTimeoutMs ?? null;
  d.backendRequestTimeoutMs = rule.backendRequestTimeoutMs ?? null;
  d.retry = rule.retry
    ? {
        attempts: rule.retry.attempts ?? null,
        backoffMs: rule.retry.backoffMs ?? null,
        codes: [...rule.retry.codes],
      }
    : null;
  if (decision.action === 'redirect') {
    out.status = decision.status;
    out.location = redirectLocation(rule.redirect!, entry!, {
      scheme: url.protocol.slice(0, -1),
      host: clientHost,
      path,
      query,
      port,
    });
    return out;
  }
  out.backends = rule.backends.map((b) => ({
    namespace: b.namespace,
    name: b.name,
    port: b.port,
    weight: b.weight,
  }));
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
  d.mirrors = rule.mirrors.map((m) => ({
    backend: { namespace: m.backend.namespace, name: m.backend.name, port: m.backend.port, weight: 1 },
    percent: Math.round(m.fraction * 10000) / 100,
  }));
  return out;
}

/** The JSON contract only (drops the details used by text output and tests). */
export function explanationJson(e: Explanation & { details?: ExplanationDetails }): Explanation {
  const { details: _details, ...contract } = e;
  return contract;
}
