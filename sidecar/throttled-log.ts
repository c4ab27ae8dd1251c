import type { LogFields, Logger } from '../lib/json-log.ts';

/**
 * Warnings that come with every request under overload (an endpoint's connections and queue full, clients
 * giving up) are logged at most once per `everyMs` for each message and backend, with the number of lines
 * left out since the last one: the log must not become part of the overload.
 */
export class ThrottledLog {
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #everyMs: number;
  readonly #last = new Map<string, { at: number; since: number }>();

  constructor(log: Logger, now: () => number = Date.now, everyMs = 10_000) {
    this.#log = log;
    this.#now = now;
    this.#everyMs = everyMs;
  }

  warn(msg: string, backend: string, fields: LogFields = {}): void {
    const key = `${msg}\n${backend}`;
    const now = this.#now();
    const last = this.#last.get(key);
    if (last && now - last.at < this.#everyMs) {
      last.since++;
      return;
    }
    this.#last.set(key, { at: now, since: 0 });
    this.#log.warn(msg, { ...fields, backend, sinceLastLine: last?.since ?? 0 });
  }
}

const byLogger = new WeakMap<Logger, ThrottledLog>();

/** The throttled warnings of a proxy's logger. */
export function throttledLog(log: Logger): ThrottledLog {
  let t = byLogger.get(log);
  if (!t) byLogger.set(log, (t = new ThrottledLog(log)));
  return t;
}
