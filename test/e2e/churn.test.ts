// Churn under load on the local cluster (issue 17). A meshed client runs `load` (images/toolbox/load.ts):
// HTTP/1.1, h2c and gRPC at RATE requests/s each, spread over four Services, for the whole suite. Each
// scenario changes something (rolling restarts of backends that shut down in different ways, scale to
// zero and back, a controller rollout, API server and etcd restarts, a CA root rotation) and prints the
// requests sent while it ran, by protocol, with every failure's cause; the target is 0 failed, and a
// failure passes only when its cause is one the scenario makes unavoidable (test/support/churn-causes.ts). Workload
// certificates live 6 minutes here, so sidecars renew theirs under load.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startComponent, stopComponent } from '../../cluster/daemon-control.ts';
import { run } from '../../cluster/exec.ts';
import { MESH_CONTROLLER_NAME } from '../../mesh-model/controller-name.ts';
import {
  apply,
  CONTROL_NAMESPACE,
  controllerRollout,
  deploySluice,
  ensureGatewayApiCrds,
  eventually,
  getJson,
  kubectl,
  plainService,
  removeController,
  requireCluster,
  testNamespace,
} from '../support/kube.ts';
import { judge, outcome, type Expected } from '../support/churn-causes.ts';
import {
  backendRef,
  deployment,
  echoContainer,
  execIn,
  INJECT,
  rolloutStatus,
  service,
  serviceAccount,
  serviceRoute,
  sidecarAdmin,
  toolboxContainer,
  type Obj,
} from '../support/mesh-e2e.ts';

/**
 * Unexplained failures (no expected cause of the scenario, churn-causes.ts) a scenario may have and be
 * marked pending with their list rather than fail: one odd run does not turn CI red; more fail it.
 */
const RARE = 5;
/** Requests/s per protocol: three protocols, 240 requests/s in all (issue 17: at least 200). */
const RATE = 80;
const MIN_TOTAL_RATE = 200;
const LOAD_OUT = '/tmp/churn-load.json';
const STOP_FILE = '/tmp/churn-stop';
/** The Services the load goes to, in turn. `split` routes half to echo, half to spare. */
const TARGETS = ['echo', 'slow', 'closer', 'split'];
// Short enough to be renewed during the run; long enough that a certificate due for renewal (at ~70 % of its
// life) when the API server stops outlives the outage and a node NotReady after it (up to ~60 s seen, and the
// renewal's retry backoff up to 30 s): with 2 minutes, one run in five saw a peer's certificate expire.
const CERT_MINUTES = 6;
/** How long the API server (or etcd) stays down: longer than the controller's watch timeouts take to fire. */
const OUTAGE_MS = 15_000;

function backend(name: string, args: string[] = [], replicas = 3): object {
  return deployment(
    name,
    { serviceAccountName: 'echo', containers: [echoContainer(name, args)] },
    { replicas, terminationGracePeriodSeconds: 15, surgeOneAtATime: true },
  );
}

function splitRoute(spareWeight: number): object {
  return serviceRoute('split', { name: 'split' }, [
    { backendRefs: [backendRef('echo', 1), backendRef('spare', spareWeight)] },
  ]);
}

function objects(): object[] {
  return [
    serviceAccount('echo'),
    serviceAccount('client'),
    backend('echo'),
    // Serves 5 s more after SIGTERM (a slow graceful shutdown).
    backend('slow', ['--shutdown-delay-seconds', '5']),
    // Stops accepting and closes its keep-alive connections at SIGTERM, then finishes for 2 s.
    backend('closer', ['--on-sigterm', 'drain', '--shutdown-delay-seconds', '2']),
    backend('spare', [], 2),
    service('echo', { app: 'echo' }),
    service('slow', { app: 'slow' }),
    service('closer', { app: 'closer' }),
    service('spare', { app: 'spare' }),
    // The route's parent: its own pods never get the traffic (the route sends it to echo and spare).
    service('split', { app: 'echo' }),
    splitRoute(1),
    deployment('client', { serviceAccountName: 'client', containers: [toolboxContainer] }),
  ];
}

interface Counts {
  total: number;
  failed: number;
  causes: Record<string, number>;
}
const PROTOCOLS = ['http1', 'h2c', 'grpc'] as const;
type Diff = {
  byProtocol: { protocol: string; total: number; failed: number; causes: Record<string, number> }[];
  total: number;
  failed: number;
  seconds: number;
};
type Snapshot = Record<(typeof PROTOCOLS)[number], Counts> & { seconds: number; done: boolean };

describe('churn under load on the local cluster (target: 0 failed requests)', function () {
  this.timeout(900_000);
  let ns: Awaited<ReturnType<typeof testNamespace>> | undefined;
  const suite: { name: string; failed: number; total: number }[] = [];

  const nsName = (): string => ns?.name ?? assert.fail('no test namespace');
  const url = (name: string, path = ''): string => `http://${name}.${nsName()}.svc.cluster.local${path}`;
  const inClient = (command: string[], timeoutMs?: number) =>
    execIn(nsName(), 'client', 'app', command, timeoutMs);

  async function snapshot(): Promise<Snapshot> {
    return eventually('the load counts', async () => {
      const text = await inClient(['cat', LOAD_OUT]).catch(() => '');
      return text.trim() === '' ? undefined : (JSON.parse(text) as Snapshot);
    });
  }

  /** A snapshot taken at least `seconds` after `since`: requests in flight at `since` are counted. */
  async function snapshotAfter(since: Snapshot, seconds = 3): Promise<Snapshot> {
    return eventually('newer load counts', async () => {
      const s = await snapshot();
      return s.seconds >= since.seconds + seconds ? s : undefined;
    });
  }

  function diff(a: Snapshot, b: Snapshot): Diff {
    const byProtocol = PROTOCOLS.map((p) => {
      const causes: Record<string, number> = {};
      for (const [cause, n] of Object.entries(b[p].causes)) {
        const d = n - (a[p].causes[cause] ?? 0);
        if (d > 0) causes[cause] = d;
      }
      return { protocol: p, total: b[p].total - a[p].total, failed: b[p].failed - a[p].failed, causes };
    });
    const total = byProtocol.reduce((s, p) => s + p.total, 0);
    const failed = byProtocol.reduce((s, p) => s + p.failed, 0);
    return { byProtocol, total, failed, seconds: b.seconds - a.seconds };
  }

  /**
   * Judges every failure by its cause (churn-causes.ts): it passes when the scenario makes that cause
   * unavoidable (`expected`). A GET reset by an app fails it (GETs are sent again); so do more than RARE
   * unexplained failures; one to RARE mark it pending with their list.
   */
  async function expectFailures(t: Mocha.Context, d: Diff, expected: Expected = {}): Promise<void> {
    const j = judge(d.byProtocol, expected);
    const explained = Object.entries(j.expected).map(([v, n]) => `${v} x${n}`);
    if (explained.length > 0) console.log(`        expected causes: ${explained.join(', ')}`);
    const verdict = outcome(j, RARE);
    if (verdict !== 'pass') await printSidecarErrors(d.seconds);
    assert.equal(j.bugs.length, 0, `the mesh's failures: ${j.bugs.join(', ')}`);
    assert.notEqual(
      verdict,
      'fail',
      `${j.unexplainedCount} unexplained failures: ${j.unexplained.join(', ')}`,
    );
    if (verdict === 'pending') {
      console.log(
        `      churn: ${j.unexplainedCount} unexplained failure(s), at most ${RARE}: pending: ${j.unexplained.join(', ')}`,
      );
      t.skip();
    }
  }

  /** The client sidecar's upstream errors of the last `seconds`: evidence for failures nothing explains. */
  async function printSidecarErrors(seconds: number): Promise<void> {
    const since = `${Math.ceil(seconds) + 5}s`;
    const { stdout } = await kubectl(
      ['-n', nsName(), 'logs', 'deploy/client', '-c', 'sluice-proxy', `--since=${since}`],
      { timeoutMs: 30_000 },
    ).catch(() => ({ stdout: '' }));
    const lines = stdout
      .split('\n')
      .filter((l) => /upstream error|cancelled|certificate|upstream response cut/.test(l));
    console.log(
      `        client sidecar, last ${since}: ${lines.length} upstream error lines, the last ones:`,
    );
    for (const l of lines.slice(-8)) console.log(`          ${l.slice(0, 400)}`);
  }

  async function retries(): Promise<string> {
    const metrics = await sidecarAdmin(nsName(), 'client', '/metrics');
    return metrics
      .split('\n')
      .filter((l) => l.startsWith('sluice_upstream_retries_total{'))
      .map((l) => l.replace('sluice_upstream_retries_total', ''))
      .join(' ');
  }

  /** Runs `churn` under the load, prints what was sent meanwhile, and returns it. */
  async function scenario(name: string, churn: () => Promise<void>) {
    const before = await snapshot();
    await churn();
    const after = await snapshotAfter(await snapshot());
    const d = diff(before, after);
    const rate = Math.round(d.total / d.seconds);
    console.log(
      `      churn: ${name}: ${d.failed} failed of ${d.total} (${rate} requests/s, ${d.seconds.toFixed(1)} s)`,
    );
    for (const p of d.byProtocol) {
      console.log(`        ${p.protocol}: ${p.failed}/${p.total} failed ${JSON.stringify(p.causes)}`);
    }
    console.log(`        client sidecar retries so far: ${(await retries()) || 'none'}`);
    suite.push({ name, failed: d.failed, total: d.total });
    return d;
  }

  async function restartAndWait(name: string, replicas = 3): Promise<void> {
    await kubectl(['-n', nsName(), 'rollout', 'restart', `deployment/${name}`]);
    await rolloutStatus(nsName(), name, 300);
    await eventually(`the old ${name} pods to be gone`, async () => {
      const { stdout } = await kubectl(['-n', nsName(), 'get', 'pods', '-l', `app=${name}`, '-o', 'name']);
      return stdout.trim().split('\n').length === replicas ? true : undefined;
    });
  }

  /** The `name` fields of n replies from `split` (echo or spare). */
  async function splitReplies(n: number): Promise<string[]> {
    const script = `for i in $(seq ${n}); do curl -s --max-time 5 ${url('split', '/hello')}; echo; done`;
    const out = await inClient(['sh', '-c', script]);
    return out
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => {
        try {
          return (JSON.parse(l) as { name?: string }).name ?? '?';
        } catch {
          return '?';
        }
      });
  }

  before(async function () {
    assert.ok(
      RATE * PROTOCOLS.length >= MIN_TOTAL_RATE,
      `the load is ${RATE * PROTOCOLS.length} requests/s, issue 17 asks at least ${MIN_TOTAL_RATE}`,
    );
    await requireCluster();
    await ensureGatewayApiCrds();
    await deploySluice({ controllerEnv: { SLUICE_WORKLOAD_CERT_MINUTES: String(CERT_MINUTES) } });
    ns = await testNamespace('churn', INJECT);
    await apply(objects(), ns.name);
    for (const name of ['echo', 'slow', 'closer', 'spare', 'client'])
      await rolloutStatus(nsName(), name, 300);
    // The client's sidecar has every backend's endpoints once a request to each gets through.
    await eventually(
      'the client reaches every backend',
      async () => {
        for (const target of TARGETS) {
          const code = await inClient(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', url(target)]);
          if (code.trim() !== '200') return undefined;
        }
        return true;
      },
      { timeoutMs: 120_000 },
    );
    const targets = (path: string) => TARGETS.map((t) => url(t, path)).join(',');
    const load = [
      'load',
      `--rate ${RATE} --concurrency 32`,
      `--http1 ${targets('/hello')}`,
      `--h2c ${targets('/hello')}`,
      `--grpc ${targets('')}`,
      `--stop-file ${STOP_FILE} --out ${LOAD_OUT}`,
    ].join(' ');
    // Detached inside the pod: the load goes on while the API server (and with it kubectl exec) is down.
    await inClient([
      'sh',
      '-c',
      `rm -f ${STOP_FILE} ${LOAD_OUT}; setsid nohup ${load} >/tmp/load.log 2>&1 </dev/null &`,
    ]);
    await snapshot();
  });

  after(async () => {
    if (ns) {
      await inClient(['touch', STOP_FILE]).catch(() => undefined);
      await ns.delete();
    }
    await removeController();
  });

  it('rolling restart of a 3-replica backend', async function () {
    const d = await scenario('rolling restart of echo (3 replicas)', () => restartAndWait('echo'));
    await expectFailures(this, d, { appsExit: true });
  });

  it('rolling restart of a backend that serves 5 s after SIGTERM', async function () {
    const d = await scenario('rolling restart of slow (slow shutdown)', () => restartAndWait('slow'));
    await expectFailures(this, d, { appsExit: true });
  });

  it('rolling restart of a backend that closes its keep-alive connections on SIGTERM', async function () {
    const d = await scenario('rolling restart of closer (drains on SIGTERM)', () => restartAndWait('closer'));
    await expectFailures(this, d, { appsExit: true });
  });

  /** spare: 2 replicas to none (every pod gone), then 2 again, ready. */
  async function scaleSpareToZeroAndBack(): Promise<void> {
    await kubectl(['-n', nsName(), 'scale', 'deployment/spare', '--replicas=0']);
    await eventually('no spare pods', async () => {
      const { stdout } = await kubectl(['-n', nsName(), 'get', 'pods', '-l', 'app=spare', '-o', 'name']);
      return stdout.trim() === '' ? true : undefined;
    });
    await kubectl(['-n', nsName(), 'scale', 'deployment/spare', '--replicas=2']);
    await rolloutStatus(nsName(), 'spare');
  }

  it("scale a route's backend to zero and back, its weight set to 0 first", async function () {
    const d = await scenario('spare scaled 2 -> 0 -> 2 with weight 0', async () => {
      await apply([splitRoute(0)], nsName());
      await eventually('split answers from echo only', async () =>
        (await splitReplies(10)).every((n) => n === 'echo') ? true : undefined,
      );
      await scaleSpareToZeroAndBack();
      await apply([splitRoute(1)], nsName());
      await eventually('split answers from spare again', async () =>
        (await splitReplies(10)).includes('spare') ? true : undefined,
      );
    });
    await expectFailures(this, d, { appsExit: true });
  });

  it("scale a route's backend to zero and back while it has weight: only its share fails", async function () {
    const d = await scenario('spare scaled 2 -> 0 -> 2 with weight 1', async () => {
      await scaleSpareToZeroAndBack();
      await eventually('split answers from spare again', async () =>
        (await splitReplies(10)).includes('spare') ? true : undefined,
      );
    });
    // A backendRef whose Service has no endpoints answers its share with 503 (HTTPBackendRef: "SHOULD
    // return a 503"). Before that, while the last spare pods shut down, their sidecars have closed their
    // listeners but their endpoints still serve (the readiness probe has not failed yet): both attempts
    // are refused, and nothing reached an app, so the answer is the same 503 (ADR 0015). Every failure is
    // that 503 (gRPC UNAVAILABLE) on the split Service; none on the others. The exiting spare apps may
    // reset a POST or gRPC call they were just sent.
    await expectFailures(this, d, { splitNoEndpoint: true, appsExit: true });
  });

  it('controller rollout', async function () {
    const d = await scenario('controller rollout', async () => {
      await kubectl(['-n', CONTROL_NAMESPACE, 'rollout', 'restart', 'deployment/sluice-controller']);
      await controllerRollout();
    });
    await expectFailures(this, d);
  });

  /**
   * When the node's kubelet last renewed its Lease, and when its Ready condition last changed. The node
   * lifecycle controller marks a node NotReady, and every pod on it not ready (EndpointSlices then have no
   * ready endpoint; the sidecars keep sending to those pods, ADR 0021), when the Lease is older than its
   * grace period (50 s): an outage that starts just before a renewal and a slow API server recovery come
   * close to that.
   */
  async function nodeHealth(): Promise<{ renewed: number; readySince: number }> {
    const node = await getJson(['get', 'nodes']).then(
      (list) => ((list.items as Obj[])[0]?.metadata as Obj | undefined)?.name as string,
    );
    const lease = await getJson(['-n', 'kube-node-lease', 'get', 'lease', node]);
    const status = (await getJson(['get', 'node', node])).status as Obj;
    const ready = ((status.conditions ?? []) as Obj[]).find((c) => c.type === 'Ready');
    return {
      renewed: Date.parse(String((lease.spec as Obj).renewTime)),
      readySince: Date.parse(String(ready?.lastTransitionTime)),
    };
  }

  /** Stops a control-plane daemon for OUTAGE_MS, starts it, then checks the mesh still follows changes. */
  async function outage(component: 'kube-apiserver' | 'etcd'): Promise<Diff & { nodeNotReady: boolean }> {
    // The outage starts right after a Lease renewal (they come every 10 s), so that the kubelet's next
    // successful one stays within the grace period and the node is not marked NotReady (nodeHealth).
    await eventually(
      'a fresh node Lease',
      async () => (Date.now() - (await nodeHealth()).renewed < 1500 ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    const stopped = Date.now();
    const d = await scenario(`${component} down ${OUTAGE_MS / 1000} s and restarted`, async () => {
      await stopComponent(component);
      await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS)); // the outage itself, not a wait
      await startComponent(component);
      await eventually('the API server ready', () =>
        kubectl(['get', '--raw', '/readyz'], { timeoutMs: 10_000 }).then(
          () => true,
          () => undefined,
        ),
      );
      const back = performance.now();
      // The controller's watches came back: a route change reaches the client's sidecar...
      await apply([splitRoute(0)], nsName());
      await eventually(
        'split answers from echo only',
        async () => ((await splitReplies(10)).every((n) => n === 'echo') ? true : undefined),
        { timeoutMs: 120_000 },
      );
      const routed = Math.round((performance.now() - back) / 1000);
      await apply([splitRoute(1)], nsName());
      // ...and its status writes: a new route gets its Accepted condition.
      const probe = `after-${component}`;
      await apply(
        [plainService(probe), serviceRoute(probe, { name: probe }, [{ backendRefs: [backendRef('echo')] }])],
        nsName(),
      );
      await eventually(
        `${probe} accepted by the mesh controller`,
        async () => {
          const route = await getJson(['-n', nsName(), 'get', 'httproute', probe]);
          const parents = ((route.status as Obj | undefined)?.parents ?? []) as Obj[];
          const ours = parents.find((p) => p.controllerName === MESH_CONTROLLER_NAME);
          const accepted = ((ours?.conditions ?? []) as Obj[]).find((c) => c.type === 'Accepted');
          return accepted?.status === 'True' ? true : undefined;
        },
        { timeoutMs: 120_000 },
      );
      const accepted = Math.round((performance.now() - back) / 1000);
      console.log(
        `      churn: ${component} back: route change applied after ${routed} s, status after ${accepted} s`,
      );
      await eventually('split answers from spare again', async () =>
        (await splitReplies(10)).includes('spare') ? true : undefined,
      );
    });
    const nodeNotReady = await notReadyEvidence(stopped);
    return { ...d, nodeNotReady };
  }

  /**
   * Whether the node went NotReady since `stopped`, printing the evidence: its Ready condition changed
   * since (it is True again), the node lifecycle controller's NodeNotReady events since, and how many of
   * the test's pods had their Ready condition changed since (each of them listed not ready, so their
   * endpoints too).
   */
  async function notReadyEvidence(stopped: number): Promise<boolean> {
    const node = await nodeHealth();
    if (!(node.readySince > stopped)) return false;
    const since = (o: Obj): boolean => {
      const meta = o.metadata as Obj;
      const at = Date.parse(String(o.lastTimestamp ?? o.eventTime ?? meta.creationTimestamp));
      return at >= stopped - 1000;
    };
    const events = ((await getJson(['get', 'events', '-A', '--field-selector', 'reason=NodeNotReady']))
      .items ?? []) as Obj[];
    const recent = events.filter(since);
    const kinds: Record<string, number> = {};
    for (const e of recent) {
      const kind = String((e.involvedObject as Obj).kind);
      kinds[kind] = (kinds[kind] ?? 0) + 1;
    }
    const pods = ((await getJson(['-n', nsName(), 'get', 'pods'])).items ?? []) as Obj[];
    const changed = pods.filter((p) => {
      const ready = (((p.status as Obj).conditions ?? []) as Obj[]).find((c) => c.type === 'Ready');
      return Date.parse(String(ready?.lastTransitionTime)) > stopped;
    });
    console.log(
      `      churn: the node was NotReady during the outage: Ready again ${Math.round((node.readySince - stopped) / 1000)} s ` +
        `after the stop; NodeNotReady events since: ${JSON.stringify(kinds)}; pods of ${nsName()} whose Ready ` +
        `changed since: ${changed.length} of ${pods.length}`,
    );
    return true;
  }

  /**
   * A node marked NotReady has every pod's Ready condition False (the kubelet's ContainersReady stays True)
   * and every endpoint not ready. The sidecars keep sending to those pods when no endpoint is ready (ADR
   * 0021): a NotReady node explains no failure; the evidence is printed all the same.
   */
  async function outageScenario(t: Mocha.Context, component: 'kube-apiserver' | 'etcd'): Promise<void> {
    const d = await outage(component);
    await expectFailures(t, d);
  }

  it('API server restart', async function () {
    await outageScenario(this, 'kube-apiserver');
  });

  it('etcd restart', async function () {
    await outageScenario(this, 'etcd');
  });

  /** Whether the node is Ready, and how many of the test's EndpointSlice endpoints are ready, of how many. */
  async function readiness(): Promise<{ nodeReady: boolean; ready: number; endpoints: number }> {
    const nodes = ((await getJson(['get', 'nodes'])).items ?? []) as Obj[];
    const conditions = ((nodes[0]?.status as Obj | undefined)?.conditions ?? []) as Obj[];
    const nodeReady = conditions.find((c) => c.type === 'Ready')?.status === 'True';
    const slices = ((await getJson(['-n', nsName(), 'get', 'endpointslices'])).items ?? []) as Obj[];
    const endpoints = slices.flatMap((s) => (s.endpoints ?? []) as Obj[]);
    const ready = endpoints.filter((e) => (e.conditions as Obj | undefined)?.ready !== false).length;
    return { nodeReady, ready, endpoints: endpoints.length };
  }

  /** How long the kubelet stays stopped once every endpoint is not ready (the outage itself, not a wait). */
  const SILENT_NODE_MS = 10_000;

  it('kubelet stopped until the node is NotReady, then started: its pods keep serving', async function () {
    const stopped = Date.now();
    const d = await scenario(
      `kubelet down until the node is NotReady, ${SILENT_NODE_MS / 1000} s more`,
      async () => {
        await stopComponent('kubelet');
        try {
          // The node lifecycle controller's grace period (50 s) for the node's Lease, then its pods.
          const down = await eventually(
            'the node NotReady and every endpoint not ready',
            async () => {
              const r = await readiness();
              return !r.nodeReady && r.ready === 0 && r.endpoints > 0 ? r : undefined;
            },
            { timeoutMs: 150_000, intervalMs: 1000 },
          );
          console.log(
            `      churn: node NotReady, 0 of ${down.endpoints} endpoints ready, ${Math.round((Date.now() - stopped) / 1000)} s after the kubelet stopped`,
          );
          await new Promise((resolve) => setTimeout(resolve, SILENT_NODE_MS)); // the outage itself, not a wait
        } finally {
          await startComponent('kubelet');
        }
        const back = await eventually(
          'the node Ready and every endpoint ready',
          async () => {
            const r = await readiness();
            return r.nodeReady && r.ready === r.endpoints ? r : undefined;
          },
          { timeoutMs: 150_000, intervalMs: 1000 },
        );
        console.log(
          `      churn: node and ${back.endpoints} endpoints ready again ${Math.round((Date.now() - stopped) / 1000)} s after the kubelet stopped`,
        );
      },
    );
    assert.ok(await notReadyEvidence(stopped), 'the node went NotReady');
    await expectFailures(this, d);
  });

  it('CA root rotation: introduce, sign, finish', async function () {
    const dir = await mkdtemp(join(tmpdir(), 'churn-ca-'));
    const sluice = (args: string[], input?: string) =>
      run(process.execPath, ['bin/sluice.js', ...args], input === undefined ? {} : { input });
    const step = async (args: string[]) => {
      const secret = await kubectl(['-n', CONTROL_NAMESPACE, 'get', 'secret', 'sluice-ca', '-o', 'json']);
      const next = await sluice(['ca', 'rotate', ...args], secret.stdout);
      await kubectl(['apply', '-f', '-'], { input: next.stdout });
    };
    type Summary = { issuer?: string | null; trustRoots?: string[] };
    const identityOf = async (name: string): Promise<Summary> =>
      (JSON.parse(await sidecarAdmin(nsName(), name, '/config_dump')) as { identity: Summary | null })
        .identity ?? {};
    /** Every load-carrying sidecar (the client and one pod of each backend) satisfies `check`. */
    const everySidecar = (what: string, check: (s: Summary) => boolean) =>
      eventually(
        what,
        async () => {
          for (const name of ['client', 'echo', 'slow', 'closer', 'spare']) {
            if (!check(await identityOf(name))) return undefined;
          }
          return true;
        },
        { timeoutMs: 120_000 },
      );
    try {
      await sluice(['ca', 'init', '--out', dir]);
      const newRoot = new X509Certificate(await readFile(join(dir, 'ca.pem'))).fingerprint256;
      const oldRoot = (await identityOf('client')).issuer;
      assert.ok(oldRoot, 'the client sidecar reports its issuer');
      const d = await scenario('CA root rotation (introduce, sign, finish)', async () => {
        await step(['introduce', '--new-ca', dir]);
        await everySidecar('every sidecar trusts both roots', (s) => (s.trustRoots ?? []).includes(newRoot));
        await step(['sign', '--new-ca', dir]);
        await everySidecar('every sidecar has a certificate from the new root', (s) => s.issuer === newRoot);
        // Every certificate the old root signed is gone from the sidecars that carry load; the
        // controller's own was renewed at its reload. (--force: finish otherwise waits the full lifetime.)
        await step(['finish', '--force']);
        await everySidecar(
          'every sidecar trusts the new root only',
          (s) => s.trustRoots?.length === 1 && s.trustRoots[0] === newRoot,
        );
      });
      await expectFailures(this, d);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it(`workload certificates (${CERT_MINUTES} min) renewed under load, and the whole run`, async () => {
    await inClient(['touch', STOP_FILE]);
    const end = await eventually('the load to finish', async () => {
      const s = await snapshot();
      return s.done ? s : undefined;
    });
    const sources = (JSON.parse(await sidecarAdmin(nsName(), 'client', '/config_dump')) as { sources: Obj })
      .sources;
    const issued = JSON.stringify(sources).match(/"issued":(\d+)/)?.[1];
    const total = PROTOCOLS.reduce((s, p) => s + end[p].total, 0);
    const rate = Math.round(total / end.seconds);
    console.log(
      `      churn: whole run: ${PROTOCOLS.map((p) => `${p} ${end[p].failed}/${end[p].total}`).join(', ')} failed ` +
        `(${rate} requests/s over ${end.seconds} s); client sidecar certificates issued: ${issued ?? '?'}`,
    );
    for (const s of suite) console.log(`        ${s.name}: ${s.failed}/${s.total}`);
    assert.ok(Number(issued) >= 2, `the client sidecar got ${issued ?? 'no'} certificates (none renewed)`);
  });
});
