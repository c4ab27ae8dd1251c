import assert from 'node:assert/strict';
import { ConfigHub, type ConfigSubscriber, type PushInfo } from '../../../controller/config-hub.ts';
import { parseFrame, type ConfigFrame, type DeltaFrame } from '../../../protocol/config-protocol.ts';
import type { K8sObject } from '../../../mesh-model/k8s-objects.ts';
import { ManualClock } from '../../support/manual-clock.ts';

/** A subscriber that records what it is sent; its queue size is set by the test. */
class Recorder implements ConfigSubscriber {
  readonly namespace: string;
  readonly chunks: Buffer[] = [];
  queued = 0;
  dropped: string | undefined;

  constructor(namespace: string) {
    this.namespace = namespace;
  }

  write(frame: Buffer): void {
    this.chunks.push(frame);
  }

  bufferedBytes(): number {
    return this.queued;
  }

  drop(reason: string): void {
    this.dropped = reason;
  }

  dropReason(): string {
    return this.dropped ?? '';
  }

  frames(): ConfigFrame[] {
    return Buffer.concat(this.chunks)
      .toString('utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => {
        const f = parseFrame(l);
        assert.ok(typeof f !== 'string', f as string);
        return f;
      });
  }

  deltas(): DeltaFrame[] {
    return this.frames().filter((f): f is DeltaFrame => f.type === 'delta');
  }

  /** The objects a client would hold after applying every frame, by key. */
  state(): Map<string, K8sObject> {
    const map = new Map<string, K8sObject>();
    let version: string | undefined;
    for (const f of this.frames()) {
      if (f.type === 'snapshot') {
        map.clear();
        for (const o of f.objects) map.set(key(o), o);
        version = f.version;
      } else if (f.type === 'delta') {
        assert.equal(f.base, version, 'delta must chain on the previous version');
        for (const k of f.removals) map.delete(k);
        for (const o of f.upserts) map.set(key(o), o);
        version = f.version;
      }
    }
    return map;
  }
}

const key = (o: K8sObject): string => `${o.kind}/${o.metadata?.namespace}/${o.metadata?.name}`;

function service(namespace: string, name: string, ip = '10.96.0.1'): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace, name, resourceVersion: '1' } as K8sObject['metadata'],
    spec: { clusterIP: ip, ports: [{ port: 80 }] },
  };
}

function route(namespace: string, name: string, parentNamespace: string | undefined, path = '/'): K8sObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { namespace, name },
    spec: {
      parentRefs: [
        { kind: 'Service', name: 'reviews', ...(parentNamespace ? { namespace: parentNamespace } : {}) },
      ],
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: path } }],
          backendRefs: [{ name: 'reviews', port: 80 }],
        },
      ],
    },
  };
}

function syncedHub(objects: K8sObject[] = [], pushes: PushInfo[] = []): ConfigHub {
  const hub = new ConfigHub({
    epoch: 'e1',
    debounceMs: 10_000,
    maxDelayMs: 10_000,
    metrics: { onPush: (p) => pushes.push(p) },
  });
  for (const o of objects) hub.upsert(o);
  hub.markSynced();
  return hub;
}

describe('config hub', () => {
  it('serves nobody before the informers have synced', () => {
    const hub = new ConfigHub();
    hub.upsert(service('shop', 'reviews'));
    assert.equal(hub.synced, false);
    assert.throws(() => hub.subscribe(new Recorder('a')), /not synced/);
    hub.markSynced();
    const a = new Recorder('a');
    hub.subscribe(a);
    assert.deepEqual([...a.state().keys()], ['Service/shop/reviews']);
    hub.close();
  });

  it('sends a snapshot of the scope, consumer routes only to their namespace', () => {
    const hub = syncedHub([
      service('shop', 'reviews'),
      route('shop', 'producer', undefined),
      route('a', 'consumer-a', 'shop'),
      route('b', 'consumer-b', 'shop'),
      route('shop', 'no-parents', undefined),
      { kind: 'ConfigMap', metadata: { name: 'ignored' } },
    ]);
    hub.upsert({ ...route('shop', 'no-parents', undefined), spec: { rules: [] } });
    hub.flush();
    const a = new Recorder('a');
    const b = new Recorder('b');
    const shop = new Recorder('shop');
    for (const r of [a, b, shop]) hub.subscribe(r);
    assert.deepEqual([...a.state().keys()].sort(), [
      'HTTPRoute/a/consumer-a',
      'HTTPRoute/shop/producer',
      'Service/shop/reviews',
    ]);
    assert.deepEqual([...b.state().keys()].sort(), [
      'HTTPRoute/b/consumer-b',
      'HTTPRoute/shop/producer',
      'Service/shop/reviews',
    ]);
    assert.deepEqual([...shop.state().keys()].sort(), ['HTTPRoute/shop/producer', 'Service/shop/reviews']);
    // the objects are stripped
    assert.equal(
      (a.state().get('Service/shop/reviews')!.metadata as Record<string, unknown>).resourceVersion,
      undefined,
    );
    // the shared part of the snapshot is one Buffer for everybody
    assert.equal(a.chunks[1], b.chunks[1]);
    hub.close();
  });

  it('sends a change as one delta, the same Buffer to every subscriber with the same base', () => {
    const pushes: PushInfo[] = [];
    const hub = syncedHub([service('shop', 'reviews'), route('shop', 'producer', undefined)], pushes);
    const subs = [new Recorder('a'), new Recorder('a'), new Recorder('b')];
    for (const s of subs) hub.subscribe(s);
    const snapshotVersion = hub.version;
    hub.upsert(route('shop', 'producer', undefined, '/v2'));
    hub.upsert(service('shop', 'reviews-v2', '10.96.0.2'));
    hub.remove(service('shop', 'reviews'));
    hub.flush();
    const frames = subs.map((s) => s.chunks.at(-1));
    assert.equal(frames[0], frames[1]);
    assert.equal(frames[0], frames[2]);
    const d = subs[0]!.deltas();
    assert.equal(d.length, 1);
    assert.equal(d[0]!.base, snapshotVersion);
    assert.equal(d[0]!.version, hub.version);
    assert.notEqual(hub.version, snapshotVersion);
    assert.deepEqual(d[0]!.upserts.map(key).sort(), ['HTTPRoute/shop/producer', 'Service/shop/reviews-v2']);
    assert.deepEqual(d[0]!.removals, ['Service/shop/reviews']);
    assert.deepEqual(
      subs[2]!.state(),
      new Map([
        ['HTTPRoute/shop/producer', subs[2]!.state().get('HTTPRoute/shop/producer')!],
        ['Service/shop/reviews-v2', subs[2]!.state().get('Service/shop/reviews-v2')!],
      ]),
    );
    assert.equal(pushes.at(-1)!.subscribers, 3);
    assert.equal(pushes.at(-1)!.frames, 1);
    assert.equal(pushes.at(-1)!.changes, 3);
    assert.ok(pushes.at(-1)!.latencyMs >= 0);
    hub.close();
  });

  it('sends nothing for changes the model does not see, or that are undone within a batch', () => {
    const hub = syncedHub([service('shop', 'reviews'), route('shop', 'producer', undefined)]);
    const a = new Recorder('a');
    hub.subscribe(a);
    const version = hub.version;
    hub.upsert({ ...service('shop', 'reviews'), status: { loadBalancer: { ingress: [] } } });
    hub.upsert({
      ...service('shop', 'reviews'),
      metadata: { namespace: 'shop', name: 'reviews', annotations: { x: 'y' } },
    });
    assert.equal(hub.stats().pendingChanges, 0);
    hub.upsert(route('shop', 'producer', undefined, '/changed'));
    hub.upsert(route('shop', 'producer', undefined));
    hub.remove(service('shop', 'missing'));
    hub.upsert(service('shop', 'temporary'));
    hub.remove(service('shop', 'temporary'));
    hub.flush();
    assert.equal(a.deltas().length, 0);
    assert.equal(hub.version, version);
    hub.close();
  });

  it('keeps each namespace on its own version chain when only its consumer routes change', () => {
    const hub = syncedHub([service('shop', 'reviews')]);
    const a = new Recorder('a');
    const b = new Recorder('b');
    hub.subscribe(a);
    hub.subscribe(b);
    hub.upsert(route('a', 'consumer-a', 'shop'));
    hub.flush();
    assert.equal(a.deltas().length, 1);
    assert.equal(b.deltas().length, 0);
    hub.upsert(service('shop', 'other'));
    hub.flush();
    const [da, db] = [a.deltas().at(-1)!, b.deltas().at(-1)!];
    assert.notEqual(da.base, db.base, 'b never saw the version of the consumer change');
    assert.notEqual(a.chunks.at(-1), b.chunks.at(-1));
    assert.equal(da.version, db.version);
    a.state();
    b.state(); // both chains verify
    assert.ok(!b.state().has('HTTPRoute/a/consumer-a'));
    hub.close();
  });

  it('moves a route between scopes when its parents change', () => {
    const hub = syncedHub([service('shop', 'reviews'), route('a', 'r', 'shop')]);
    const a = new Recorder('a');
    const b = new Recorder('b');
    hub.subscribe(a);
    hub.subscribe(b);
    const has = (r: Recorder): boolean => r.state().has('HTTPRoute/a/r');
    assert.deepEqual([has(a), has(b)], [true, false]);

    // consumer → producer (parent moved into the route's namespace): everybody gets it
    hub.upsert(route('a', 'r', 'a'));
    hub.flush();
    assert.deepEqual([has(a), has(b)], [true, true]);
    assert.deepEqual(b.deltas().at(-1)!.upserts.map(key), ['HTTPRoute/a/r']);

    // producer → consumer: b loses it, a gets the new content
    hub.upsert(route('a', 'r', 'shop', '/x'));
    hub.flush();
    assert.deepEqual(b.deltas().at(-1)!.removals, ['HTTPRoute/a/r']);
    assert.deepEqual(a.deltas().at(-1)!.upserts.map(key), ['HTTPRoute/a/r']);
    assert.deepEqual([has(a), has(b)], [true, false]);

    // consumer → no Service parent: a loses it, b hears nothing
    const bDeltas = b.deltas().length;
    hub.upsert({ ...route('a', 'r', undefined), spec: { parentRefs: [{ kind: 'Gateway', name: 'gw' }] } });
    hub.flush();
    assert.deepEqual(a.deltas().at(-1)!.removals, ['HTTPRoute/a/r']);
    assert.equal(b.deltas().length, bDeltas);
    assert.deepEqual([has(a), has(b)], [false, false]);

    // and back into consumer scope
    hub.upsert(route('a', 'r', 'shop'));
    hub.flush();
    assert.deepEqual([has(a), has(b)], [true, false]);
    hub.close();
  });

  it('snapshots what was sent, so a delta after it chains correctly', () => {
    const hub = syncedHub([service('shop', 'reviews')]);
    hub.upsert(service('shop', 'pending'));
    const a = new Recorder('a');
    hub.subscribe(a);
    assert.deepEqual([...a.state().keys()], ['Service/shop/reviews']);
    hub.flush();
    assert.deepEqual([...a.state().keys()].sort(), ['Service/shop/pending', 'Service/shop/reviews']);
    // a scope that empties and comes back starts from the current state
    const unsubscribe = hub.subscribe(new Recorder('z'));
    unsubscribe();
    unsubscribe();
    assert.equal(hub.stats().subscribers, 1);
    const z = new Recorder('z');
    hub.subscribe(z);
    assert.deepEqual([...z.state().keys()].sort(), ['Service/shop/pending', 'Service/shop/reviews']);
    hub.close();
  });

  it('drops a subscriber that has too much queued beyond its snapshot', () => {
    const drops: [string, number][] = [];
    const hub = new ConfigHub({
      epoch: 'e',
      debounceMs: 10_000,
      maxQueuedBytes: 1000,
      metrics: { onDrop: (ns, q) => drops.push([ns, q]) },
    });
    for (let i = 0; i < 20; i++) hub.upsert(service('shop', `s${i}`));
    hub.markSynced();
    const slow = new Recorder('a');
    const fine = new Recorder('a');
    hub.subscribe(slow);
    hub.subscribe(fine);
    const snapshotBytes = Buffer.concat(slow.chunks).length;
    assert.ok(snapshotBytes > 1000);
    slow.queued = snapshotBytes + 900; // still within its allowance
    hub.upsert(service('shop', 'x1'));
    hub.flush();
    assert.equal(slow.dropped, undefined);
    slow.queued = snapshotBytes + 1001;
    hub.upsert(service('shop', 'x2'));
    hub.flush();
    assert.match(slow.dropReason(), /queued/);
    assert.deepEqual(drops, [['a', snapshotBytes + 1001]]);
    assert.equal(fine.deltas().length, 2);
    assert.equal(slow.deltas().length, 1);
    assert.equal(hub.stats().subscribers, 1);
    assert.equal(hub.stats().dropped, 1);
    hub.close();
  });

  it('debounces changes and sends at most maxDelayMs after the first one', () => {
    const pushes: PushInfo[] = [];
    const clock = new ManualClock(1000);
    const hub = new ConfigHub({
      debounceMs: 30,
      maxDelayMs: 60,
      clock,
      metrics: { onPush: (p) => pushes.push(p) },
    });
    hub.markSynced();
    const a = new Recorder('a');
    hub.subscribe(a);
    hub.upsert(service('shop', 's0'));
    clock.advance(20);
    hub.upsert(service('shop', 's1'));
    clock.advance(29);
    assert.equal(pushes.length, 0, 'less than 30 ms of quiet so far');
    clock.advance(1);
    assert.equal(pushes.length, 1, 'the two changes went out together');
    assert.equal(pushes[0]!.changes, 2);
    assert.equal(pushes[0]!.latencyMs, 50, 'measured from the first change');

    // a change every 5 ms never leaves 30 ms of quiet, yet a frame goes out every 60 ms while it lasts
    for (let i = 0; i < 40; i++) {
      hub.upsert(service('shop', `t${i}`));
      clock.advance(5);
    }
    assert.equal(pushes.length - 1, 3, 'pushes while changing (200 ms)');
    assert.ok(pushes.slice(1).every((p) => p.latencyMs === 60));
    clock.advance(30);
    assert.equal(pushes.length, 5);
    assert.equal(clock.pending, 0);
    assert.equal(a.state().size, 42);
    hub.close();
  });

  it('reports its state', () => {
    const counts: number[] = [];
    const hub = new ConfigHub({ epoch: 'x', metrics: { onSubscribers: (n) => counts.push(n) } });
    hub.upsert(service('shop', 'a'));
    hub.markSynced();
    const r = new Recorder('a');
    r.queued = 77;
    const off = hub.subscribe(r);
    assert.deepEqual(hub.stats(), {
      version: 'x:1',
      synced: true,
      objects: 1,
      pendingChanges: 0,
      namespaces: 1,
      subscribers: 1,
      maxQueuedBytes: 77,
      totalQueuedBytes: 77,
      dropped: 0,
    });
    off();
    assert.deepEqual(counts, [1, 0]);
    assert.equal(hub.stats().namespaces, 0);
    hub.close();
    assert.throws(() => hub.subscribe(r), /closed/);
  });
});
