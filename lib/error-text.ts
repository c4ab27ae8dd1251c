/** The first line of an error's message (or the value as text), for one-line log fields. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message.split('\n', 1)[0]! : String(error);
}
