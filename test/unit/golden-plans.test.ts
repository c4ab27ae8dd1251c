import assert from 'node:assert/strict';
import { checkGoldenFile } from '../support/golden-file.ts';
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
      await checkGoldenFile(outFile(name), goldenOutput(readGoldenCase(name)), HEADER);
    });
  }
});
