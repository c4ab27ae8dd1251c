import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls every `intervalMs` until `check` returns a value (not undefined, not false), or fails with what it
 * last saw. The one wait-for-a-condition of the repository (cluster tool, demo, tests, benches).
 */
export async function eventually<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 60_000,
  intervalMs = 500,
): Promise<T> {
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
      throw new Error(`${what}: not true after ${timeoutMs / 1000} s${last ? ` (${last.message})` : ''}`);
    }
    await sleep(intervalMs);
  }
}
