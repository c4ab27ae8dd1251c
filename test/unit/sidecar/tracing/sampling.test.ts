// Sampling decisions: parent first, forced traces bounded by the rate limiter, then the ratio.
import assert from 'node:assert/strict';
import { decide, RateLimiter } from '../../../../sidecar/tracing/sampling.ts';
import type { RemoteContext } from '../../../../sidecar/tracing/trace-context.ts';
import { samplingRatioFor, tracingFromData } from '../../../../protocol/tracing-config.ts';

const parent = (sampled: boolean | undefined): RemoteContext => ({
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  sampled,
  traceState: undefined,
  format: 'w3c',
});

describe('sampling decisions', () => {
  const never = (): number => 0.999;
  const always = (): number => 0;

  it("follows the caller's flag, whatever the ratio", () => {
    const limiter = new RateLimiter(0);
    assert.deepEqual(decide(parent(true), false, 0, limiter, never), { sampled: true, reason: 'parent' });
    assert.deepEqual(decide(parent(false), false, 1, limiter, always), { sampled: false, reason: 'parent' });
    assert.deepEqual(decide('deny', false, 1, limiter, always), { sampled: false, reason: 'parent' });
  });

  it('rolls the ratio for new traces and for B3 contexts without a decision', () => {
    const limiter = new RateLimiter(0);
    const rolls = [0.004, 0.02];
    const random = (): number => rolls.shift()!;
    assert.equal(decide(undefined, false, 0.01, limiter, random).sampled, true);
    assert.equal(decide(parent(undefined), false, 0.01, limiter, random).sampled, false);
    assert.equal(decide(undefined, false, 0, limiter, always).sampled, false);
  });

  it('forces a trace only while the rate limiter has tokens', () => {
    let now = 0;
    const limiter = new RateLimiter(2, () => now);
    const forced = (): boolean => decide(undefined, true, 0, limiter, never).sampled;
    assert.deepEqual([forced(), forced(), forced()], [true, true, false]);
    now = 499;
    assert.equal(forced(), false);
    now = 500; // one token back after half a second at 2/s
    assert.equal(forced(), true);
    // Forcing overrides a parent's "no" but costs a token; inside a sampled trace it costs nothing.
    now = 10_000;
    assert.equal(decide(parent(false), true, 0, limiter, never).reason, 'forced');
    assert.equal(decide(parent(true), true, 0, limiter, never).reason, 'parent');
    limiter.perSecond = 0;
    assert.equal(forced(), false);
  });

  it('picks the pod, then the namespace, then the mesh ratio', () => {
    const { settings, warnings } = tracingFromData({
      'tracing.samplingPercent': '5',
      'tracing.namespaceSamplingPercent': 'shop=100, batch=0',
    });
    assert.deepEqual(warnings, []);
    assert.equal(samplingRatioFor(settings, 'shop'), 1);
    assert.equal(samplingRatioFor(settings, 'batch'), 0);
    assert.equal(samplingRatioFor(settings, 'other'), 0.05);
    assert.equal(samplingRatioFor(settings, 'shop', 0.5), 0.5);
  });
});
