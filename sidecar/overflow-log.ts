import type { Logger } from '../lib/json-log.ts';

/**
 * The log line of an upstream overflow (connections and queue of an endpoint full, request answered 503).
 * Under overload that happens for every request, so each backend logs at most once per `everyMs`, with the
 * number of overflows since its last line: the log must not become part of the overload.
 */
export class OverflowLog {
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #everyMs: number;
  readonly #last = new Map<string, { at: number; since: number }>();

  constructor(log: Logger, now: () => number = Date.now, everyMs = 10_000) {
    this.#log = log;
    this.#now = now;
    this.#everyMs = everyMs;
  }

  report(backend: string): void {
    const now = this.#now();
    const last = this.#last.get(backend);
    if (last && now - last.at < this.#everyMs) {
      last.since++;
      return;
    }
    this.#last.set(backend, { at: now, since: 0 });
    this.#log.warn('upstream overflow: 503', {
      cause: 'upstream_overflow',
      backend,
      overflowsSinceLastLine: last?.since ?? 0,
    });
  }
}

const byLogger = new WeakMap<Logger, OverflowLog>();

/** The throttled overflow log of a proxy's logger. */
export function overflowLog(log: Logger): OverflowLog {
  let o = byLogger.get(log);
  if (!o) byLogger.set(log, (o = new OverflowLog(log)));
  return o;
}
