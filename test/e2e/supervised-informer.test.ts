import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { clusterPaths } from '../../cluster/paths.ts';
import type { KubeApi } from '../../lib/kube/kube-api.ts';
import { loadKubeConfig } from '../../lib/kube/kube-config.ts';
import { RESOURCES } from '../../lib/kube/resources.ts';
import { SupervisedInformer, type SupervisedInformerOptions } from '../../lib/kube/supervised-informer.ts';
import type { KubeObject } from '../../lib/kube/object-cache.ts';
import { ApiFaultProxy } from '../support/api-fault-proxy.ts';
import { apply, kubectl, requireCluster, testNamespace } from '../support/kube.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';
import { waitFor } from '../support/wait-for.ts';

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

interface Seen {
  readonly type: string;
  readonly name: string;
  readonly data: string | undefined;
  readonly oldData: string | undefined;
  /** The informer's relist count when the event was delivered. */
  readonly relists: number;
}

const kubeconfigPath = clusterPaths().kubeconfig;

/** The local cluster's API as its admin, at `server` when given (a proxy in front of it). */
function apiFor(server?: string): KubeApi {
  const { api } = loadKubeConfig({ kubeconfigPath });
  return server === undefined ? api : api.withServer(server);
}

function apiServerAddress(): { host: string; port: number } {
  const url = new URL(apiFor().server);
  return { host: url.hostname, port: Number(url.port || 443) };
}

/** Polls fast (the informer reacts in milliseconds) until `check` returns something. */
const until = <T>(what: string, check: () => T | undefined, timeoutMs = 15_000): Promise<T> =>
  waitFor(what, check, { timeoutMs, intervalMs: 25 });

describe('supervised informer against the local cluster', function () {
  this.timeout(60_000);
  let ns: Awaited<ReturnType<typeof testNamespace>> | undefined;
  const namespace = (): string => ns!.name;
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    await requireCluster();
    ns = await testNamespace('informer');
  });

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  after(async () => {
    if (ns && process.env.KEEP_NAMESPACE !== '1') await ns.delete();
  });

  /** A started ConfigMap informer on the test namespace, recording events and log lines. */
  function configMapInformer(options: Partial<SupervisedInformerOptions> & { api: KubeApi }) {
    const logs: string[] = [];
    const seen: Seen[] = [];
    const informer = new SupervisedInformer<ConfigMap>({
      resource: RESOURCES.configMaps,
      namespace: namespace(),
      log: (line) => logs.push(line),
      ...options,
    });
    informer.on((event) => {
      seen.push({
        type: event.type,
        name: event.object.metadata?.name ?? '',
        data: event.object.data?.value,
        oldData: event.type === 'update' ? event.old.data?.value : undefined,
        relists: informer.stats.relists,
      });
    });
    cleanups.push(() => informer.stop());
    informer.start();
    const find = (type: string, name: string, data?: string): Seen | undefined =>
      seen.find((e) => e.type === type && e.name === name && (data === undefined || e.data === data));
    return { informer, logs, seen, find };
  }

  const configMap = (name: string, value: string): object => ({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, labels: { test: 'informer' } },
    data: { value },
  });
  const setValue = (name: string, value: string) =>
    kubectl([
      '-n',
      namespace(),
      'patch',
      'configmap',
      name,
      '--type=merge',
      '-p',
      JSON.stringify({ data: { value } }),
    ]);
  const remove = (name: string) => kubectl(['-n', namespace(), 'delete', 'configmap', name, '--wait=false']);

  async function tcpProxy(): Promise<TcpProxy> {
    const proxy = await TcpProxy.start(apiServerAddress());
    cleanups.push(() => proxy.close());
    return proxy;
  }

  it('lists, then delivers add, update and delete in order with old and new objects', async () => {
    await apply([configMap('before-start', 'a')], namespace());
    const { informer, seen, find, logs } = configMapInformer({ api: apiFor() });
    await informer.synced;
    assert.equal(informer.get(namespace(), 'before-start')?.data?.value, 'a');
    assert.ok(find('add', 'before-start'), 'the list delivers adds');
    const listed = informer.get(namespace(), 'before-start')!;
    assert.equal(listed.kind, 'ConfigMap', 'list items get their kind like watch objects');
    assert.equal(typeof (listed.metadata as { creationTimestamp?: unknown }).creationTimestamp, 'string');

    await apply([configMap('one', '1')], namespace());
    await until('add one', () => find('add', 'one'));
    await setValue('one', '2');
    const update = await until('update one', () => find('update', 'one', '2'));
    assert.equal(update.oldData, '1');
    assert.equal(informer.get(namespace(), 'one')?.data?.value, '2');
    await remove('one');
    await until('delete one', () => find('delete', 'one'));
    assert.equal(informer.get(namespace(), 'one'), undefined);

    const order = seen.filter((e) => e.name === 'one').map((e) => e.type);
    assert.deepEqual(order, ['add', 'update', 'delete']);
    assert.equal(informer.stats.restarts, 0);
    assert.deepEqual(logs, []);
  });

  it('keeps a label-scoped informer over all namespaces to the matching objects', async () => {
    const label = `informer-${namespace()}`;
    const service = (name: string, labels: Record<string, string>) => ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, labels },
      spec: { ports: [{ port: 80 }] },
    });
    const informer = new SupervisedInformer({
      api: apiFor(),
      resource: RESOURCES.services,
      labelSelector: `sluice-test=${label}`,
      log: () => undefined,
    });
    cleanups.push(() => informer.stop());
    const events: string[] = [];
    informer.on((e) => events.push(`${e.type} ${e.object.metadata?.name ?? ''}`));
    informer.start();
    await informer.synced;
    assert.deepEqual(informer.list(), []);
    await apply([service('match', { 'sluice-test': label }), service('other', { app: 'x' })], namespace());
    await until('add match', () => (events.includes('add match') ? true : undefined));
    await kubectl(['-n', namespace(), 'label', 'service', 'match', 'sluice-test-']);
    // Leaving the selector arrives as a DELETED event.
    await until('delete match', () => (events.includes('delete match') ? true : undefined));
    assert.ok(!events.some((e) => e.endsWith(' other')), events.join(', '));
    assert.deepEqual(informer.list(), []);
  });

  it('watches a cluster-scoped type through a field selector', async () => {
    const informer = new SupervisedInformer({
      api: apiFor(),
      resource: RESOURCES.namespaces,
      fieldSelector: `metadata.name=${namespace()}`,
      log: () => undefined,
    });
    cleanups.push(() => informer.stop());
    const updates: KubeObject[] = [];
    informer.on((e) => {
      if (e.type === 'update') updates.push(e.object);
    });
    await informer.start().synced;
    assert.deepEqual(
      informer.list().map((n) => n.metadata?.name),
      [namespace()],
    );
    assert.ok(informer.get(undefined, namespace()));
    await kubectl(['label', 'namespace', namespace(), 'informer-test=labelled']);
    const updated = await until('namespace update', () => updates.at(-1));
    assert.equal(updated.metadata?.labels?.['informer-test'], 'labelled');
  });

  it('watches Gateway API types at the versions the CRDs serve (HTTPRoute v1, ReferenceGrant v1beta1)', async function () {
    const { code } = await kubectl(['get', 'crd', 'httproutes.gateway.networking.k8s.io'], { okCodes: [1] });
    if (code !== 0) this.skip();
    const start = (resource: SupervisedInformerOptions['resource']) => {
      const informer = new SupervisedInformer({
        api: apiFor(),
        resource,
        namespace: namespace(),
        log: () => undefined,
      });
      cleanups.push(() => informer.stop());
      return informer.start();
    };
    const routes = start(RESOURCES.httpRoutes);
    const grants = start(RESOURCES.referenceGrants);
    await Promise.all([routes.synced, grants.synced]);
    await apply(
      [
        {
          apiVersion: 'gateway.networking.k8s.io/v1',
          kind: 'HTTPRoute',
          metadata: { name: 'to-echo' },
          spec: {
            parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }],
            rules: [{ backendRefs: [{ name: 'echo', port: 80 }] }],
          },
        },
        {
          apiVersion: 'gateway.networking.k8s.io/v1beta1',
          kind: 'ReferenceGrant',
          metadata: { name: 'from-elsewhere' },
          spec: {
            from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'elsewhere' }],
            to: [{ group: '', kind: 'Service' }],
          },
        },
      ],
      namespace(),
    );
    const route = await until('HTTPRoute', () => routes.get(namespace(), 'to-echo'));
    const grant = await until('ReferenceGrant', () => grants.get(namespace(), 'from-elsewhere'));
    assert.equal(route.apiVersion, 'gateway.networking.k8s.io/v1');
    assert.equal(grant.apiVersion, 'gateway.networking.k8s.io/v1beta1');
  });

  it('recovers when the watch connection is reset, and sees later changes', async () => {
    const proxy = await tcpProxy();
    const { informer, find, logs } = configMapInformer({
      api: apiFor(`https://127.0.0.1:${proxy.port}`),
    });
    await informer.synced;
    await until('watching', () => (informer.stats.watching ? true : undefined));
    const connections = proxy.accepted;
    proxy.resetAll();
    const startedAt = Date.now();
    await apply([configMap('after-reset', 'x')], namespace());
    await until('add after-reset', () => find('add', 'after-reset'));
    const stats = informer.stats;
    assert.ok(stats.restarts >= 1, `restarts ${stats.restarts}`);
    assert.ok(proxy.accepted > connections, 'a new connection was made');
    assert.match(
      stats.lastError ?? '',
      /watch failed: .*(ECONNRESET|aborted|socket hang up|premature close)/i,
    );
    assert.equal(stats.relists, 0, 'resumed from its resource version, no relist');
    assert.ok(
      logs.some((l) => l.includes('watch failed')),
      logs.join('\n'),
    );
    console.log(`      recovered and delivered a change ${Date.now() - startedAt} ms after the reset`);
  });

  it('restarts cleanly at a short server-side timeout', async () => {
    const { informer, find, logs } = configMapInformer({
      api: apiFor(),
      watchTimeoutSeconds: 1,
    });
    await informer.synced;
    await until('3 restarts', () => (informer.stats.restarts >= 3 ? true : undefined), 10_000);
    await apply([configMap('after-timeouts', 'y')], namespace());
    await until('add after-timeouts', () => find('add', 'after-timeouts'));
    assert.equal(informer.stats.lastError, undefined, 'a server-side timeout is not an error');
    assert.equal(informer.stats.relists, 0);
    assert.deepEqual(logs, []);
  });

  it('has the watchdog restart a stream that went silent', async () => {
    const proxy = await tcpProxy();
    const { informer, find, logs } = configMapInformer({
      api: apiFor(`https://127.0.0.1:${proxy.port}`),
      watchdogMs: 2000,
    });
    await informer.synced;
    await until('watching', () => (informer.stats.watching ? true : undefined));
    proxy.stallAll();
    const stalledAt = Date.now();
    await apply([configMap('while-silent', 'z')], namespace());
    await until('add while-silent', () => find('add', 'while-silent'));
    const waited = Date.now() - stalledAt;
    assert.ok(informer.stats.watchdogRestarts >= 1, `watchdog restarts ${informer.stats.watchdogRestarts}`);
    assert.ok(
      logs.some((l) => l.includes('delivered nothing for 2000 ms')),
      logs.join('\n'),
    );
    console.log(`      change delivered ${waited} ms after the stream went silent (watchdog 2000 ms)`);
  });

  it('relists and reconciles changes made while the watch was dead', async () => {
    await apply(
      [configMap('stays', 's'), configMap('doomed', 'd'), configMap('changing', 'c1')],
      namespace(),
    );
    const proxy = await tcpProxy();
    const { informer, find, seen } = configMapInformer({
      api: apiFor(`https://127.0.0.1:${proxy.port}`),
      watchdogMs: 60_000,
      resyncIntervalMs: 0,
    });
    await informer.synced;
    await until('watching', () => (informer.stats.watching ? true : undefined));
    proxy.stallAll();
    await remove('doomed');
    await setValue('changing', 'c2');
    await apply([configMap('fresh', 'f')], namespace());
    await sleep(300);
    assert.equal(find('delete', 'doomed'), undefined, 'the stalled watch delivered nothing');
    informer.resync();
    const missed = await until('the relist reconciles', () => {
      const events = [find('delete', 'doomed'), find('update', 'changing', 'c2'), find('add', 'fresh')];
      return events.every(Boolean) ? (events as Seen[]) : undefined;
    });
    for (const event of missed)
      assert.equal(event.relists, 1, `${event.type} ${event.name} came from the relist`);
    assert.equal(find('update', 'changing', 'c2')!.oldData, 'c1');
    assert.equal(seen.filter((e) => e.name === 'stays').length, 1, 'unchanged objects: no event');
    assert.equal(informer.stats.watchdogRestarts, 0);
    await apply([configMap('after-relist', 'r')], namespace());
    await until('add after-relist', () => find('add', 'after-relist'));
  });

  it('resyncs periodically without inventing changes', async () => {
    const { informer, seen } = configMapInformer({ api: apiFor(), resyncIntervalMs: 700 });
    await informer.synced;
    const afterList = seen.length;
    await until('2 resyncs', () => (informer.stats.relists >= 2 ? true : undefined), 10_000);
    assert.equal(seen.length, afterList, 'nothing changed, so no events');
    assert.equal(informer.stats.restarts, 0, 'a resync is not a restart');
  });

  it('relists on 410 Expired from the API server', async () => {
    const proxy = await ApiFaultProxy.start(apiFor());
    cleanups.push(() => proxy.close());
    const { informer, find, logs } = configMapInformer({ api: proxy.api() });
    await informer.synced;
    await until('watching', () => (proxy.openWatches === 1 ? true : undefined));
    proxy.expireWatches();
    await until('relisted', () => (informer.stats.relists === 1 ? true : undefined));
    assert.ok(
      logs.some((l) => /410 Expired: too old resource version .*; listing again/.test(l)),
      logs.join('\n'),
    );
    const lists = proxy.requests.filter((url) => !/[?&]watch=/.test(url));
    assert.equal(lists.length, 2, proxy.requests.join('\n'));
    await apply([configMap('after-expiry', 'e')], namespace());
    await until('add after-expiry', () => find('add', 'after-expiry'));
  });

  it('survives throwing listeners and stops without leaving anything behind', async () => {
    await sleep(1); // mocha arms its test timer after the test function starts
    const before = process.getActiveResourcesInfo();
    const count = (list: string[], type: string): number => list.filter((t) => t === type).length;
    const { informer, find, logs } = configMapInformer({ api: apiFor() });
    informer.on(() => {
      throw new Error('listener bug');
    });
    // An async listener is a mistake the informer must survive (its rejection must not go unhandled).
    // eslint-disable-next-line @typescript-eslint/no-misused-promises
    informer.on(() => Promise.reject(new Error('async listener bug')));
    await informer.synced;
    await apply([configMap('with-bad-listeners', 'b')], namespace());
    await until('add with-bad-listeners', () => find('add', 'with-bad-listeners'));
    assert.ok(informer.stats.listenerErrors >= 2);
    assert.ok(logs.some((l) => l.includes('listener failed on add') && l.includes('listener bug')));
    await informer.stop();
    assert.equal(informer.stats.watching, false);
    // Sockets finish closing on the next turns of the event loop.
    const settled = await until(
      'handles released',
      () => {
        const now = process.getActiveResourcesInfo();
        return ['Timeout', 'TLSWrap', 'TCPSocketWrap'].every((t) => count(now, t) <= count(before, t))
          ? now
          : undefined;
      },
      2000,
    );
    assert.ok(settled);
    await informer.stop();
  });

  it('rejects `synced` when stopped before the first list, without unhandled errors', async () => {
    // Nothing listens on port 1: every list fails at once.
    const logs: string[] = [];
    const informer = new SupervisedInformer({
      api: apiFor('https://127.0.0.1:1'),
      resource: RESOURCES.configMaps,
      log: (line) => logs.push(line),
    }).start();
    await until('a failed list', () => (informer.stats.lastError ? true : undefined));
    await sleep(500);
    await informer.stop();
    await assert.rejects(informer.synced, /stopped before the first list/);
    assert.match(
      informer.stats.lastError ?? '',
      /list failed: GET \/api\/v1\/configmaps: connect ECONNREFUSED/,
    );
    assert.equal(logs.length, 1, `a repeating failure is logged once: ${logs.join('\n')}`);
  });
});
