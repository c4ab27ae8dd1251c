import { isRecord } from '../lib/is-record.ts';
// The demo's measurement, pure: the curl command that sends the requests, its output → one reply per request,
// replies → the traffic split table, and the route with other weights.

/** Follows every response body in curl's output, with the status code (curl -w). */
const RESPONSE_MARKER = '@@sluice-demo-response';

/** curl arguments for `count` GET requests to `url` in one process (kept-alive connections, one URL glob). */
export function curlArgs(url: string, count: number): string[] {
  const separator = url.includes('?') ? '&' : '?';
  return [
    'curl',
    '--silent',
    '--max-time',
    '10',
    '--write-out',
    `\n${RESPONSE_MARKER} %{http_code}\n`,
    `${url}${separator}request=[1-${count}]`,
  ];
}

export interface Reply {
  /** The echo server's `name` (which backend answered); null when the request failed. */
  backend: string | null;
  /** The client identity the server's sidecar passed on (x-sluice-peer-identity); null when absent. */
  peerIdentity: string | null;
  /** Why the request failed (HTTP status and body, or no response). */
  failure?: string;
}

/** curl's output (bodies each followed by a marker line) → one reply per request, in order. */
export function parseCurlOutput(output: string): Reply[] {
  const replies: Reply[] = [];
  const marker = new RegExp(`\\n${RESPONSE_MARKER} (\\d{3})\\n`, 'g');
  let bodyStart = 0;
  for (const match of output.matchAll(marker)) {
    replies.push(toReply(Number(match[1]), output.slice(bodyStart, match.index)));
    bodyStart = match.index + match[0].length;
  }
  return replies;
}

function toReply(status: number, body: string): Reply {
  if (status === 0) return { backend: null, peerIdentity: null, failure: 'no response' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = undefined;
  }
  if (status === 200 && isRecord(parsed) && typeof parsed.name === 'string') {
    return {
      backend: parsed.name,
      peerIdentity: typeof parsed.peerIdentity === 'string' ? parsed.peerIdentity : null,
    };
  }
  const firstLine = body.trim().split('\n')[0] ?? '';
  const text = firstLine.length > 80 ? `${firstLine.slice(0, 77)}...` : firstLine;
  return { backend: null, peerIdentity: null, failure: `HTTP ${status}${text ? `: ${text}` : ''}` };
}

export type Weights = Readonly<Record<string, number>>;

export interface SplitRow {
  backend: string;
  count: number;
  /** Of all requests sent, 0..1. */
  share: number;
  /** From the route's weights, 0..1 (0 for a backend the route does not name). */
  expected: number;
  /** Within 4 standard deviations of a binomial draw with the expected share (never true for 0 expected). */
  plausible: boolean;
}

export interface SplitReport {
  total: number;
  rows: SplitRow[];
  /** Failed requests, by reason. */
  failures: { reason: string; count: number }[];
  /** Client identities the servers saw, most frequent first; null: a reply without one. */
  identities: { identity: string | null; count: number }[];
  /** There were replies, and every one carried the client's mTLS identity. */
  allMutualTls: boolean;
  /** Every backend's count is plausible for the weights, and nothing failed. */
  matchesWeights: boolean;
}

export function splitReport(replies: readonly Reply[], weights: Weights): SplitReport {
  const total = replies.length;
  const weightSum = Object.values(weights).reduce((sum, w) => sum + w, 0);
  const counts = countBy(replies.flatMap((r) => (r.backend === null ? [] : [r.backend])));
  const backends = [...Object.keys(weights), ...[...counts.keys()].filter((b) => !(b in weights))];
  const rows = backends.map((backend): SplitRow => {
    const count = counts.get(backend) ?? 0;
    const expected = weightSum > 0 ? (weights[backend] ?? 0) / weightSum : 0;
    return {
      backend,
      count,
      share: total > 0 ? count / total : 0,
      expected,
      plausible: plausible(count, total, expected),
    };
  });
  const failures = [...countBy(replies.flatMap((r) => (r.failure === undefined ? [] : [r.failure])))];
  const answered = replies.filter((r) => r.backend !== null);
  const identities = [...countBy(answered.map((r) => r.peerIdentity))].sort((a, b) => b[1] - a[1]);
  return {
    total,
    rows,
    failures: failures.map(([reason, count]) => ({ reason, count })),
    identities: identities.map(([identity, count]) => ({ identity, count })),
    allMutualTls: answered.length > 0 && answered.every((r) => r.peerIdentity !== null),
    matchesWeights: total > 0 && failures.length === 0 && rows.every((r) => r.plausible),
  };
}

function countBy<T>(values: readonly T[]): Map<T, number> {
  const counts = new Map<T, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return counts;
}

/** A weighted pick is a binomial draw: allow 4 standard deviations (and at least 2 requests) either way. */
function plausible(count: number, total: number, expected: number): boolean {
  if (expected === 0 || expected === 1) return count === expected * total;
  const mean = total * expected;
  const slack = Math.max(2, 4 * Math.sqrt(total * expected * (1 - expected)));
  return Math.abs(count - mean) <= slack;
}

/** The report as text lines: the table, failures, identities and the verdicts. */
export function formatSplitReport(report: SplitReport, expectedIdentity: string): string[] {
  const width = Math.max(7, ...report.rows.map((r) => r.backend.length));
  const percent = (x: number): string => `${(x * 100).toFixed(1)}%`.padStart(8);
  const lines = [
    `${'backend'.padEnd(width)}  requests     share  expected`,
    ...report.rows.map(
      (r) =>
        `${r.backend.padEnd(width)}  ${String(r.count).padStart(8)}  ${percent(r.share)}  ${percent(r.expected)}` +
        (r.plausible ? '' : '  ← off'),
    ),
    ...report.failures.map((f) => `${'failed'.padEnd(width)}  ${String(f.count).padStart(8)}  (${f.reason})`),
    `${report.total} requests; ${
      report.matchesWeights ? 'the split matches the weights' : 'the split does NOT match the weights'
    }`,
    'client identities the servers saw:',
    ...report.identities.map(
      (i) =>
        `  ${i.identity ?? '(none: plaintext)'} × ${i.count}` +
        (i.identity !== null && i.identity !== expectedIdentity ? `  (expected ${expectedIdentity})` : ''),
    ),
    report.allMutualTls
      ? 'mTLS: yes, every reply shows the client identity its server-side sidecar verified'
      : 'mTLS: NO, not every reply shows a client identity',
  ];
  return lines;
}

interface RouteShape {
  spec: { rules: { backendRefs?: { name: string; weight?: number }[] }[] };
}

function routeShape(route: unknown): RouteShape {
  const rules = isRecord(route) && isRecord(route.spec) ? route.spec.rules : undefined;
  const ok =
    Array.isArray(rules) &&
    rules.every(
      (rule) =>
        isRecord(rule) &&
        (rule.backendRefs === undefined ||
          (Array.isArray(rule.backendRefs) &&
            rule.backendRefs.every((ref) => isRecord(ref) && typeof ref.name === 'string'))),
    );
  if (!ok) throw new Error('the route has no spec.rules with named backendRefs');
  return route as RouteShape;
}

/** The backends' weights, summed over the route's rules (a backendRef without weight has weight 1). */
export function routeWeights(route: unknown): Record<string, number> {
  const weights: Record<string, number> = {};
  for (const rule of routeShape(route).spec.rules) {
    for (const ref of rule.backendRefs ?? [])
      weights[ref.name] = (weights[ref.name] ?? 0) + (ref.weight ?? 1);
  }
  return weights;
}

/** A copy of the route whose backendRefs have the given weights; every named backend must be in the route. */
export function withWeights(route: unknown, weights: Weights): unknown {
  const copy = structuredClone(routeShape(route));
  const seen = new Set<string>();
  for (const rule of copy.spec.rules) {
    for (const ref of rule.backendRefs ?? []) {
      const weight = weights[ref.name];
      if (weight === undefined) continue;
      ref.weight = weight;
      seen.add(ref.name);
    }
  }
  const missing = Object.keys(weights).filter((name) => !seen.has(name));
  if (missing.length > 0) throw new Error(`the route has no backendRef named ${missing.join(', ')}`);
  return copy;
}

/** "helloworld-v1 90, helloworld-v2 10" */
export function describeWeights(weights: Weights): string {
  return Object.entries(weights)
    .map(([name, weight]) => `${name} ${weight}`)
    .join(', ');
}

/**
 * One reply of the storefront's front end (the echo server with --upstream): `front` says whom the front's
 * sidecar saw calling (the Gateway), `reviews` which version of reviews answered and whom it saw (the front).
 */
export function storefrontReply(status: number, body: string): { front: Reply; reviews: Reply } {
  const front = toReply(status, body);
  if (front.failure !== undefined) return { front, reviews: front };
  const parsed = JSON.parse(body) as Record<string, unknown>;
  const upstream = isRecord(parsed.upstream) ? parsed.upstream : {};
  const reviews =
    typeof upstream.status === 'number'
      ? toReply(upstream.status, JSON.stringify(upstream.body))
      : {
          backend: null,
          peerIdentity: null,
          failure: `front: ${typeof upstream.error === 'string' ? upstream.error : 'no upstream answer'}`,
        };
  return { front, reviews };
}
