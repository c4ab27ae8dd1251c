// The churn suite's verdict on each failed request (issue 17), from the cause `load` recorded for it
// (images/toolbox/load-cause.ts: `echo: POST status 502 (the app reset the request …)`). Pure.

/** What may fail in a scenario, because of what the scenario does (not because the mesh failed). */
export interface Expected {
  /** `split` has a backend scaled to zero while it has weight: its share gets 503 (HTTPBackendRef). */
  readonly splitNoEndpoint?: boolean;
  /** Apps exit: a POST or gRPC call an exiting app reset after receiving it may have been processed. */
  readonly appsExit?: boolean;
}
// A node marked NotReady is no expected cause: its pods' endpoints are not ready, but their kubelet's last
// verdict was ready, and the mesh keeps sending to them when no other is ready (ADR 0021).

export type Verdict = 'split_503' | 'app_reset' | 'mesh_bug' | 'unexplained';

/** The text of the sidecar's 502 when the app reset a request it had been sent (sidecar/http-forward.ts). */
const APP_RESET = 'the app reset the request before answering';
const CAUSE = /^(?<label>[^:]+): (?<method>GET|POST|gRPC) (?<detail>.*)$/;
/** An HTTP 503 or a gRPC UNAVAILABLE, then the reply's first line if there was one. */
const UNAVAILABLE = /^(status 503|grpc-status 14 \(http 200\))( \(.*\))?$/;

export function verdict(cause: string, expected: Expected): Verdict {
  const m = CAUSE.exec(cause)?.groups;
  if (m === undefined) return 'unexplained';
  const { label, method, detail } = m as { label: string; method: string; detail: string };
  if (detail.includes(`(${APP_RESET}`)) {
    // GETs are sent again after an app's reset: one that still fails is the mesh's failure.
    if (method === 'GET') return 'mesh_bug';
    return expected.appsExit ? 'app_reset' : 'unexplained';
  }
  const unavailable = UNAVAILABLE.exec(detail);
  if (unavailable === null) return 'unexplained';
  if (label === 'split' && expected.splitNoEndpoint) return 'split_503';
  return 'unexplained';
}

export interface Judged {
  /** Failures with an expected cause, by verdict. */
  readonly expected: Partial<Record<Verdict, number>>;
  /** `protocol cause xN` of the failures that are the mesh's (failing the scenario whatever their count). */
  readonly bugs: string[];
  /** `protocol cause xN` of the failures no expected cause explains, and their number. */
  readonly unexplained: string[];
  readonly unexplainedCount: number;
}

export function judge(
  byProtocol: readonly { protocol: string; causes: Record<string, number> }[],
  expected: Expected,
): Judged {
  const counts: Partial<Record<Verdict, number>> = {};
  const bugs: string[] = [];
  const unexplained: string[] = [];
  let unexplainedCount = 0;
  for (const p of byProtocol)
    for (const [cause, n] of Object.entries(p.causes)) {
      const v = verdict(cause, expected);
      if (v === 'mesh_bug') bugs.push(`${p.protocol} ${cause} x${n}`);
      else if (v === 'unexplained') {
        unexplained.push(`${p.protocol} ${cause} x${n}`);
        unexplainedCount += n;
      } else counts[v] = (counts[v] ?? 0) + n;
    }
  return { expected: counts, bugs, unexplained, unexplainedCount };
}

/** pass: every failure explained; pending: at most `rare` unexplained (reported); fail: a bug or more. */
export function outcome(j: Judged, rare: number): 'pass' | 'pending' | 'fail' {
  if (j.bugs.length > 0 || j.unexplainedCount > rare) return 'fail';
  return j.unexplainedCount > 0 ? 'pending' : 'pass';
}
