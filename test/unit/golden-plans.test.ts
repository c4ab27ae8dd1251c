import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { format, resolveConfig } from 'prettier';
import { parse, stringify } from 'yaml';
import { goldenCaseNames, goldenOutput, outFile, readGoldenCase } from '../support/golden-plans.ts';

// Pure request plans against the golden corpus. `UPDATE_GOLDEN=1 npm run --silent test:unit` rewrites the
// .out.yaml files (review the diff: it is the behaviour change). The same cases run through a real
// sidecar in test/integration/golden-sidecar.test.ts.

const HEADER =
  '# Generated from the .in.yaml by test/unit/golden-plans.test.ts (UPDATE_GOLDEN=1 rewrites it).\n';

describe('golden request plans', () => {
  it('the corpus is not empty', () => {
    assert.ok(goldenCaseNames().length > 0);
  });
  for (const name of goldenCaseNames()) {
    it(name, async () => {
      const got = goldenOutput(readGoldenCase(name));
      const file = outFile(name);
      if (process.env.UPDATE_GOLDEN === '1') {
        // Formatted as `npm run lint` wants it, so a rewrite never fails the lint.
        const text = HEADER + stringify(got, { lineWidth: 0 });
        writeFileSync(file, await format(text, { ...(await resolveConfig(file)), filepath: file }));
        return;
      }
      assert.ok(existsSync(file), `${file} missing: run with UPDATE_GOLDEN=1`);
      assert.deepEqual(got, parse(readFileSync(file, 'utf8')));
    });
  }
});
