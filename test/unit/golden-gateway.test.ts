import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { format, resolveConfig } from 'prettier';
import { parse, stringify } from 'yaml';
import { gatewayOutFile, goldenGatewayCaseNames, goldenGatewayOutput } from '../support/golden-gateway.ts';

// Gateway translation against the golden corpus in test/golden-gateway. `UPDATE_GOLDEN=1` rewrites the
// .out.yaml files (review the diff: it is the behaviour change).

const HEADER =
  '# Generated from the .in.yaml by test/unit/golden-gateway.test.ts (UPDATE_GOLDEN=1 rewrites it).\n';

describe('golden gateway translation', () => {
  it('the corpus is not empty', () => {
    assert.ok(goldenGatewayCaseNames().length > 0);
  });
  for (const name of goldenGatewayCaseNames()) {
    it(name, async () => {
      const got = goldenGatewayOutput(name);
      const file = gatewayOutFile(name);
      if (process.env.UPDATE_GOLDEN === '1') {
        const text = HEADER + stringify(got, { lineWidth: 0 });
        writeFileSync(file, await format(text, { ...(await resolveConfig(file)), filepath: file }));
        return;
      }
      assert.ok(existsSync(file), `${file} missing: run with UPDATE_GOLDEN=1`);
      assert.deepEqual(JSON.parse(JSON.stringify(got)), parse(readFileSync(file, 'utf8')));
    });
  }
});
