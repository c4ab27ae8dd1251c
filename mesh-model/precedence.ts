import type { GrpcMatch, HttpMatch, MatchEntry } from './model.ts';

// Matches see the normalised path (request-target.ts: dot segments, unreserved escapes, absolute form;
// docs/security.md), never the bytes as received. Path match rank. The spec orders Exact before PathPrefix and leaves RegularExpression to implementations:
// Sluice puts regex between them (longest pattern first), so a catch-all prefix never hides a regex rule.
const PATH_RANK = { Exact: 0, RegularExpression: 1, PathPrefix: 2 } as const;

function byRouteThenRule(a: MatchEntry, b: MatchEntry): number {
  const ra = a.rule.route;
  const rb = b.rule.route;
  if (ra !== rb) {
    // Missing timestamps (offline manifests) count as newest; ISO-8601 UTC strings compare as text.
    const ta = ra.creationTimestamp || '\uffff';
    const tb = rb.creationTimestamp || '\uffff';
    if (ta !== tb) return ta < tb ? -1 : 1;
    const na = `${ra.namespace}/${ra.name}`;
    const nb = `${rb.namespace}/${rb.name}`;
    if (na !== nb) return na < nb ? -1 : 1;
  }
  return a.rule.index - b.rule.index || a.matchIndex - b.matchIndex;
}

/** HTTPRoute precedence across all rules of all applicable routes (HTTPRouteRule.matches in the spec). */
export function compareHttpEntries(a: MatchEntry, b: MatchEntry): number {
  const ma = a.match as HttpMatch;
  const mb = b.match as HttpMatch;
  const rank = PATH_RANK[ma.pathType] - PATH_RANK[mb.pathType];
  if (rank !== 0) return rank;
  if (ma.pathType !== 'Exact' && ma.path.length !== mb.path.length) return mb.path.length - ma.path.length;
  const method = Number(mb.method !== undefined) - Number(ma.method !== undefined);
  if (method !== 0) return method;
  if (ma.headers.length !== mb.headers.length) return mb.headers.length - ma.headers.length;
  if (ma.query.length !== mb.query.length) return mb.query.length - ma.query.length;
  return byRouteThenRule(a, b);
}

/** GRPCRoute precedence: longest service, longest method, most headers (hostnames do not apply in the mesh). */
export function compareGrpcEntries(a: MatchEntry, b: MatchEntry): number {
  const ma = a.match as GrpcMatch;
  const mb = b.match as GrpcMatch;
  const service = (mb.service?.length ?? 0) - (ma.service?.length ?? 0);
  if (service !== 0) return service;
  const method = (mb.method?.length ?? 0) - (ma.method?.length ?? 0);
  if (method !== 0) return method;
  if (ma.headers.length !== mb.headers.length) return mb.headers.length - ma.headers.length;
  return byRouteThenRule(a, b);
}
