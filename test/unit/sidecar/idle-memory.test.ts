// When the sidecar gives memory back: once per busy-then-idle transition, only when RSS grew, at most once a
// minute. Fake CPU, RSS and clock readings (pure logic); the real release (full GC, malloc_trim) is exercised
// on this process.
import assert from 'node:assert/strict';
import { IdleMemory, fullGc, trimMalloc } from '../../../sidecar/idle-memory.ts';

const MB = 2 ** 20;
const INTERVAL_MS = 5000;

function subject(releaseAfterStart = false): {
  idle: IdleMemory;
  tick: () => boolean;
  clock: { ms: number };
  cpu: { us: number };
  rss: { bytes: number };
  released: number[];
  after: string[];
  releasedAt: number[];
} {
  const cpu = { us: 0 };
  const rss = { bytes: 80 * MB };
  const clock = { ms: 0 };
  const released: number[] = [];
  const after: string[] = [];
  const releasedAt: number[] = [];
  const idle = new IdleMemory({
    cpuMicros: () => cpu.us,
    rssBytes: () => rss.bytes,
    release: (what) => {
      released.push(rss.bytes);
      after.push(what);
      releasedAt.push(clock.ms);
      rss.bytes = 90 * MB; // what a release gets back to
    },
    intervalMs: INTERVAL_MS,
    idleCpuShare: 0.02, // 100 ms of CPU in 5 s
    idleIntervals: 2,
    slackBytes: 16 * MB,
    nowMs: () => clock.ms,
    minSpacingMs: 60_000,
    releaseAfterStart,
  });
  // One interval passes, then the watcher looks.
  const tick = (): boolean => {
    clock.ms += INTERVAL_MS;
    return idle.tick();
  };
  return { idle, tick, clock, cpu, rss, released, after, releasedAt };
}

describe('idle memory release', () => {
  it('releases once when a busy period that grew RSS is followed by an idle interval', () => {
    const { idle, tick, cpu, rss, released } = subject();
    cpu.us += 3_000_000; // busy: 3 s of CPU in 5 s
    rss.bytes = 280 * MB;
    assert.equal(tick(), false, 'not while busy');
    cpu.us += 10_000; // idle: 10 ms
    assert.equal(tick(), false, 'one idle interval is a pause');
    assert.equal(tick(), true);
    assert.deepEqual(released, [280 * MB]);
    cpu.us += 10_000;
    rss.bytes = 120 * MB; // still above the floor, but nothing ran since the release
    assert.equal(tick(), false);
    assert.equal(idle.releases, 1);
  });

  it('leaves memory alone when a busy period did not grow it, or the load goes on', () => {
    const { tick, cpu, rss, released } = subject();
    cpu.us += 2_000_000;
    rss.bytes = 90 * MB; // within the slack of the start-up level
    tick();
    cpu.us += 1_000;
    assert.equal(tick(), false);
    assert.equal(tick(), false);
    for (let i = 0; i < 5; i++) {
      cpu.us += 1_000_000; // steady load: never idle
      rss.bytes = 200 * MB;
      assert.equal(tick(), false);
    }
    assert.deepEqual(released, []);
  });

  it('releases again after the next busy period a minute or more later', () => {
    const { idle, tick, cpu, rss } = subject();
    for (let round = 0; round < 2; round++) {
      cpu.us += 1_000_000;
      rss.bytes = 200 * MB;
      tick();
      tick();
      assert.equal(tick(), round === 0, `round ${round}: within the minute`);
    }
    for (let i = 0; i < 12 && idle.releases < 2; i++) tick(); // idle: the wait ends at the minute
    assert.equal(idle.releases, 2);
  });

  it('steady light load, busy or idle by a hair, never releases in a loop', () => {
    for (const cpuPerInterval of [150_000, 50_000]) {
      const { idle, tick, cpu, rss } = subject();
      // An hour at a steady rate: RSS wobbles with it (garbage, buffers) but the load never stops.
      for (let i = 0; i < 720; i++) {
        cpu.us += cpuPerInterval;
        rss.bytes = (i % 2 ? 110 : 125) * MB;
        tick();
      }
      assert.equal(idle.releases, 0, `${cpuPerInterval} µs per interval`);
    }
  });

  it('load that stops and starts every 20 s releases at most once a minute', () => {
    const { tick, cpu, rss, releasedAt } = subject();
    for (let i = 0; i < 120; i++) {
      // 10 minutes: one busy interval that regrows RSS past the slack, then three idle ones.
      if (i % 4 === 0) {
        cpu.us += 1_000_000;
        rss.bytes = 130 * MB;
      } else cpu.us += 1_000;
      tick();
    }
    // Every cycle would release without the spacing (30); with it, one a minute.
    assert.equal(releasedAt.length, 10);
    for (let i = 1; i < releasedAt.length; i++) assert.ok(releasedAt[i]! - releasedAt[i - 1]! >= 60_000);
  });

  it('with releaseAfterStart, releases once at the first idle streak whatever RSS is, and that one does not delay the next', () => {
    const { tick, cpu, rss, released, after, releasedAt } = subject(true);
    assert.equal(tick(), false, 'one idle interval is a pause');
    assert.equal(tick(), true, 'start-up garbage, below any slack');
    cpu.us += 10_000;
    assert.equal(tick(), false);
    assert.equal(tick(), false, 'idle without load: once only');
    cpu.us += 3_000_000;
    rss.bytes = 280 * MB;
    assert.equal(tick(), false, 'busy');
    assert.equal(tick(), false);
    assert.equal(tick(), true, 'after load, seconds after the start-up one');
    assert.deepEqual(after, ['start', 'load']);
    assert.deepEqual(released, [80 * MB, 280 * MB]);
    assert.deepEqual(releasedAt, [2 * INTERVAL_MS, 7 * INTERVAL_MS]);
  });

  it('runs a full collection and trims malloc on this process', () => {
    fullGc();
    trimMalloc();
    trimMalloc(); // loaded once, callable again
  });
});
