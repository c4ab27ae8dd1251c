import assert from 'node:assert/strict';
import { setImmediate } from 'node:timers/promises';
import {
  CONTROL_PLANE_ANNOTATION,
  TRUST_BUNDLE_CONFIGMAP,
  TRUST_BUNDLE_KEY,
  TrustBundlePublisher,
  trustBundleWrite,
  type BundleConfigMap,
  type ConfigMapStore,
} from '../../../controller/trust-bundle-publisher.ts';
import { ManualClock } from '../../support/manual-clock.ts';
import { waitFor } from '../../support/wait-for.ts';

const PLANE = 'sluice-system';

describe('trustBundleWrite', function () {
  it('creates a missing ConfigMap, owned by this control plane', function () {
    const write = trustBundleWrite('app', 'B1', undefined, PLANE);
    assert.ok(write && write !== 'foreign');
    assert.equal(write.verb, 'create');
    assert.equal(write.body.metadata?.name, TRUST_BUNDLE_CONFIGMAP);
    assert.equal(write.body.metadata.namespace, 'app');
    assert.equal(write.body.metadata.annotations?.[CONTROL_PLANE_ANNOTATION], PLANE);
    assert.deepEqual(write.body.data, { [TRUST_BUNDLE_KEY]: 'B1' });
  });

  it('writes nothing when the bundle is already there', function () {
    const existing = trustBundleWrite('app', 'B1', undefined, PLANE);
    assert.ok(existing && existing !== 'foreign');
    assert.equal(trustBundleWrite('app', 'B1', existing.body, PLANE), undefined);
  });

  it('replaces a changed bundle, keeping resourceVersion and other keys', function () {
    const existing: BundleConfigMap = {
      metadata: {
        name: TRUST_BUNDLE_CONFIGMAP,
        resourceVersion: '7',
        labels: { team: 'x' },
        annotations: { [CONTROL_PLANE_ANNOTATION]: PLANE },
      },
      data: { [TRUST_BUNDLE_KEY]: 'old', other: 'kept' },
    };
    const write = trustBundleWrite('app', 'B2', existing, PLANE);
    assert.ok(write && write !== 'foreign');
    assert.equal(write.verb, 'replace');
    assert.equal(write.body.metadata?.resourceVersion, '7');
    assert.equal(write.body.metadata.labels?.team, 'x');
    assert.deepEqual(write.body.data, { [TRUST_BUNDLE_KEY]: 'B2', other: 'kept' });
  });

  it('takes over an unowned ConfigMap even when the bundle matches (marks it)', function () {
    const write = trustBundleWrite('app', 'B1', { metadata: {}, data: { [TRUST_BUNDLE_KEY]: 'B1' } }, PLANE);
    assert.ok(write && write !== 'foreign');
    assert.equal(write.verb, 'replace');
  });

  it("leaves another control plane's ConfigMap alone", function () {
    const foreign: BundleConfigMap = {
      metadata: { annotations: { [CONTROL_PLANE_ANNOTATION]: 'other-system' } },
      data: { [TRUST_BUNDLE_KEY]: 'theirs' },
    };
    assert.equal(trustBundleWrite('app', 'B1', foreign, PLANE), 'foreign');
  });
});

/** An in-memory ConfigMap store (pure-logic test of the publisher's queue). */
class MemoryStore implements ConfigMapStore {
  readonly maps = new Map<string, BundleConfigMap>();
  readonly calls: string[] = [];
  failures = 0;
  async get(namespace: string): Promise<BundleConfigMap | undefined> {
    await setImmediate(); // answers in a later turn, as the API server would
    this.calls.push(`get ${namespace}`);
    if (this.failures > 0) {
      this.failures--;
      throw new Error('unavailable');
    }
    return this.maps.get(namespace);
  }
  create(namespace: string, configMap: BundleConfigMap): Promise<boolean> {
    this.calls.push(`create ${namespace}`);
    if (this.maps.has(namespace)) return Promise.resolve(false);
    this.maps.set(namespace, configMap);
    return Promise.resolve(true);
  }
  replace(namespace: string, _name: string, configMap: BundleConfigMap): Promise<boolean> {
    this.calls.push(`replace ${namespace}`);
    this.maps.set(namespace, configMap);
    return Promise.resolve(true);
  }
  describe(error: unknown): string {
    return String(error);
  }
}

/** Waits until the publisher has nothing queued or in flight. */
async function settled(publisher: TrustBundlePublisher): Promise<void> {
  await waitFor('the publisher to settle', () => publisher.idle);
}

describe('TrustBundlePublisher', function () {
  it('writes only while started, to every namespace, and again when the bundle changes', async function () {
    const store = new MemoryStore();
    const namespaces = ['a', 'b', 'c'];
    const publisher = new TrustBundlePublisher({
      store,
      controlPlane: PLANE,
      namespaces: () => namespaces,
      log: () => undefined,
    });
    publisher.setBundle('B1');
    assert.ok(publisher.idle);
    assert.deepEqual(store.calls, [], 'not leader: no calls');

    const leading = new AbortController();
    publisher.start(leading.signal);
    await settled(publisher);
    assert.deepEqual([...store.maps.keys()].sort(), namespaces);
    assert.equal(publisher.stats.created, 3);

    namespaces.push('d');
    publisher.namespaceAdded('d');
    await settled(publisher);
    assert.equal(store.maps.get('d')?.data?.[TRUST_BUNDLE_KEY], 'B1');

    publisher.setBundle('B2');
    await settled(publisher);
    assert.ok([...store.maps.values()].every((cm) => cm.data?.[TRUST_BUNDLE_KEY] === 'B2'));
    assert.equal(publisher.stats.updated, 4);

    leading.abort();
    store.calls.length = 0;
    publisher.setBundle('B3');
    publisher.namespaceAdded('e');
    assert.ok(publisher.idle, 'stopped leading: nothing queued');
    assert.deepEqual(store.calls, [], 'stopped leading: no calls');
  });

  it('retries a failed namespace after 0.5-1 s (jitter), then 1-2 s', async function () {
    const store = new MemoryStore();
    store.failures = 2;
    const clock = new ManualClock();
    const publisher = new TrustBundlePublisher({
      store,
      controlPlane: PLANE,
      namespaces: () => ['a'],
      log: () => undefined,
      clock,
      random: () => 0.5,
    });
    publisher.setBundle('B1');
    const leading = new AbortController();
    publisher.start(leading.signal);
    await settled(publisher);
    assert.equal(publisher.stats.failed, 1);
    clock.advance(749);
    assert.deepEqual(store.calls, ['get a'], 'no retry before 750 ms');
    clock.advance(1);
    await settled(publisher);
    assert.deepEqual(store.calls, ['get a', 'get a']);
    assert.equal(publisher.stats.failed, 2);
    clock.advance(1499);
    assert.ok(publisher.idle);
    assert.equal(store.maps.get('a'), undefined, 'no second retry before 1.5 s');
    clock.advance(1);
    await settled(publisher);
    assert.equal(store.maps.get('a')?.data?.[TRUST_BUNDLE_KEY], 'B1');
    leading.abort();
  });

  it('checks every namespace again at each resync while leading', async function () {
    const store = new MemoryStore();
    const clock = new ManualClock();
    const publisher = new TrustBundlePublisher({
      store,
      controlPlane: PLANE,
      namespaces: () => ['a'],
      log: () => undefined,
      clock,
      resyncMs: 60_000,
    });
    publisher.setBundle('B1');
    const leading = new AbortController();
    publisher.start(leading.signal);
    await settled(publisher);
    store.maps.delete('a'); // someone deleted it
    clock.advance(60_000);
    await settled(publisher);
    assert.equal(store.maps.get('a')?.data?.[TRUST_BUNDLE_KEY], 'B1');
    assert.equal(publisher.stats.created, 2);
    leading.abort();
    assert.equal(clock.pending, 0, 'no resync timer after leading stopped');
  });
});
