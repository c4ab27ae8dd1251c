import { setTimeout as sleep } from 'node:timers/promises';

export interface EventuallyOptions {
  /** Give up after this long (default 60 s). */
  readonly timeoutMs?: number;
  /** Pause between checks (default 500 ms). */
  readonly intervalMs?: number;
  /** Appended to the timeout error: what was seen last (a log tail, a state dump). */
  readonly detail?: () => string;
}

/**
 * Polls until `check` returns a value (not undefined, not false), or fails with what it last saw; a check
 * that throws is tried again. The one wait-for-a-condition of the repository (cluster tool, demo, tests,
 * benches); test/support/wait-for.ts gives it the tests' defaults.
 */
export async function eventually<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  options: EventuallyOptions | number = {},
  intervalMs?: number,
): Promise<T> {
  const o = typeof options === 'number' ? { timeoutMs: options, intervalMs } : options;
  const timeoutMs = o.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  let last: Error | undefined;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error instanceof Error ? error : new Error(String(error));
    }
    if (Date.now() > deadline) {
      const more = o.detail?.();
      throw new Error(
        `${what}: not true after ${timeoutMs / 1000} s${last ? ` (${last.message})` : ''}${more ? `\n${more}` : ''}`,
      );
    }
    await sleep(o.intervalMs ?? 500);
  }
}
