import { RE2JS } from 're2js';

/**
 * Compiles a user-supplied regular expression with RE2 semantics (re2js): matching time is linear in the
 * input, so no pattern can cause catastrophic backtracking. Returns an error message when the pattern is
 * not valid RE2 syntax (e.g. backreferences, lookaround).
 */
export function compileSafeRegex(pattern: string): RE2JS | string {
  if (pattern.length > 1024) return 'regular expression longer than 1024 characters';
  try {
    return RE2JS.compile(pattern);
  } catch (err) {
    return `invalid regular expression ${JSON.stringify(pattern)}: ${err instanceof Error ? err.message : String(err)}`;
  }
}
