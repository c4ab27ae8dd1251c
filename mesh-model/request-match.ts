import type { GrpcMatch, HttpMatch, MatchEntry, StringMatcher } from './model.ts';
import type { PortRouting } from './port-routing.ts';
import { firstSegment } from './port-routing.ts';

export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

/** What the route engine needs of a request. `path` excludes the query; `query` excludes the "?". */
export interface RouteRequest {
  method: string;
  path: string;
  query: string;
  /** Lowercased names, as node:http and node:http2 deliver them. */
  headers: RequestHeaders;
}

function headerValue(headers: RequestHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function stringMatches(m: StringMatcher, value: string | undefined): boolean {
  if (value === undefined) return false;
  return m.exact !== undefined ? m.exact === value : m.regex!.matches(value);
}

function decodeQueryComponent(s: string): string {
  if (!s.includes('%') && !s.includes('+')) return s;
  try {
    return decodeURIComponent(s.replaceAll('+', ' '));
  } catch {
    return s;
  }
}

/** The first value of a query parameter (the spec leaves repeats to implementations; first wins here). */
export function queryValue(query: string, name: string): string | undefined {
  let start = 0;
  while (start <= query.length) {
    let end = query.indexOf('&', start);
    if (end === -1) end = query.length;
    const eq = query.indexOf('=', start);
    const keyEnd = eq === -1 || eq > end ? end : eq;
    if (decodeQueryComponent(query.slice(start, keyEnd)) === name) {
      return keyEnd === end ? '' : decodeQueryComponent(query.slice(keyEnd + 1, end));
    }
    start = end + 1;
  }
  return undefined;
}

function pathMatches(m: HttpMatch, path: string): boolean {
  switch (m.pathType) {
    case 'Exact':
      return path === m.path;
    case 'PathPrefix':
      // Element-wise prefix: "/v2" matches "/v2" and "/v2/x" but not "/v2example".
      return (
        m.path === '/' ||
        (path.startsWith(m.path) && (path.length === m.path.length || path.charCodeAt(m.path.length) === 47))
      );
    default:
      return m.pathRegex!.matches(path);
  }
}

function httpMatches(m: HttpMatch, req: RouteRequest): boolean {
  if (!pathMatches(m, req.path)) return false;
  if (m.method !== undefined && m.method !== req.method) return false;
  for (const h of m.headers) if (!stringMatches(h, headerValue(req.headers, h.name))) return false;
  for (const q of m.query) if (!stringMatches(q, queryValue(req.query, q.name))) return false;
  return true;
}

function grpcMatches(m: GrpcMatch, req: RouteRequest): boolean {
  if (m.service !== undefined || m.method !== undefined) {
    const path = req.path;
    const slash = path.indexOf('/', 1);
    if (path.charCodeAt(0) !== 47 || slash === -1) return false;
    if (m.regex) {
      if (!m.regex.matches(path.slice(1))) return false;
    } else {
      if (m.service !== undefined && (slash - 1 !== m.service.length || !path.startsWith(m.service, 1)))
        return false;
      if (m.method !== undefined && path.slice(slash + 1) !== m.method) return false;
    }
  }
  for (const h of m.headers) if (!stringMatches(h, headerValue(req.headers, h.name))) return false;
  return true;
}

/** The highest-precedence match entry for a request, or undefined (404 when routes exist). */
export function findMatch(routing: PortRouting, req: RouteRequest): MatchEntry | undefined {
  const candidates =
    routing.kind === 'HTTPRoute'
      ? (routing.bySegment.get(firstSegment(req.path)) ?? routing.wildcard)
      : routing.wildcard;
  for (const entry of candidates) {
    const m = entry.match;
    if (m.kind === 'HTTPRoute' ? httpMatches(m, req) : grpcMatches(m, req)) return entry;
  }
  return undefined;
}
