import assert from 'node:assert/strict';
import {
  isKubeObject,
  objectKey,
  ObjectCache,
  type ChangeEvent,
  type KubeObject,
} from '../../../../lib/kube/object-cache.ts';

function cm(namespace: string, name: string, rv: string, uid = `uid-${namespace}-${name}`): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace, name, resourceVersion: rv, uid } };
}

/** "add ns/name@rv", "update ns/name@old->new", "delete ns/name@rv" */
function summary(events: readonly ChangeEvent<KubeObject>[]): string[] {
  const at = (o: KubeObject): string =>
    `${o.metadata?.namespace}/${o.metadata?.name}@${o.metadata?.resourceVersion}`;
  return events.map((e) =>
    e.type === 'update'
      ? `update ${at(e.old)}->${e.object.metadata?.resourceVersion}`
      : `${e.type} ${at(e.object)}`,
  );
}

describe('kube/object-cache', () => {
  it('keys objects by namespace and name', () => {
    assert.equal(objectKey(cm('a', 'x', '1')), 'a/x');
    assert.equal(objectKey({ metadata: { name: 'ns1' } }), '/ns1');
    assert.equal(objectKey({ metadata: {} }), undefined);
    assert.equal(isKubeObject({ metadata: { name: 'x' } }), true);
    for (const bad of [
      null,
      'x',
      [],
      {},
      { metadata: null },
      { metadata: { name: 3 } },
      { metadata: { name: '' } },
    ]) {
      assert.equal(isKubeObject(bad), false, JSON.stringify(bad));
    }
  });

  it('applies watch events: add, update, delete, and ignores replays of a known version', () => {
    const cache = new ObjectCache<KubeObject>();
    assert.deepEqual(summary(cache.apply('ADDED', cm('a', 'x', '1'))), ['add a/x@1']);
    assert.deepEqual(summary(cache.apply('ADDED', cm('a', 'x', '1'))), [], 'replayed ADDED');
    assert.deepEqual(summary(cache.apply('MODIFIED', cm('a', 'x', '2'))), ['update a/x@1->2']);
    assert.deepEqual(
      summary(cache.apply('MODIFIED', cm('a', 'y', '3'))),
      ['add a/y@3'],
      'MODIFIED of unknown',
    );
    assert.equal(cache.get('a', 'x')?.metadata?.resourceVersion, '2');
    assert.deepEqual(summary(cache.apply('DELETED', cm('a', 'x', '4'))), ['delete a/x@4']);
    assert.deepEqual(summary(cache.apply('DELETED', cm('a', 'x', '4'))), [], 'delete of unknown');
    assert.equal(cache.get('a', 'x'), undefined);
    assert.deepEqual(summary(cache.apply('ADDED', { metadata: {} })), [], 'no name');
    assert.equal(cache.size, 1);
  });

  it('turns a new uid under a known name into delete + add', () => {
    const cache = new ObjectCache<KubeObject>();
    cache.apply('ADDED', cm('a', 'x', '1', 'u1'));
    assert.deepEqual(summary(cache.apply('MODIFIED', cm('a', 'x', '5', 'u2'))), [
      'delete a/x@1',
      'add a/x@5',
    ]);
  });

  it('reconciles a relist: deletes first, then adds and updates in list order, nothing for unchanged', () => {
    const cache = new ObjectCache<KubeObject>();
    cache.replace([
      cm('a', 'keep', '1'),
      cm('a', 'change', '2'),
      cm('b', 'gone', '3'),
      cm('a', 'recreated', '4', 'u1'),
    ]);
    const events = cache.replace([
      cm('c', 'new', '9'),
      cm('a', 'change', '7'),
      cm('a', 'keep', '1'),
      cm('a', 'recreated', '8', 'u2'),
    ]);
    assert.deepEqual(summary(events), [
      'delete b/gone@3',
      'add c/new@9',
      'update a/change@2->7',
      'delete a/recreated@4',
      'add a/recreated@8',
    ]);
    assert.deepEqual(
      cache
        .list()
        .map((o) => objectKey(o))
        .sort(),
      ['a/change', 'a/keep', 'a/recreated', 'c/new'],
    );
    assert.deepEqual(cache.replace(cache.list()), [], 'relisting the same state changes nothing');
  });

  it('reports deletes of everything on an empty relist, with the cached objects', () => {
    const cache = new ObjectCache<KubeObject>();
    cache.replace([cm('a', 'x', '1'), { metadata: { name: 'cluster-scoped', resourceVersion: '2' } }]);
    const events = cache.replace([]);
    assert.deepEqual(
      events.map((e) => [e.type, objectKey(e.object)]),
      [
        ['delete', 'a/x'],
        ['delete', '/cluster-scoped'],
      ],
    );
    assert.equal(cache.size, 0);
  });

  it('treats objects without a resource version as changed', () => {
    const cache = new ObjectCache<KubeObject>();
    cache.replace([{ metadata: { name: 'x' } }]);
    assert.deepEqual(
      cache.replace([{ metadata: { name: 'x' } }]).map((e) => e.type),
      ['update'],
    );
  });
});
