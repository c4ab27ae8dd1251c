import type { HeaderEdit } from './model.ts';
import type { HeaderMap } from './header-edits.ts';
import { applyRequestEdits, type RequestPlan } from './request-plan.ts';

/** A request plan as plain data: the golden files (test/golden/*.out.yaml) and `route explain -o plan`. */
export type PlanSummary =
  | {
      reply: {
        status: number;
        cause: string;
        /** Redirects only. */
        location?: string;
        message: string;
        route: string | null;
        rule: number | null;
      };
    }
  | {
      forward: {
        route: string | null;
        rule: number | null;
        /** namespace/name:port of the Service whose endpoints receive the request. */
        backend: string;
        method: string;
        path: string;
        authority: string;
        /** Request headers sent upstream (HTTP/1.1 form: host = authority), sorted by name. */
        headers: Record<string, string>;
        responseHeaders?: { set?: Record<string, string>; add?: Record<string, string>; remove?: string[] }[];
        mirrors?: { backend: string; percent: number }[];
        timeouts?: { requestMs?: number; backendRequestMs?: number };
        retry?: { attempts?: number; backoffMs?: number; codes: number[] };
      };
    };

function editSummary(e: HeaderEdit): {
  set?: Record<string, string>;
  add?: Record<string, string>;
  remove?: string[];
} {
  return {
    ...(e.set.length > 0 ? { set: Object.fromEntries(e.set) } : {}),
    ...(e.add.length > 0 ? { add: Object.fromEntries(e.add) } : {}),
    ...(e.remove.length > 0 ? { remove: [...e.remove] } : {}),
  };
}

/** Summarises a plan; `headers` are the request headers as received (lowercased, host included). */
export function summarizePlan(p: RequestPlan, headers: HeaderMap): PlanSummary {
  const rule = p.entry?.rule;
  const route = rule ? `${rule.route.namespace}/${rule.route.name}` : null;
  const ruleIndex = rule ? rule.index : null;
  if (p.kind === 'reply') {
    return {
      reply: {
        status: p.status,
        cause: p.cause,
        ...(p.location === undefined ? {} : { location: p.location }),
        message: p.message,
        route,
        rule: ruleIndex,
      },
    };
  }
  const sent = applyRequestEdits(p, { ...headers }, false);
  const flat: Record<string, string> = {};
  for (const name of Object.keys(sent).sort()) {
    const v = sent[name];
    if (v !== undefined) flat[name] = Array.isArray(v) ? v.join(',') : v;
  }
  const timeouts = {
    ...(p.requestTimeoutMs === undefined ? {} : { requestMs: p.requestTimeoutMs }),
    ...(p.backendRequestTimeoutMs === undefined ? {} : { backendRequestMs: p.backendRequestTimeoutMs }),
  };
  return {
    forward: {
      route,
      rule: ruleIndex,
      backend: `${p.backend.namespace}/${p.backend.name}:${p.backend.port}`,
      method: p.method,
      path: p.path,
      authority: p.authority,
      headers: flat,
      ...(p.responseEdits.length > 0 ? { responseHeaders: p.responseEdits.map(editSummary) } : {}),
      ...(p.mirrors.length > 0
        ? {
            mirrors: p.mirrors.map((m) => ({
              backend: `${m.backend.namespace}/${m.backend.name}:${m.backend.port}`,
              percent: Math.round(m.fraction * 10000) / 100,
            })),
          }
        : {}),
      ...(Object.keys(timeouts).length > 0 ? { timeouts } : {}),
      ...(p.retry
        ? {
            retry: {
              ...(p.retry.attempts === undefined ? {} : { attempts: p.retry.attempts }),
              ...(p.retry.backoffMs === undefined ? {} : { backoffMs: p.retry.backoffMs }),
              codes: [...p.retry.codes],
            },
          }
        : {}),
    },
  };
}
