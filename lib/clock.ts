// Time for code with timers, passed in so tests advance a manual clock (test/support/manual-clock.ts)
// instead of sleeping and hoping the timer fired.
import { performance } from 'node:perf_hooks';

export interface Clock {
  /** Milliseconds on a monotonic scale (performance.now() for the real clock). */
  now(): number;
  /** Calls `fn` after `ms`; the returned function cancels the call. A pending call keeps no process alive. */
  setTimeout(fn: () => void, ms: number): () => void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};
