// The one retry backoff (informers, status writes, trust bundles, the mesh CA, the webhook certificate, the
// sidecar's controller streams): exponential with jitter, so that many clients that lose a server at the same
// moment do not come back in lock-step.

export interface BackoffOptions {
  /** The ceiling of the first delay. */
  readonly initialMs: number;
  /** No delay is longer than this. */
  readonly maxMs: number;
  /** Growth per attempt (default 2). */
  readonly factor?: number;
  /**
   * Fraction of each delay that is random (default 0.5): a delay is uniform in
   * [ceiling × (1 − jitter), ceiling], so it never exceeds maxMs and never drops to zero.
   */
  readonly jitter?: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 200, maxMs: 30_000, factor: 2, jitter: 0.5 };

export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #factor: number;
  readonly #jitter: number;
  readonly #random: () => number;
  #attempt = 0;

  /** `random` returns a number in [0, 1), like Math.random (injectable for tests). */
  constructor(options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random) {
    this.#initialMs = Math.max(1, options.initialMs);
    this.#maxMs = Math.max(this.#initialMs, options.maxMs);
    this.#factor = Math.max(1, options.factor ?? 2);
    this.#jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5));
    this.#random = random;
  }

  /** Retries since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The ceiling of the next delay (no jitter). */
  ceilingMs(attempt = this.#attempt): number {
    // Capped exponent: factor ** attempt overflows to Infinity long before it matters, but stays a number.
    return Math.min(this.#maxMs, this.#initialMs * this.#factor ** Math.min(attempt, 64));
  }

  /** The delay before retry number `attempt` (0-based), without counting it. */
  delayMs(attempt: number): number {
    const r = Math.min(1, Math.max(0, this.#random()));
    return Math.round(this.ceilingMs(attempt) * (1 - this.#jitter * r));
  }

  /** The delay before the next retry; each call grows the following one. */
  next(): number {
    return this.delayMs(this.#attempt++);
  }

  reset(): void {
    this.#attempt = 0;
  }
}

/** The delay before retry number `attempt` (0-based) under `options`: for callers that count attempts. */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions,
  random: () => number = Math.random,
): number {
  return new Backoff(options, random).delayMs(attempt);
}

/** `baseMs` stretched by a random part in [0, fraction): spreads periodic work (resyncs, watch timeouts). */
export function stretch(baseMs: number, fraction: number, random: () => number = Math.random): number {
  return Math.round(baseMs * (1 + fraction * random()));
}
