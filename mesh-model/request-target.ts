// Request-target normalisation before matching (docs/security.md, "Limits and request normalisation"):
// the path a route matches is the path the app receives, so an encoding the app would read differently
// cannot slip past a rule. Pure; the sidecar, plan() and `route explain` all use it.

export interface NormalizeOptions {
  /** Merge runs of "/" into one (off by default: "//" can be meaningful to an app). */
  mergeSlashes?: boolean | undefined;
  /**
   * An escaped "/" or "\" (%2F, %5C): refused (default), or kept escaped (hex uppercased) for APIs that
   * put them in identifiers; never decoded.
   */
  escapedSlashes?: 'reject' | 'keep' | undefined;
}

export type Normalized<T> = ({ ok: true } & T) | { ok: false; reason: string };

const bad = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

function unreserved(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x61 && b <= 0x7a) || // a-z
    (b >= 0x30 && b <= 0x39) || // 0-9
    b === 0x2d || // -
    b === 0x2e || // .
    b === 0x5f || // _
    b === 0x7e // ~
  );
}

const HEX = /^[0-9A-Fa-f]{2}$/;

/**
 * Normalises an origin-form path (no query): percent-escapes of unreserved characters decoded, the hex of
 * the other escapes uppercased, "." and ".." segments removed (RFC 3986 §5.2.4), runs of "/" merged when
 * asked. Refused (the sidecar answers 400): an escaped "/" or "\" (%2F, %5C; unless `escapedSlashes` is
 * "keep") or control character, a raw
 * "\", control character, space or "#", a malformed escape, and ".." above the root.
 */
export function normalizePath(path: string, options: NormalizeOptions = {}): Normalized<{ path: string }> {
  if (path.charCodeAt(0) !== 0x2f) return bad('the path does not start with /');
  let out = '';
  let from = 0; // start of the run of path characters not yet copied to out
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25) {
      const hex = path.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return bad('malformed percent-encoding in the path');
      const b = parseInt(hex, 16);
      if ((b === 0x2f || b === 0x5c) && options.escapedSlashes !== 'keep')
        return bad('encoded slash or backslash in the path');
      if (b < 0x20 || b === 0x7f) return bad('encoded control character in the path');
      out += path.slice(from, i) + (unreserved(b) ? String.fromCharCode(b) : `%${hex.toUpperCase()}`);
      i += 2;
      from = i + 1;
    } else if (c <= 0x20 || c === 0x7f) return bad('control character or space in the path');
    else if (c === 0x5c) return bad('backslash in the path');
    else if (c === 0x23) return bad('fragment in the request target');
  }
  out += path.slice(from);
  if (options.mergeSlashes) out = out.replace(/\/{2,}/g, '/');
  if (!out.includes('/.')) return { ok: true, path: out };
  const segments = out.split('/');
  const kept: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '.' || s === '..') {
      if (s === '..') {
        if (kept.length === 0) return bad('the path climbs above the root');
        kept.pop();
      }
      if (last) kept.push(''); // "/a/." and "/a/b/.." keep their trailing slash
    } else kept.push(s);
  }
  return { ok: true, path: `/${kept.join('/')}` };
}

export interface RequestTarget {
  path: string;
  /** Without the "?"; "" when there is none. */
  query: string;
  /** The authority of an absolute-form target (it wins over Host, RFC 9112 §3.2.2), else undefined. */
  authority: string | undefined;
}

/**
 * Splits a request-target as received: origin-form ("/p?q") or absolute-form ("http://host/p?q", converted
 * to origin-form plus its authority). Anything else, userinfo in the authority or a fragment is refused,
 * and so is the asterisk form ("OPTIONS * HTTP/1.1", a question about the server itself): a proxy that
 * routes by path has no backend to ask, and passing it on made the upstream client fail (a 502).
 */
export function parseRequestTarget(target: string): Normalized<RequestTarget> {
  if (target.includes('#')) return bad('fragment in the request target');
  if (target === '*') return bad('the request target * (asterisk form) names no resource a route can match');
  let rest = target;
  let authority: string | undefined;
  if (target.charCodeAt(0) !== 0x2f) {
    const scheme = /^https?:\/\//i.exec(target);
    if (!scheme) return bad('the request target is neither a path nor an absolute http URL');
    rest = target.slice(scheme[0].length);
    const end = rest.search(/[/?]/);
    authority = end === -1 ? rest : rest.slice(0, end);
    rest = end === -1 ? '/' : rest.slice(end);
    if (rest.charCodeAt(0) === 0x3f) rest = `/${rest}`;
    if (authority === '' || authority.includes('@') || /[\s\\]/.test(authority))
      return bad('bad authority in the absolute-form request target');
  }
  const q = rest.indexOf('?');
  return {
    ok: true,
    path: q === -1 ? rest : rest.slice(0, q),
    query: q === -1 ? '' : rest.slice(q + 1),
    authority,
  };
}

/** parseRequestTarget, then normalizePath; `target` is the normalised path with its query. */
export function normalizeTarget(
  target: string,
  options: NormalizeOptions = {},
): Normalized<RequestTarget & { target: string }> {
  const t = parseRequestTarget(target);
  if (!t.ok) return t;
  const p = normalizePath(t.path, options);
  if (!p.ok) return p;
  const unchanged = p.path === t.path && t.authority === undefined;
  return {
    ok: true,
    path: p.path,
    query: t.query,
    authority: t.authority,
    target: unchanged ? target : t.query === '' ? p.path : `${p.path}?${t.query}`,
  };
}
