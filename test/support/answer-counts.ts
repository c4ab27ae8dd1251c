import type { ClientResult } from './mesh-client.ts';

/** How many results had each answer: `status:name` (the echo app's name) or `error:message`. */
export function countAnswers(results: readonly ClientResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of results) {
    const key = r.error
      ? `error:${r.error}`
      : `${r.status}:${(r.json as { name?: string } | undefined)?.name ?? ''}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
