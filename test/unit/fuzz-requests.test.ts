import assert from 'node:assert/strict';
import { normalizeTarget } from '../../mesh-model/request-target.ts';
import { connectionRequests } from '../support/fuzz/http1-requests.ts';
import { Prng } from '../support/fuzz/prng.ts';

// The listener fuzz test asserts that every request its generator calls well-formed reaches the app as the
// generator expects; this checks the generator against the sidecar's documented rules first, in
// milliseconds, so a wrong expectation shows here and not as a failure of a two-minute netns run.

describe('fuzz generator: well-formed HTTP/1.1 requests', () => {
  it('every one is accepted by the path rules and normalised to the target it expects', () => {
    const r = new Prng(0x5eed1);
    let n = 0;
    for (let c = 0; c < 500; c++) {
      for (const q of connectionRequests(r, 24, true)) {
        assert.ok(q.valid && q.expected, q.kind);
        const line = q.bytes.toString('latin1').split('\r\n', 1)[0]!;
        const [method, target, version] = line.split(' ');
        assert.equal(version, 'HTTP/1.1', line);
        const normalized = normalizeTarget(target!);
        assert.ok(normalized.ok, `${line}: ${normalized.ok ? '' : normalized.reason}`);
        assert.equal(`${method} ${normalized.target}`, q.expected, line);
        n++;
      }
    }
    assert.ok(n > 5000);
  });
});
