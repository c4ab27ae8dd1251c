// One export's POSTs (otlp-export-worker.ts): retried with backoff on 429/502/503/504 and network errors
// while its time budget lasts, and the reason it failed when it did. The clock is the caller's own
// monotonic one; the deadline is derived from it here, from a budget, never received as a time.
import { backoffDelay } from '../../lib/backoff.ts';
import type { ExportFailure } from './span-pipeline.ts';

/** One POST's outcome: the collector's status, a network error (its code), or the time running out. */
export type PostResult =
  { readonly status: number } | { readonly error: string } | { readonly timedOut: true };

export interface RetryDeps {
  readonly post: (body: Uint8Array, timeoutMs: number) => Promise<PostResult>;
  /** Monotonic ms. */
  readonly now: () => number;
  /** The exporter is shutting down: no new retry. */
  readonly closed: () => boolean;
  /** The delay before the first retry; it doubles per retry up to 16 times this, with jitter. */
  readonly backoffBaseMs: number;
  readonly random?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
}

const RETRYABLE = new Set([429, 502, 503, 504]);

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Undefined when the collector took the batch (2xx); otherwise why it did not. */
export async function sendWithRetries(
  body: Uint8Array,
  budgetMs: number,
  deps: RetryDeps,
): Promise<ExportFailure | undefined> {
  const deadline = deps.now() + budgetMs;
  const random = deps.random ?? Math.random;
  const sleep = deps.sleep ?? pause;
  let last: ExportFailure = { reason: 'timed_out', attempts: 0 };
  for (let attempt = 1; ; attempt++) {
    const left = deadline - deps.now();
    if (left <= 0) return { reason: 'timed_out', attempts: attempt - 1, ...lastCause(last) };
    const result = await deps.post(body, left);
    if ('status' in result) {
      if (result.status >= 200 && result.status < 300) return undefined;
      last = { reason: 'http_status', status: result.status, attempts: attempt };
      if (!RETRYABLE.has(result.status)) return last;
    } else if ('error' in result) {
      last = { reason: 'network_error', error: result.error, attempts: attempt };
    } else {
      return { reason: 'timed_out', attempts: attempt, ...lastCause(last) };
    }
    const base = deps.backoffBaseMs;
    const wait = backoffDelay(attempt - 1, { initialMs: base, maxMs: base * 16 }, random);
    if (deps.closed() || deps.now() + wait >= deadline) return last;
    await sleep(wait);
  }
}

/** What the attempt before the time ran out met, when one did. */
function lastCause(last: ExportFailure): { status?: number; error?: string } {
  if (last.reason === 'http_status') return { status: last.status };
  if (last.reason === 'network_error') return { error: last.error };
  return {};
}
