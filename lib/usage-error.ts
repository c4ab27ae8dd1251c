/** Bad input from the user: printed as one line on stderr, exit code 2, never a stack trace. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Runs node:util parseArgs (or similar) and turns its errors into usage errors (exit 2). */
export function parseFlags<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]);
  }
}

/** The value of a `--NAME PORT` flag (1-65535), or `fallback` when the flag is absent. */
export function portFlag(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 65535) {
    throw new UsageError(`--${name} must be a port number, got '${value}'`);
  }
  return n;
}
