// The tests' one way to wait: poll a condition until it holds, never a fixed sleep. A check returns the
// awaited value (anything but undefined or false), so a test can wait for and use it in one step.

export interface WaitOptions {
  /** Give up after this long (default 5 s); generous, as a busy machine is slow, not broken. */
  readonly timeoutMs?: number;
  /** Pause between checks (default 10 ms). */
  readonly intervalMs?: number;
  /** Appended to the timeout error: what the test saw last (a log tail, a state dump). */
  readonly detail?: () => string;
}

type Check<T> = () => T | undefined | false | Promise<T | undefined | false>;

/** Resolves with the first value `check` returns that is not undefined or false. */
export async function waitFor<T>(
  what: string,
  check: Check<T>,
  options: WaitOptions | number = {},
): Promise<T> {
  const {
    timeoutMs = 5000,
    intervalMs = 10,
    detail,
  } = typeof options === 'number' ? { timeoutMs: options } : options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) {
      const more = detail?.();
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${more ? `\n${more}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
