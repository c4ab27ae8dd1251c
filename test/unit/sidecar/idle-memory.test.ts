// When the sidecar gives memory back: once per busy-then-idle transition, only when RSS grew. Fake CPU and RSS
// readings (pure logic); the real release (full GC, malloc_trim) is exercised on this process.
import assert from 'node:assert/strict';
import { IdleMemory, fullGc, trimMalloc } from '../../../sidecar/idle-memory.ts';

const MB = 2 ** 20;

function subject(): { idle: IdleMemory; cpu: { us: number }; rss: { bytes: number }; released: number[] } {
  const cpu = { us: 0 };
  const rss = { bytes: 80 * MB };
  const released: number[] = [];
  const idle = new IdleMemory({
    cpuMicros: () => cpu.us,
    rssBytes: () => rss.bytes,
    release: () => {
      released.push(rss.bytes);
      rss.bytes = 90 * MB; // what a release gets back to
    },
    intervalMs: 5000,
    idleCpuShare: 0.02, // 100 ms of CPU in 5 s
    idleIntervals: 2,
    slackBytes: 16 * MB,
  });
  return { idle, cpu, rss, released };
}

describe('idle memory release', () => {
  it('releases once when a busy period that grew RSS is followed by an idle interval', () => {
    const { idle, cpu, rss, released } = subject();
    cpu.us += 3_000_000; // busy: 3 s of CPU in 5 s
    rss.bytes = 280 * MB;
    assert.equal(idle.tick(), false, 'not while busy');
    cpu.us += 10_000; // idle: 10 ms
    assert.equal(idle.tick(), false, 'one idle interval is a pause');
    assert.equal(idle.tick(), true);
    assert.deepEqual(released, [280 * MB]);
    cpu.us += 10_000;
    rss.bytes = 120 * MB; // still above the floor, but nothing ran since the release
    assert.equal(idle.tick(), false);
    assert.equal(idle.releases, 1);
  });

  it('leaves memory alone when a busy period did not grow it, or the load goes on', () => {
    const { idle, cpu, rss, released } = subject();
    cpu.us += 2_000_000;
    rss.bytes = 90 * MB; // within the slack of the start-up level
    idle.tick();
    cpu.us += 1_000;
    assert.equal(idle.tick(), false);
    assert.equal(idle.tick(), false);
    for (let i = 0; i < 5; i++) {
      cpu.us += 1_000_000; // steady load: never idle
      rss.bytes = 200 * MB;
      assert.equal(idle.tick(), false);
    }
    assert.deepEqual(released, []);
  });

  it('releases again after the next busy period', () => {
    const { idle, cpu, rss } = subject();
    for (let round = 0; round < 2; round++) {
      cpu.us += 1_000_000;
      rss.bytes = 200 * MB;
      idle.tick();
      idle.tick();
      assert.equal(idle.tick(), true, `round ${round}`);
    }
    assert.equal(idle.releases, 2);
  });

  it('runs a full collection and trims malloc on this process', () => {
    fullGc();
    trimMalloc();
    trimMalloc(); // loaded once, callable again
  });
});
