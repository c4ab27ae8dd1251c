import type { MatchEntry } from './model.ts';
import type { PortRouting } from './port-routing.ts';
import { findMatch, type RouteRequest } from './request-match.ts';

export type Decision =
  | { action: 'passthrough' }
  | { action: 'reject'; status: number; reason: string; entry: MatchEntry | undefined }
  | { action: 'redirect'; status: number; entry: MatchEntry }
  | { action: 'forward'; entry: MatchEntry };

const PASSTHROUGH: Decision = { action: 'passthrough' };
const NOT_FOUND: Decision = {
  action: 'reject',
  status: 404,
  reason: 'no route rule matches the request',
  entry: undefined,
};

// A decision depends only on the matched entry, so each is built once (no allocation per request).
const decisions = new WeakMap<MatchEntry, Decision>();

function decisionFor(entry: MatchEntry): Decision {
  const rule = entry.rule;
  if (rule.fails) return { action: 'reject', status: 500, reason: rule.fails, entry };
  if (rule.redirect) return { action: 'redirect', status: rule.redirect.statusCode, entry };
  return { action: 'forward', entry };
}

/** The routing decision for one request (which rule, or none); plan() in request-plan.ts builds on it. */
export function decide(routing: PortRouting, req: RouteRequest): Decision {
  if (routing.type === undefined) return PASSTHROUGH;
  const entry = findMatch(routing, req);
  if (!entry) return NOT_FOUND;
  let decision = decisions.get(entry);
  if (!decision) {
    decision = decisionFor(entry);
    decisions.set(entry, decision);
  }
  return decision;
}
