// The sampling decision for one request, made before any span object exists: parent-based (the caller's
// sampled flag wins), a forced trace when the caller asks and the rate limit allows, else the ratio.
import type { RemoteContext } from './trace-context.ts';

/** Token bucket: `perSecond` tokens a second, bursts up to one second's worth (at least one). */
export class RateLimiter {
  readonly #now: () => number;
  #perSecond: number;
  #tokens: number;
  #last: number;

  constructor(perSecond: number, now: () => number = () => performance.now()) {
    this.#now = now;
    this.#perSecond = perSecond;
    this.#tokens = Math.max(1, perSecond);
    this.#last = now();
  }

  set perSecond(value: number) {
    this.#perSecond = value;
    this.#tokens = Math.min(this.#tokens, Math.max(1, value));
  }

  take(): boolean {
    if (this.#perSecond <= 0) return false;
    const now = this.#now();
    const burst = Math.max(1, this.#perSecond);
    this.#tokens = Math.min(burst, this.#tokens + ((now - this.#last) / 1000) * this.#perSecond);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

export type SamplingReason = 'parent' | 'forced' | 'ratio';

export interface SamplingDecision {
  readonly sampled: boolean;
  readonly reason: SamplingReason;
}

const PARENT_SAMPLED: SamplingDecision = { sampled: true, reason: 'parent' };
const PARENT_UNSAMPLED: SamplingDecision = { sampled: false, reason: 'parent' };
const FORCED: SamplingDecision = { sampled: true, reason: 'forced' };
const RATIO_SAMPLED: SamplingDecision = { sampled: true, reason: 'ratio' };
const RATIO_UNSAMPLED: SamplingDecision = { sampled: false, reason: 'ratio' };

/**
 * `forceRequested`: the caller sent the force header; it costs a token only when the decision would
 * otherwise be "no", so forced requests inside sampled traces do not drain the bucket.
 */
export function decide(
  parent: RemoteContext | 'deny' | undefined,
  forceRequested: boolean,
  ratio: number,
  limiter: RateLimiter,
  random: () => number,
): SamplingDecision {
  const parentSays = parent === 'deny' ? false : parent?.sampled;
  if (parentSays === true) return PARENT_SAMPLED;
  if (forceRequested && limiter.take()) return FORCED;
  if (parentSays === false) return PARENT_UNSAMPLED;
  return ratio > 0 && random() < ratio ? RATIO_SAMPLED : RATIO_UNSAMPLED;
}
