import assert from 'node:assert/strict';
import { Backoff, DEFAULT_BACKOFF, stretch } from '../../../lib/backoff.ts';

/** Returns the given values in turn, like Math.random would. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

describe('lib/backoff', () => {
  it('doubles from 200 ms up to the 30 s cap (ceilings, random 0)', () => {
    const backoff = new Backoff(DEFAULT_BACKOFF, () => 0);
    const delays = Array.from({ length: 10 }, () => backoff.next());
    assert.deepEqual(delays, [200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000]);
    assert.equal(backoff.attempt, 10);
  });

  it('takes up to half of each delay off at random, never more', () => {
    const low = new Backoff(DEFAULT_BACKOFF, () => 0.999_999);
    assert.deepEqual(
      Array.from({ length: 4 }, () => low.next()),
      [100, 200, 400, 800],
    );
    const backoff = new Backoff(DEFAULT_BACKOFF);
    for (let attempt = 0; attempt < 200; attempt++) {
      const ceiling = backoff.ceilingMs();
      const delay = backoff.next();
      assert.ok(delay >= ceiling / 2 && delay <= ceiling, `${delay} within [${ceiling / 2}, ${ceiling}]`);
      assert.ok(delay <= 30_000);
    }
  });

  it('starts over after reset', () => {
    const backoff = new Backoff({ initialMs: 50, maxMs: 1000, factor: 3, jitter: 0 }, sequence(0.5));
    assert.deepEqual([backoff.next(), backoff.next(), backoff.next(), backoff.next()], [50, 150, 450, 1000]);
    backoff.reset();
    assert.equal(backoff.attempt, 0);
    assert.equal(backoff.next(), 50);
  });

  it('survives absurd attempt counts and options', () => {
    const backoff = new Backoff({ initialMs: 0, maxMs: -5, factor: 0.1, jitter: 7 }, () => 0.5);
    for (let i = 0; i < 5000; i++) backoff.next();
    const delay = backoff.next();
    assert.ok(Number.isFinite(delay) && delay >= 0 && delay <= 1, String(delay));
  });

  it('stretches periodic intervals by at most the fraction', () => {
    assert.equal(
      stretch(600_000, 0.1, () => 0),
      600_000,
    );
    assert.equal(
      stretch(600_000, 0.1, () => 0.5),
      630_000,
    );
    assert.ok(stretch(300, 0.2, () => 0.999_999) <= 360);
  });
});
