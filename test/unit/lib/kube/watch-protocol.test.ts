import assert from 'node:assert/strict';
import {
  describeStatus,
  isGone,
  LineSplitter,
  parseWatchEvent,
  watchWasHealthy,
} from '../../../../lib/kube/watch-protocol.ts';
import { collectionPath, describeResource, RESOURCES } from '../../../../lib/kube/resources.ts';

describe('kube/watch-protocol', () => {
  it('splits a stream into lines across chunk boundaries, skipping blank lines', () => {
    const lines = new LineSplitter(100);
    assert.deepEqual(lines.push('{"a":'), []);
    assert.deepEqual(lines.push('1}\n\n{"b"'), ['{"a":1}']);
    assert.deepEqual(lines.push(':2}\n{"c":3}\n'), ['{"b":2}', '{"c":3}']);
    assert.deepEqual(lines.push(''), []);
  });

  it('refuses a line longer than the limit', () => {
    const lines = new LineSplitter(10);
    lines.push('12345');
    assert.throws(() => lines.push('678901'), /longer than 10/);
  });

  it('parses object events, bookmarks and errors; skips anything malformed', () => {
    const object = { kind: 'ConfigMap', metadata: { name: 'x', resourceVersion: '5' } };
    assert.deepEqual(parseWatchEvent(JSON.stringify({ type: 'MODIFIED', object })), {
      type: 'MODIFIED',
      object,
    });
    assert.deepEqual(
      parseWatchEvent(
        '{"type":"BOOKMARK","object":{"kind":"ConfigMap","metadata":{"resourceVersion":"12"}}}',
      ),
      { type: 'BOOKMARK', resourceVersion: '12' },
    );
    assert.deepEqual(
      parseWatchEvent(
        '{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 1 (9)"}}',
      ),
      { type: 'ERROR', status: { code: 410, reason: 'Expired', message: 'too old resource version: 1 (9)' } },
    );
    assert.deepEqual(parseWatchEvent('{"type":"ERROR","object":"nonsense"}'), { type: 'ERROR', status: {} });
    for (const bad of [
      'not json',
      'null',
      '[]',
      '{"type":"ADDED"}',
      '{"type":"ADDED","object":{"metadata":{}}}',
      '{"type":"BOOKMARK","object":{"metadata":{}}}',
      '{"type":"WHATEVER","object":{"metadata":{"name":"x"}}}',
    ]) {
      assert.equal(parseWatchEvent(bad), undefined, bad);
    }
  });

  it('recognises 410 Gone / Expired', () => {
    assert.equal(isGone({ code: 410 }), true);
    assert.equal(isGone({ reason: 'Expired' }), true);
    assert.equal(isGone({ code: 500, reason: 'InternalError' }), false);
    assert.equal(isGone({}), false);
  });

  it('describes a Status in one line', () => {
    assert.equal(
      describeStatus({ code: 403, reason: 'Forbidden', message: 'pods is forbidden:\n user x' }, 'x'),
      '403 Forbidden: pods is forbidden: user x',
    );
    assert.equal(describeStatus({}, 'fallback'), 'fallback');
    assert.equal(describeStatus({ message: 'm' }, 'f'), 'm');
  });

  it('counts a watch healthy after the healthy period, or at a clean server-side timeout', () => {
    const base = { requestedTimeoutMs: 300_000, healthyAfterMs: 30_000 };
    assert.equal(watchWasHealthy({ ...base, connectedMs: undefined, closedCleanly: false }), false);
    assert.equal(watchWasHealthy({ ...base, connectedMs: 1000, closedCleanly: false }), false);
    assert.equal(watchWasHealthy({ ...base, connectedMs: 1000, closedCleanly: true }), false);
    assert.equal(watchWasHealthy({ ...base, connectedMs: 30_000, closedCleanly: false }), true);
    const short = { requestedTimeoutMs: 2000, healthyAfterMs: 30_000 };
    assert.equal(watchWasHealthy({ ...short, connectedMs: 1900, closedCleanly: true }), true);
    assert.equal(watchWasHealthy({ ...short, connectedMs: 1900, closedCleanly: false }), false);
    assert.equal(watchWasHealthy({ ...short, connectedMs: 100, closedCleanly: true }), false);
  });

  it('builds collection paths for core, grouped and cluster-scoped types', () => {
    assert.equal(collectionPath(RESOURCES.services), '/api/v1/services');
    assert.equal(collectionPath(RESOURCES.pods, 'ns-1'), '/api/v1/namespaces/ns-1/pods');
    assert.equal(
      collectionPath(RESOURCES.endpointSlices, 'a'),
      '/apis/discovery.k8s.io/v1/namespaces/a/endpointslices',
    );
    assert.equal(
      collectionPath(RESOURCES.referenceGrants),
      '/apis/gateway.networking.k8s.io/v1beta1/referencegrants',
    );
    assert.equal(
      collectionPath(RESOURCES.gatewayClasses),
      '/apis/gateway.networking.k8s.io/v1/gatewayclasses',
    );
    assert.throws(() => collectionPath(RESOURCES.namespaces, 'x'), /cluster-scoped/);
    assert.equal(describeResource(RESOURCES.httpRoutes, 'n'), 'httproutes.gateway.networking.k8s.io in n');
  });
});
