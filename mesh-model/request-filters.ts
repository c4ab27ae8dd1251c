import type { BackendTarget, CompiledRule, HttpMatch, MatchEntry, PathModifier, Redirect } from './model.ts';

/** Applies a ReplaceFullPath / ReplacePrefixMatch modifier to a request path (no query). */
export function modifyPath(modifier: PathModifier, entry: MatchEntry, path: string): string {
  if (modifier.type === 'ReplaceFullPath') return modifier.value;
  // Only valid with exactly one PathPrefix match (checked at compile time); trailing slashes are ignored.
  const matched = (entry.match as HttpMatch).path;
  const rest = matched === '/' ? path : path.slice(matched.length);
  const prefix = modifier.value.endsWith('/') ? modifier.value.slice(0, -1) : modifier.value;
  const joined = prefix + (rest === '' || rest.startsWith('/') ? rest : `/${rest}`);
  return joined === '' ? '/' : joined;
}

const DEFAULT_PORTS: Record<string, number> = { http: 80, https: 443 };

export interface RedirectInput {
  scheme: string;
  /** Host header value, possibly with a port (ignored, as the spec requires). */
  host: string;
  path: string;
  query: string;
  /** The Service port the request was sent to: the mesh's "listener port". */
  port: number;
}

function stripPort(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

/** The absolute Location of a RequestRedirect; default ports for the scheme are omitted. */
export function redirectLocation(redirect: Redirect, entry: MatchEntry, req: RedirectInput): string {
  const scheme = redirect.scheme ?? req.scheme;
  const host = redirect.hostname ?? stripPort(req.host);
  const port = redirect.port ?? (redirect.scheme ? DEFAULT_PORTS[redirect.scheme] : req.port);
  const path = redirect.path ? modifyPath(redirect.path, entry, req.path) : req.path;
  const authority = port === undefined || port === DEFAULT_PORTS[scheme] ? host : `${host}:${port}`;
  return `${scheme}://${authority}${path}${req.query === '' ? '' : `?${req.query}`}`;
}

/** Weighted choice among a rule's backends; weight 0 never wins. `random` is in [0, 1). */
export function pickBackend(rule: CompiledRule, random: number): BackendTarget | undefined {
  const target = random * rule.totalWeight;
  const sums = rule.cumulativeWeights;
  for (let i = 0; i < sums.length; i++) if (target < sums[i]!) return rule.backends[i];
  return undefined;
}
