import assert from 'node:assert/strict';
import { countLines, ResultCollector, summary } from '../../../conformance/test-output.ts';

// The shape of `go test -v` output of the suite: subtests four spaces deeper per level.
const OUTPUT = `=== RUN   TestConformance
=== RUN   TestConformance/MeshBasic
    mesh-basic.go:42: 2026-12-03T06:00:00Z: Request passed
=== RUN   TestConformance/MeshBasic/simple_request
--- PASS: TestConformance (75.20s)
    --- PASS: TestConformance/MeshBasic (3.01s)
        --- PASS: TestConformance/MeshBasic/simple_request (1.00s)
    --- FAIL: TestConformance/MeshPorts (60.50s)
        --- FAIL: TestConformance/MeshPorts/0_request (60.00s)
    --- SKIP: TestConformance/GatewayWithAttachedRoutes (0.00s)
    --- PASS: TestConformance/MeshHTTPRoute303Redirect (11.70s)`;

describe('conformance test output', () => {
  it('counts the conformance tests, not their subtests, and the root on its own', () => {
    const collector = new ResultCollector();
    for (const line of OUTPUT.split('\n')) collector.line(line);
    assert.deepEqual(
      collector.tests.map((t) => [t.name, t.outcome, t.seconds]),
      [
        ['MeshBasic', 'pass', 3.01],
        ['MeshPorts', 'fail', 60.5],
        ['GatewayWithAttachedRoutes', 'skip', 0],
        ['MeshHTTPRoute303Redirect', 'pass', 11.7],
      ],
    );
    assert.equal(collector.root, 'pass');
    assert.equal(summary(collector, 75.2), '2 passed, 1 failed, 1 skipped in 75 s');
  });

  it('writes one count line per test that ran, in the format .ci/run sums', () => {
    const collector = new ResultCollector();
    for (const line of OUTPUT.split('\n')) collector.line(line);
    assert.deepEqual(countLines('npm run conformance', collector.tests), [
      'npm run conformance / MeshBasic 1 0',
      'npm run conformance / MeshPorts 0 1',
      'npm run conformance / MeshHTTPRoute303Redirect 1 0',
    ]);
  });

  it('ignores other tests and lines that only look alike', () => {
    const collector = new ResultCollector();
    assert.equal(collector.line('--- PASS: TestOther/MeshBasic (1.00s)'), undefined);
    assert.equal(collector.line('    mesh.go:1: --- PASS: not a result'), undefined);
    assert.equal(collector.line('--- FAIL: TestConformance (0.10s)'), undefined);
    assert.equal(collector.root, 'fail');
    assert.deepEqual(collector.tests, []);
  });
});
