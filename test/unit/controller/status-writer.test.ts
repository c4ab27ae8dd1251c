import assert from 'node:assert/strict';
import { TokenBucket } from '../../../lib/token-bucket.ts';
import { KubeApi } from '../../../lib/kube/kube-api.ts';
import { fixedCredentials } from '../../../lib/kube/kube-credentials.ts';
import { CoalescingQueue, StatusWriter, createMergePatch } from '../../../controller/status-writer.ts';

/** A promise with its resolve, to hold a queue worker until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('status writer: coalescing queue', () => {
  it('keeps only the latest item per key, in the order keys were first queued', async () => {
    const seen: string[] = [];
    const hold = gate();
    const queue = new CoalescingQueue<string>(1, async (key, item) => {
      seen.push(`${key}=${item}`);
      await hold.promise;
    });
    assert.equal(queue.add('blocker', 'x'), undefined);
    assert.equal(queue.add('a', 'a1'), undefined);
    assert.equal(queue.add('b', 'b1'), undefined);
    assert.equal(queue.add('a', 'a2'), 'a1', 'the replaced item is handed back');
    assert.equal(queue.add('a', 'a3'), 'a2');
    assert.equal(queue.pending, 2);
    hold.open();
    await queue.whenIdle();
    assert.deepEqual(seen, ['blocker=x', 'a=a3', 'b=b1']);
  });

  it('never runs one key twice at once: an add while it runs waits for it', async () => {
    const seen: string[] = [];
    let running = 0;
    let maxSameKey = 0;
    const holds = [gate(), gate()];
    const queue = new CoalescingQueue<number>(4, async (_key, item) => {
      running++;
      maxSameKey = Math.max(maxSameKey, running);
      seen.push(`start ${item}`);
      await holds[item]?.promise;
      seen.push(`end ${item}`);
      running--;
    });
    queue.add('route', 0);
    await tick();
    queue.add('route', 1);
    await tick();
    assert.deepEqual(seen, ['start 0'], 'the second waits although there is room for 4');
    assert.equal(queue.pending, 1);
    assert.equal(queue.running, 1);
    holds[0]!.open();
    holds[1]!.open();
    await queue.whenIdle();
    assert.deepEqual(seen, ['start 0', 'end 0', 'start 1', 'end 1']);
    assert.equal(maxSameKey, 1);
  });

  it('runs at most `concurrency` keys at once', async () => {
    let running = 0;
    let peak = 0;
    let done = 0;
    const queue = new CoalescingQueue<number>(3, async () => {
      running++;
      peak = Math.max(peak, running);
      await tick();
      running--;
      done++;
    });
    for (let i = 0; i < 20; i++) queue.add(`route-${i}`, i);
    assert.equal(queue.running, 3);
    assert.equal(queue.pending, 17);
    await queue.whenIdle();
    assert.equal(done, 20);
    assert.equal(peak, 3);
  });

  it('drain() hands back everything pending; a throwing worker does not stall the queue', async () => {
    const hold = gate();
    const seen: string[] = [];
    const queue = new CoalescingQueue<string>(1, async (key) => {
      seen.push(key);
      if (key === 'boom') throw new Error('worker bug');
      await hold.promise;
    });
    queue.add('boom', 'x');
    queue.add('a', 'a');
    queue.add('b', 'b');
    await tick();
    assert.deepEqual(queue.drain(), ['b']);
    hold.open();
    await queue.whenIdle();
    assert.deepEqual(seen, ['boom', 'a']);
    assert.equal(queue.pending, 0);
  });

  it('rejects a concurrency below 1', () => {
    assert.throws(() => new CoalescingQueue(0, () => Promise.resolve()), RangeError);
  });
});

describe('token bucket', () => {
  it('allows a burst, then one request per 1/qps', () => {
    let now = 0;
    const bucket = new TokenBucket(10, 3, () => now);
    assert.deepEqual([bucket.reserve(), bucket.reserve(), bucket.reserve()], [0, 0, 0]);
    assert.equal(bucket.reserve(), 100, 'the 4th waits 100 ms');
    assert.equal(bucket.reserve(), 200, 'reservations queue up');
    now = 1000;
    // 10 tokens came in, 2 were owed: 3 available (the burst caps it).
    assert.equal(bucket.reserve(), 0);
    now = 60_000;
    assert.deepEqual(
      [bucket.reserve(), bucket.reserve(), bucket.reserve(), bucket.reserve()],
      [0, 0, 0, 100],
    );
  });

  it('turns callers away without taking a token when empty (tryTake)', () => {
    let now = 0;
    const bucket = new TokenBucket(10, 2, () => now);
    assert.deepEqual([bucket.tryTake(), bucket.tryTake()], [0, 0]);
    assert.equal(bucket.tryTake(), 100, 'empty: the next token in 100 ms');
    assert.equal(bucket.tryTake(), 100, 'a refusal costs nothing');
    now = 100;
    assert.equal(bucket.tryTake(), 0);
  });

  it('rejects nonsense limits', () => {
    assert.throws(() => new TokenBucket(0, 1), RangeError);
    assert.throws(() => new TokenBucket(5, 0), RangeError);
  });
});

describe('status writer: merge patch of the status', () => {
  const entry = (controllerName: string) => ({
    parentRef: { kind: 'Service', name: 'svc' },
    controllerName,
    conditions: [{ type: 'Accepted', status: 'True' }],
  });

  it('is empty when nothing changes (key order and undefined members do not count)', () => {
    const status = { parents: [entry('a/b')] };
    assert.deepEqual(createMergePatch(status, { parents: [entry('a/b')], other: undefined }), {});
    assert.deepEqual(createMergePatch({ x: { b: 1, a: 2 } }, { x: { a: 2, b: 1 } }), {});
  });

  it('sends lists whole (they replace the list on the server)', () => {
    const before = { parents: [entry('x.io/gw')] };
    const after = { parents: [entry('x.io/gw'), entry('sluice.dev/mesh')] };
    assert.deepEqual(createMergePatch(before, after), after);
  });

  it('nulls removed members and patches nested objects member by member', () => {
    assert.deepEqual(createMergePatch({ a: 1, b: { c: 1, d: 2 }, e: [1] }, { b: { c: 1, d: 3 } }), {
      a: null,
      b: { d: 3 },
      e: null,
    });
    assert.deepEqual(createMergePatch(undefined, { parents: [] }), { parents: [] });
    assert.deepEqual(createMergePatch('not an object', { parents: [] }), { parents: [] });
  });
});

describe('status writer: while not started', () => {
  // Never contacted: nothing is written before start().
  const api = new KubeApi({ server: 'https://127.0.0.1:9', credentials: fixedCredentials({}) });

  it('drops requests (only the leader writes) and rejects things that are not routes', async () => {
    const logs: string[] = [];
    const writer = new StatusWriter({ api, log: (m) => logs.push(m) });
    const compute = () => ({ parents: [] });
    const ref = { kind: 'HTTPRoute' as const, namespace: 'app', name: 'r' };
    assert.deepEqual(await writer.write(ref, compute), { outcome: 'stopped' });
    const start = new AbortController();
    writer.start(start.signal);
    for (const bad of [
      { kind: 'Service', metadata: { namespace: 'app', name: 'svc' } },
      { kind: 'HTTPRoute', metadata: { name: 'no-namespace' } },
      { kind: 'GRPCRoute', namespace: '', name: 'x' },
    ]) {
      assert.deepEqual(await writer.write(bad as never, compute), { outcome: 'failed' });
    }
    start.abort();
    await writer.stop();
    assert.equal(writer.active, false, 'the start signal stopped it');
    assert.deepEqual(await writer.write(ref, compute), { outcome: 'stopped' });
    const m = writer.metrics();
    assert.deepEqual(m.requests, { get: 0, patch: 0 });
    assert.equal(m.dropped, 2);
    assert.equal(m.errors, 3);
    assert.equal(logs.length, 3);
  });
});
