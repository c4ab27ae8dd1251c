// Gateway API Duration (GEP-2257): one to four <digits><unit> parts, units h, m, s, ms; e.g. "1h30m", "250ms".
const DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const PART = /([0-9]{1,5})(ms|h|m|s)/g;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** Milliseconds, or undefined when the text is not a valid Gateway API Duration. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let total = 0;
  for (const [, digits, unit] of text.matchAll(PART)) total += Number(digits) * UNIT_MS[unit!]!;
  return total;
}
