// Gateway API hostnames: exact names and wildcards ("*.example.com", a suffix match over one or more
// labels: it matches "a.example.com" and "a.b.example.com", never "example.com"). Lowercase throughout;
// the CRDs only admit lowercase names, a Host header is lowercased by the caller.

export function isWildcard(hostname: string): boolean {
  return hostname.startsWith('*.');
}

/** Does `host` (a concrete name, no port) fall under `pattern` (exact or wildcard; undefined: any)? */
export function hostnameMatches(pattern: string | undefined, host: string): boolean {
  if (pattern === undefined) return true;
  if (!isWildcard(pattern)) return pattern === host;
  const suffix = pattern.slice(1); // ".example.com"
  return host.length > suffix.length && host.endsWith(suffix);
}

/**
 * The hostnames two patterns have in common, as one pattern, or undefined when they share none:
 * equal names; an exact name under the other's wildcard; of two wildcards, the more specific one.
 */
export function intersectHostnames(a: string, b: string): string | undefined {
  if (a === b) return a;
  const wa = isWildcard(a);
  const wb = isWildcard(b);
  if (wa && !wb) return hostnameMatches(a, b) ? b : undefined;
  if (wb && !wa) return hostnameMatches(b, a) ? a : undefined;
  if (!wa && !wb) return undefined;
  if (a.endsWith(b.slice(1))) return a;
  if (b.endsWith(a.slice(1))) return b;
  return undefined;
}

/**
 * The effective hostnames of a route on a listener (spec: Listener.hostname and Route.hostnames):
 * undefined inside the list stands for "any host". An empty result: no intersection, not accepted.
 */
export function effectiveHostnames(
  listener: string | undefined,
  route: readonly string[],
): (string | undefined)[] {
  if (route.length === 0) return [listener];
  if (listener === undefined) return [...new Set(route)];
  const out = new Set<string>();
  for (const r of route) {
    const common = intersectHostnames(r, listener);
    if (common !== undefined) out.add(common);
  }
  return [...out];
}

/** Do two sets of effective hostnames (undefined: any) share a host? */
export function hostnamesOverlap(
  a: readonly (string | undefined)[],
  b: readonly (string | undefined)[],
): boolean {
  return a.some((x) =>
    b.some((y) => x === undefined || y === undefined || intersectHostnames(x, y) !== undefined),
  );
}

/**
 * Most specific first: exact names (longest first), then wildcards with more labels after the "*" (then
 * longer), then undefined (any host). Route hostnames and listener hostnames both sort this way.
 */
export function compareHostnameSpecificity(a: string | undefined, b: string | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return 1;
  if (b === undefined) return -1;
  const wa = isWildcard(a);
  const wb = isWildcard(b);
  if (wa !== wb) return wa ? 1 : -1;
  const dots = (s: string): number => s.split('.').length;
  if (wa && dots(a) !== dots(b)) return dots(b) - dots(a);
  if (a.length !== b.length) return b.length - a.length;
  return a < b ? -1 : 1;
}

/** The host of a Host header or :authority, without port, lowercased, without a trailing dot. */
export function hostOfAuthority(authority: string): string {
  let host = authority;
  if (host.startsWith('[')) host = host.slice(0, host.indexOf(']') + 1);
  else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1) host = host.slice(0, colon);
  }
  host = host.toLowerCase();
  return host.endsWith('.') ? host.slice(0, -1) : host;
}
