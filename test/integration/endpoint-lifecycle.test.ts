import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { MeshFixture, tearDownMesh, APP_PORT, type MeshPod } from '../support/mesh-fixture.ts';
import { podObject, serviceWithEndpoints, type PodRef } from '../support/mesh-manifests.ts';
import { netnsUnavailableReason } from '../support/netns.ts';
import { waitFor } from '../support/wait-for.ts';
import { addPods } from '../support/mesh-pods.ts';
import { countAnswers } from '../support/answer-counts.ts';
import { STALE_RACE_MS } from '../../sidecar/retry-rules.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import type { ClientResult } from '../support/mesh-client.ts';

// Endpoint lifecycle through real sidecars in network namespaces: EndpointSlice conditions written to the
// manifests reach the client's sidecar, which stops sending new requests to a terminating endpoint, lets
// the requests it has finish, and drains (does not cut) connections to an endpoint that left the view.

const NS = 'shop';
const VIP = { backend: '10.96.0.10', onlyA: '10.96.0.11', onlyB: '10.96.0.12', cAndB: '10.96.0.13' };
type Conditions = { ready?: boolean; serving?: boolean; terminating?: boolean };
const TERMINATING: Conditions = { ready: false, serving: true, terminating: true };

describe('endpoint lifecycle through sidecars in network namespaces', function () {
  this.timeout(120_000);
  const reason = netnsUnavailableReason();
  let mesh: MeshFixture;
  let client: MeshPod;
  const refs = new Map<string, PodRef>();
  let current = '';

  /** The mesh with backend = {a, b} and only-a = {a}; `a` absent from both when `a` is 'gone'. */
  function manifests(a: Conditions | 'gone'): K8sObject[] {
    const pods = (list: string[]) => list.filter((n) => n !== 'a' || a !== 'gone').map((n) => refs.get(n)!);
    const withConditions = (objects: K8sObject[]): K8sObject[] => {
      const slice = objects[1] as unknown as {
        endpoints: { conditions: Conditions; targetRef: { name: string } }[];
      };
      for (const e of slice.endpoints) if (e.targetRef.name === 'a' && a !== 'gone') e.conditions = a;
      return objects;
    };
    return [
      ...[...refs.values()].map(podObject),
      ...withConditions(
        serviceWithEndpoints(NS, 'backend', VIP.backend, [[80, APP_PORT, 'http']], pods(['a', 'b'])),
      ),
      ...withConditions(serviceWithEndpoints(NS, 'only-a', VIP.onlyA, [[80, APP_PORT, 'http']], pods(['a']))),
      ...serviceWithEndpoints(NS, 'only-b', VIP.onlyB, [[80, APP_PORT, 'http']], pods(['b'])),
      ...serviceWithEndpoints(NS, 'c-and-b', VIP.cAndB, [[80, APP_PORT, 'http']], pods(['c', 'b'])),
    ];
  }

  /** Writes the manifests and waits until the client's sidecar applied them. */
  async function apply(a: Conditions | 'gone'): Promise<void> {
    if (JSON.stringify(a) === current) return; // unchanged manifests are not applied again
    current = JSON.stringify(a);
    const applied = (): number => client.sidecarLog.filter((l) => l.msg === 'config applied').length;
    const before = applied();
    mesh.writeManifests(manifests(a));
    await waitFor('the client sidecar to apply the new config', () => applied() > before, {
      timeoutMs: 30_000,
    });
  }

  const send = (vip: string, path = '/', count = 1) =>
    mesh.client('client', { kind: 'http1', url: `http://${vip}${path}`, count, concurrency: 4 });

  /** Starts a request that the app holds for `ms` and waits until the app has it. */
  async function held(vip: string, tag: string, ms = 4000): Promise<{ done: Promise<ClientResult[]> }> {
    const path = `/?delay=${ms}&test=${tag}`;
    const inflight = send(vip, path);
    const a = mesh.pods.get('a')!;
    await waitFor(
      'the request to reach the app in a',
      () => a.logs.join('').includes(`holding GET ${path}`),
      {
        timeoutMs: 30_000,
        detail: () => a.logs.join('').slice(-4000),
      },
    );
    return { done: inflight };
  }

  before(async function () {
    if (reason) return this.skip();
    mesh = await MeshFixture.create();
    const specs = [
      { name: 'client', serviceAccount: 'client', meshed: true },
      { name: 'a', serviceAccount: 'backend', meshed: true },
      { name: 'c', serviceAccount: 'backend', meshed: true },
      { name: 'b', serviceAccount: 'backend', meshed: true, proxyArgs: ['--drain-delay-seconds', '3'] },
    ];
    for (const ref of await addPods(mesh, NS, specs)) refs.set(ref.name, ref);
    mesh.writeManifests(manifests({ ready: true }));
    current = JSON.stringify({ ready: true });
    await mesh.startSidecars();
    client = mesh.pods.get('client')!;
  });

  tearDownMesh(() => mesh);

  it('a terminating endpoint gets no new requests but finishes the one in flight', async () => {
    await apply({ ready: true });
    const inflight = await held(VIP.onlyA, 'terminating');
    await apply(TERMINATING);
    assert.deepEqual(countAnswers(await send(VIP.backend, '/', 40)), { '200:b': 40 });
    const [r] = await inflight.done;
    assert.equal(r?.status, 200, JSON.stringify(r));
    assert.equal((r.json as { name?: string }).name, 'a');
  });

  it('when every endpoint is terminating and serving, they still take requests', async () => {
    await apply(TERMINATING);
    assert.deepEqual(countAnswers(await send(VIP.onlyA, '/', 10)), { '200:a': 10 });
    await apply({ ready: false, serving: false, terminating: true });
    const r = await send(VIP.onlyA);
    assert.equal(r[0]?.status, 503, JSON.stringify(r));
  });

  it('an endpoint that left the view: its connection is drained, not cut, and new requests go elsewhere', async () => {
    await apply({ ready: true });
    const inflight = await held(VIP.onlyA, 'gone');
    await apply('gone');
    assert.deepEqual(countAnswers(await send(VIP.backend, '/', 20)), { '200:b': 20 });
    const [r] = await inflight.done;
    assert.equal(r?.status, 200, JSON.stringify(r));
    assert.equal((await send(VIP.onlyA))[0]?.status, 503);
    await apply({ ready: true }); // and it is used again when it comes back
    assert.equal(countAnswers(await send(VIP.onlyA, '/', 3))['200:a'], 3);
  });

  it('an app that dies holding GETs: its sidecar says so, and the client sidecar sends them elsewhere', async () => {
    await apply({ ready: true });
    const c = mesh.pods.get('c')!;
    const inflight = mesh.client('client', {
      kind: 'http1',
      url: `http://${VIP.cAndB}/?delay=2000`,
      count: 8,
      concurrency: 8,
    });
    await waitFor('a request to reach the app in c', () => c.logs.join('').includes('holding GET'), {
      timeoutMs: 30_000,
    });
    const exited = new Promise((r) => c.app!.once('exit', r));
    c.app!.kill('SIGKILL');
    await exited;
    assert.deepEqual(countAnswers(await inflight), { '200:b': 8 });
    const metrics = (await mesh.admin(client, '/metrics')).body;
    assert.match(metrics, /sluice_upstream_retries_total\{direction="outbound",failure="reset"\} [1-9]/);
    // The client sidecar logs the peer's answer, retried or not (a POST's 502 goes to the caller as is).
    const logged = client.sidecarLog.filter((l) => l.msg === 'upstream error' && l.code === 'reset_by_app');
    assert.ok(logged.length > 0, 'no reset_by_app line in the client sidecar log');
    assert.equal(logged[0]?.failure, 'reset');
  });

  it('an app that dies holding a POST: the caller gets a 502 saying the app reset it and why it was not retried', async () => {
    await apply({ ready: true });
    const a = mesh.pods.get('a')!;
    const path = '/?delay=4000&test=post-reset';
    const inflight = mesh.client('client', {
      kind: 'http1',
      url: `http://${VIP.onlyA}${path}`,
      method: 'POST',
      body: 'order',
    });
    await waitFor('the POST to reach the app in a', () => a.logs.join('').includes(`holding POST ${path}`), {
      timeoutMs: 30_000,
    });
    // A close within STALE_RACE_MS of the write on a reused connection is the keep-alive race (the app did
    // not get it, retried as refused): the app dies later than that, as an app that exits holding it does.
    await delay(STALE_RACE_MS + 200);
    const exited = new Promise((r) => a.app!.once('exit', r));
    a.app!.kill('SIGKILL');
    await exited;
    const [r] = await inflight;
    assert.equal(r?.status, 502, JSON.stringify(r));
    assert.equal(
      r.text,
      `the app reset the request before answering (${NS}/only-a:80); not retried: POST is not idempotent\n`,
    );
  });

  it('an endpoint whose app is gone while its sidecar serves: POSTs go to another endpoint, none fails', async () => {
    await apply({ ready: true });
    // `a`'s app was killed above, holding a POST.
    const results = await mesh.client('client', {
      kind: 'http1',
      url: `http://${VIP.backend}/`,
      method: 'POST',
      body: 'order',
      count: 30,
      concurrency: 4,
    });
    assert.deepEqual(countAnswers(results), { '200:b': 30 });
    const metrics = (await mesh.admin(client, '/metrics')).body;
    assert.match(metrics, /sluice_upstream_retries_total\{direction="outbound",failure="refused"\} [1-9]/);
  });

  it('a Service whose only endpoint refuses (its app gone, its sidecar serving): 503 no endpoint, not 502', async () => {
    // `a`'s app was killed above; `a` is ready in the view. Both attempts get the peer sidecar's
    // x-sluice-not-processed: nothing reached an app, so the answer is the one for no endpoints (ADR 0015).
    await apply({ ready: true });
    const noEndpoint = (): Promise<number> =>
      mesh
        .admin(client, '/metrics')
        .then((m) =>
          Number(
            /^sluice_errors_total\{direction="outbound",cause="no_endpoint"\} (\d+)$/m.exec(m.body)?.[1] ?? 0,
          ),
        );
    const before = await noEndpoint();
    const url = `http://${VIP.onlyA}/`;
    const [get] = await send(VIP.onlyA);
    const [post] = await mesh.client('client', { kind: 'http1', url, method: 'POST', body: 'order' });
    const [h2] = await mesh.client('client', { kind: 'h2', url, method: 'POST', body: 'order' });
    for (const r of [get, post, h2]) {
      assert.equal(r?.status, 503, JSON.stringify(r));
      assert.equal(r.text, `no healthy endpoints for ${NS}/only-a:80\n`);
    }
    const [grpc] = await mesh.client('client', { kind: 'grpc', url: `http://${VIP.onlyA}/echo.Echo/Call` });
    assert.equal(grpc?.grpcStatus, 14, JSON.stringify(grpc)); // UNAVAILABLE
    assert.equal(await noEndpoint(), before + 4);
  });

  it('SIGTERM with a drain delay: not ready at once, still serving new connections, then stops accepting', async () => {
    const b = mesh.pods.get('b')!;
    const exited = new Promise((r) => b.sidecar!.once('exit', r));
    b.sidecar!.kill('SIGTERM');
    await waitFor('the sidecar to announce its delay', () =>
      b.sidecarLog.some((l) => l.msg === 'not ready, still accepting'),
    );
    assert.equal((await mesh.admin(b, '/ready')).status, 503);
    assert.deepEqual(countAnswers(await send(VIP.onlyB, '/', 5)), { '200:b': 5 });
    assert.equal(await exited, 0);
    // Its sidecar gone, connections to `b` are refused: no endpoint took the request, 503 as for none.
    const [after] = await send(VIP.onlyB);
    assert.equal(after?.status, 503, JSON.stringify(after));
    assert.equal(after.text, `no healthy endpoints for ${NS}/only-b:80\n`);
  });
});
