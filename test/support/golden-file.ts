import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { format, resolveConfig } from 'prettier';
import { parse, stringify } from 'yaml';

/**
 * Checks `got` against the golden YAML `file`; with UPDATE_GOLDEN=1, rewrites the file instead (`header`,
 * then `got`), formatted as `npm run lint` wants it, so that a rewrite never fails the lint.
 */
export async function checkGoldenFile(file: string, got: unknown, header: string): Promise<void> {
  if (process.env.UPDATE_GOLDEN === '1') {
    const text = header + stringify(got, { lineWidth: 0 });
    writeFileSync(file, await format(text, { ...(await resolveConfig(file)), filepath: file }));
    return;
  }
  assert.ok(existsSync(file), `${file} missing: run with UPDATE_GOLDEN=1`);
  assert.deepEqual(got, parse(readFileSync(file, 'utf8')));
}
