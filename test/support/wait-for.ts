// The tests' way to wait: poll a condition until it holds, never a fixed sleep (lib/eventually.ts with the
// tests' defaults). A check returns the awaited value (anything but undefined or false), so a test can wait
// for and use it in one step.
import { eventually, type EventuallyOptions } from '../../lib/eventually.ts';

/** Defaults: 5 s (generous: a busy machine is slow, not broken), checked every 10 ms. */
export function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  options: EventuallyOptions | number = {},
): Promise<T> {
  const o = typeof options === 'number' ? { timeoutMs: options } : options;
  return eventually(what, check, { timeoutMs: 5000, intervalMs: 10, ...o });
}
