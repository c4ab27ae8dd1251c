import assert from 'node:assert/strict';
import { clusterPaths } from '../../cluster/paths.ts';
import type { KubeApi } from '../../lib/kube/kube-api.ts';
import { loadKubeConfig } from '../../lib/kube/kube-config.ts';
import {
  conditionTime,
  desiredParentStatuses,
  mergeRouteStatus,
  readParentStatuses,
  type RouteObject,
  type RouteParentStatus,
} from '../../controller/route-status.ts';
import { MESH_CONTROLLER_NAME } from '../../mesh-model/controller-name.ts';
import {
  StatusWriter,
  type ComputeStatus,
  type StatusWriterMetrics,
} from '../../controller/status-writer.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import { buildMeshModel } from '../../mesh-model/translate.ts';
import {
  apply,
  ensureGatewayApiCrds,
  FOREIGN_ENTRY,
  GATEWAY_CONTROLLER,
  kubectl,
  plainService,
  requireCluster,
  testNamespace,
} from '../support/kube.ts';

function route(kind: 'HTTPRoute' | 'GRPCRoute', name: string): object {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind,
    metadata: { name },
    spec: {
      parentRefs: [
        { group: '', kind: 'Service', name: 'svc', port: 80 },
        { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge' },
      ],
      rules: [{ backendRefs: [{ name: 'v1', port: 80 }] }],
    },
  };
}

describe('route status writer on the local cluster', function () {
  this.timeout(120_000);
  let ns: Awaited<ReturnType<typeof testNamespace>> | undefined;
  let api: KubeApi;
  let writer: StatusWriter;
  let services: K8sObject[] = [];
  const logs: string[] = [];

  /** What the controller will do: Sluice's entries from the model, merged into whatever is there. */
  const compute: ComputeStatus = (current: RouteObject) => {
    const model = buildMeshModel(services);
    const desired = desiredParentStatuses(undefined, current, model, conditionTime());
    const parents = mergeRouteStatus(readParentStatuses(current), desired);
    if (!parents) return undefined;
    const status = typeof current.status === 'object' && current.status !== null ? current.status : {};
    return { ...status, parents };
  };

  async function get(kind: string, name: string): Promise<RouteObject> {
    const { stdout } = await kubectl(['-n', ns!.name, 'get', kind, name, '-o', 'json']);
    return JSON.parse(stdout) as RouteObject;
  }

  function delta(before: StatusWriterMetrics): { get: number; patch: number; conflicts: number } {
    const now = writer.metrics();
    return {
      get: now.requests.get - before.requests.get,
      patch: now.requests.patch - before.requests.patch,
      conflicts: now.conflicts - before.conflicts,
    };
  }

  const controllers = (parents: RouteParentStatus[] | undefined): string[] =>
    (parents ?? []).map((p) => p.controllerName).sort();

  before(async () => {
    await requireCluster();
    api = loadKubeConfig({ kubeconfigPath: clusterPaths().kubeconfig }).api;
    await ensureGatewayApiCrds();
    ns = await testNamespace('status');
    await apply(
      [plainService('svc'), plainService('v1'), route('HTTPRoute', 'web'), route('GRPCRoute', 'rpc')],
      ns.name,
    );
    services = await Promise.all(['svc', 'v1'].map((name) => get('service', name)));
    writer = new StatusWriter({ api, log: (message) => logs.push(message) });
    writer.start();
  });

  after(async () => {
    await writer.stop();
    if (ns && process.env.KEEP_NAMESPACE !== '1') await ns.delete();
  });

  it("keeps another controller's entry written between our read and our write (409, re-read, retry)", async () => {
    const stale = await get('httproute', 'web');
    await kubectl([
      '-n',
      ns!.name,
      'patch',
      'httproute',
      'web',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { parents: [FOREIGN_ENTRY] } }),
    ]);
    const before = writer.metrics();
    const result = await writer.write(stale, compute);
    assert.equal(result.outcome, 'written');
    assert.deepEqual(delta(before), { get: 1, patch: 2, conflicts: 1 });

    const parents = readParentStatuses(await get('httproute', 'web'));
    assert.ok(parents);
    assert.deepEqual(controllers(parents), [GATEWAY_CONTROLLER, MESH_CONTROLLER_NAME].sort());
    assert.deepEqual(
      parents.find((p) => p.controllerName === GATEWAY_CONTROLLER),
      FOREIGN_ENTRY,
    );
    const ours = parents.find((p) => p.controllerName === MESH_CONTROLLER_NAME);
    assert.ok(ours);
    assert.deepEqual(ours.parentRef, { group: '', kind: 'Service', name: 'svc', port: 80 });
    assert.deepEqual(
      ours.conditions.map((c) => `${c.type}=${c.status}`),
      ['Accepted=True', 'ResolvedRefs=True'],
    );
  });

  it('a second write with nothing changed makes no API call', async () => {
    const first = await writer.write(await get('httproute', 'web'), compute);
    assert.ok(['written', 'unchanged'].includes(first.outcome), first.outcome);
    const current = await get('httproute', 'web');
    const before = writer.metrics();
    const result = await writer.write(current, compute);
    assert.equal(result.outcome, 'unchanged');
    assert.deepEqual(delta(before), { get: 0, patch: 0, conflicts: 0 });

    // Given only the name, it reads the route once and still writes nothing.
    const byName = await writer.write({ kind: 'HTTPRoute', namespace: ns!.name, name: 'web' }, compute);
    assert.equal(byName.outcome, 'unchanged');
    assert.deepEqual(delta(before), { get: 1, patch: 0, conflicts: 0 });
  });

  it('writes GRPCRoute status too, starting from the name only', async () => {
    const result = await writer.write({ kind: 'GRPCRoute', namespace: ns!.name, name: 'rpc' }, compute);
    assert.equal(result.outcome, 'written');
    assert.deepEqual(controllers(readParentStatuses(await get('grpcroute', 'rpc'))), [MESH_CONTROLLER_NAME]);
    // The object the write returns is current: writing again from it costs nothing.
    const before = writer.metrics();
    assert.equal((await writer.write(result.object!, compute)).outcome, 'unchanged');
    assert.deepEqual(delta(before), { get: 0, patch: 0, conflicts: 0 });
  });

  it('coalesces a burst of requests for one route: the latest wins', async () => {
    const current = await get('httproute', 'web');
    const before = writer.metrics();
    let seen = 0;
    const withNote = (note: number): ComputeStatus => {
      return (object) => {
        seen = note;
        const base = compute(object) ?? (object.status as Record<string, unknown>);
        const parents = (base.parents as RouteParentStatus[]).map((p) =>
          p.controllerName === MESH_CONTROLLER_NAME
            ? { ...p, conditions: p.conditions.map((c) => ({ ...c, message: `note ${note}` })) }
            : p,
        );
        return { ...base, parents };
      };
    };
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => writer.write(current, withNote(i + 1))),
    );
    const outcomes = results.map((r) => r.outcome);
    // The first starts at once; the 18 between are replaced while it runs; the last runs after it.
    assert.equal(outcomes[0], 'written');
    assert.equal(outcomes.filter((o) => o === 'superseded').length, 18);
    assert.equal(outcomes[19], 'written');
    assert.equal(seen, 20);
    const ours = readParentStatuses(await get('httproute', 'web'))?.find(
      (p) => p.controllerName === MESH_CONTROLLER_NAME,
    );
    assert.equal(ours?.conditions[0]?.message, 'note 20');
    // The last one was given the now stale object: the writer computes from what its own write returned,
    // so there is no conflict and no re-read.
    assert.deepEqual(delta(before), { get: 0, patch: 2, conflicts: 0 });
  });

  it('drops a write for a route that was deleted', async () => {
    await apply([route('GRPCRoute', 'doomed')], ns!.name);
    const current = await get('grpcroute', 'doomed');
    await kubectl(['-n', ns!.name, 'delete', 'grpcroute', 'doomed', '--wait=true']);
    const touched = { ...current, status: {} };
    assert.equal((await writer.write(touched, compute)).outcome, 'deleted');
    assert.equal(
      (await writer.write({ kind: 'GRPCRoute', namespace: ns!.name, name: 'doomed' }, compute)).outcome,
      'deleted',
    );
  });

  it('writes nothing once stopped (no longer the leader)', async () => {
    // A writer of its own: stopping the shared one would leave nothing for a test that runs after this one.
    const stopped = new StatusWriter({ api, log: (message) => logs.push(message) });
    stopped.start();
    await stopped.stop();
    const before = stopped.metrics();
    const result = await stopped.write({ kind: 'HTTPRoute', namespace: ns!.name, name: 'web' }, compute);
    assert.equal(result.outcome, 'stopped');
    assert.deepEqual(stopped.metrics().requests, before.requests);
    assert.deepEqual(logs, [], 'nothing went wrong along the way');
  });
});
