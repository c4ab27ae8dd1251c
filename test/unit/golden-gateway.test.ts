import assert from 'node:assert/strict';
import { checkGoldenFile } from '../support/golden-file.ts';
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
      // As JSON: no undefined members (YAML leaves them out).
      const got: unknown = JSON.parse(JSON.stringify(goldenGatewayOutput(name)));
      await checkGoldenFile(gatewayOutFile(name), got, HEADER);
    });
  }
});
