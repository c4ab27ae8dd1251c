import { setTimeout as sleep } from 'node:timers/promises';

/** Polls until `check` returns a value, or fails with what it last saw. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: Error | undefined;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error instanceof Error ? error : new Error(String(error));
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not true after ${timeoutMs / 1000} s${last ? ` (${last.message})` : ''}`);
    }
    await sleep(500);
  }
}
