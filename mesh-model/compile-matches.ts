import type { GrpcRouteMatchSpec, HttpRouteMatchSpec, StringMatchSpec } from './k8s-objects.ts';
import type { GrpcMatch, HttpMatch, StringMatcher } from './model.ts';
import { compileSafeRegex } from './safe-regex.ts';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);
const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$/;
const GRPC_SERVICE = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;

/** The CRD default for a rule without matches: PathPrefix "/". */
export const DEFAULT_HTTP_MATCH: HttpMatch = {
  kind: 'HTTPRoute',
  pathType: 'PathPrefix',
  path: '/',
  pathRegex: undefined,
  method: undefined,
  headers: [],
  query: [],
};

export const DEFAULT_GRPC_MATCH: GrpcMatch = {
  kind: 'GRPCRoute',
  service: undefined,
  method: undefined,
  regex: undefined,
  headers: [],
};

/** Validation the API server would do for Exact/PathPrefix values (offline manifests are not validated). */
function pathProblem(value: string): string | undefined {
  if (!value.startsWith('/')) return 'must be an absolute path and start with /';
  for (const bad of ['//', '/./', '/../', '%2f', '%2F', '#']) {
    if (value.includes(bad)) return `must not contain '${bad}'`;
  }
  if (value.endsWith('/.') || value.endsWith('/..')) return "must not end with '/.' or '/..'";
  if (!PATH_CHARS.test(value)) return 'contains characters not allowed in a path';
  return undefined;
}

function compileStringMatchers(
  specs: StringMatchSpec[] | undefined,
  what: 'header' | 'query param',
): StringMatcher[] | string {
  const out: StringMatcher[] = [];
  const seen = new Set<string>();
  for (const spec of Array.isArray(specs) ? specs : []) {
    if (typeof spec.name !== 'string' || spec.name === '') return `${what} match without a name`;
    if (what === 'header' && !HEADER_NAME.test(spec.name))
      return `invalid header name ${JSON.stringify(spec.name)}`;
    if (typeof spec.value !== 'string') return `${what} match ${spec.name} without a value`;
    // Header names are case-insensitive; query param names are not. Only the first entry of a name counts.
    const name = what === 'header' ? spec.name.toLowerCase() : spec.name;
    if (seen.has(name)) continue;
    seen.add(name);
    const type = spec.type ?? 'Exact';
    if (type === 'Exact') {
      out.push({ name, exact: spec.value, regex: undefined });
    } else if (type === 'RegularExpression') {
      const regex = compileSafeRegex(spec.value);
      if (typeof regex === 'string') return `${what} ${spec.name}: ${regex}`;
      out.push({ name, exact: undefined, regex });
    } else {
      return `unsupported ${what} match type ${JSON.stringify(type)}`;
    }
  }
  return out;
}

export function compileHttpMatch(spec: HttpRouteMatchSpec): HttpMatch | string {
  const pathType = spec.path?.type ?? 'PathPrefix';
  const pathValue = spec.path?.value ?? '/';
  if (typeof pathValue !== 'string') return 'path value must be a string';
  let pathRegex;
  let path = pathValue;
  if (pathType === 'Exact' || pathType === 'PathPrefix') {
    const problem = pathProblem(pathValue);
    if (problem) return `path ${JSON.stringify(pathValue)} ${problem}`;
    if (pathType === 'PathPrefix' && path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  } else if (pathType === 'RegularExpression') {
    const regex = compileSafeRegex(pathValue);
    if (typeof regex === 'string') return `path: ${regex}`;
    pathRegex = regex;
  } else {
    return `unsupported path match type ${JSON.stringify(pathType)}`;
  }
  let method: string | undefined;
  if (spec.method !== undefined) {
    if (typeof spec.method !== 'string' || !METHODS.has(spec.method)) {
      return `unsupported method ${JSON.stringify(spec.method)}`;
    }
    method = spec.method;
  }
  const headers = compileStringMatchers(spec.headers, 'header');
  if (typeof headers === 'string') return headers;
  const query = compileStringMatchers(spec.queryParams, 'query param');
  if (typeof query === 'string') return query;
  return { kind: 'HTTPRoute', pathType, path, pathRegex, method, headers, query };
}

export function compileGrpcMatch(spec: GrpcRouteMatchSpec): GrpcMatch | string {
  const headers = compileStringMatchers(spec.headers, 'header');
  if (typeof headers === 'string') return headers;
  const m = spec.method;
  if (m === undefined) return { ...DEFAULT_GRPC_MATCH, headers };
  const service = m.service === '' ? undefined : m.service;
  const method = m.method === '' ? undefined : m.method;
  if (service === undefined && method === undefined)
    return "one or both of 'service' or 'method' must be specified";
  const type = m.type ?? 'Exact';
  if (type === 'Exact') {
    if (service !== undefined && (typeof service !== 'string' || !GRPC_SERVICE.test(service))) {
      return `invalid gRPC service ${JSON.stringify(service)}`;
    }
    if (method !== undefined && (typeof method !== 'string' || !GRPC_METHOD.test(method))) {
      return `invalid gRPC method ${JSON.stringify(method)}`;
    }
    return { kind: 'GRPCRoute', service, method, regex: undefined, headers };
  }
  if (type === 'RegularExpression') {
    // Matched against "service/method" as one string, each part defaulting to "anything".
    const regex = compileSafeRegex(`(?:${service ?? '[^/]+'})/(?:${method ?? '[^/]+'})`);
    if (typeof regex === 'string') return `gRPC method match: ${regex}`;
    return { kind: 'GRPCRoute', service, method, regex, headers };
  }
  return `unsupported gRPC method match type ${JSON.stringify(type)}`;
}
