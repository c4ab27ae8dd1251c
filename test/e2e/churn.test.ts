// Churn under load on the local cluster (issue 17): a meshed client sends a steady stream of requests to a
// multi-replica backend while the backend rolls and the controller restarts. Every request is counted;
// each scenario prints its counts, and the target is 0 failed requests.
import assert from 'node:assert/strict';
import {
  apply,
  CONTROL_NAMESPACE,
  controllerRollout,
  deploySluice,
  ensureGatewayApiCrds,
  eventually,
  kubectl,
  removeController,
  requireCluster,
  testNamespace,
} from '../support/kube.ts';

const INJECT = { 'sluice.dev/inject': 'enabled' };
const ECHO_PORT = 8080;
const STOP_FILE = '/tmp/churn-stop';

type Obj = Record<string, unknown>;

function deployment(name: string, replicas: number, pod: Obj): object {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      // One pod at a time, none down before its successor is ready: a rolling update as most apps run it.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: { metadata: { labels: { app: name } }, spec: { terminationGracePeriodSeconds: 15, ...pod } },
    },
  };
}

function objects(): object[] {
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'echo' } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'client' } },
    deployment('echo', 3, {
      serviceAccountName: 'echo',
      containers: [
        {
          name: 'echo',
          image: 'sluice-echo:dev',
          imagePullPolicy: 'Never',
          args: ['--name', 'echo', '--ports', String(ECHO_PORT)],
          readinessProbe: { httpGet: { path: '/ready', port: ECHO_PORT }, periodSeconds: 1 },
        },
      ],
    }),
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'echo' },
      spec: { selector: { app: 'echo' }, ports: [{ name: 'http', port: 80, targetPort: ECHO_PORT }] },
    },
    deployment('client', 1, {
      serviceAccountName: 'client',
      containers: [
        {
          name: 'app',
          image: 'sluice-toolbox:dev',
          imagePullPolicy: 'Never',
          command: ['sleep', 'infinity'],
        },
      ],
    }),
  ];
}

interface Counts {
  total: number;
  failed: number;
  byStatus: Record<string, number>;
}

/**
 * Steady load from the client's app container: curl on one keep-alive connection, 20 URLs per run, GETs
 * and POSTs alternating, until the stop file appears. Resolves with every request's status (000: curl
 * got no HTTP answer at all).
 */
function load(namespace: string, url: string): { stop: () => Promise<void>; counts: Promise<Counts> } {
  // curl pairs each -o with one URL: every response body is discarded, only the codes are printed.
  const urls = Array.from({ length: 10 }, () => `-o /dev/null '${url}'`).join(' ');
  const script = [
    `rm -f ${STOP_FILE}`,
    `while [ ! -e ${STOP_FILE} ]; do`,
    `  curl -s --max-time 10 -w '%{http_code}\\n' ${urls}`,
    `  curl -s --max-time 10 -X POST -d order=1 -w '%{http_code}\\n' ${urls}`,
    'done',
  ].join('\n');
  const run = kubectl(['-n', namespace, 'exec', 'deploy/client', '-c', 'app', '--', 'sh', '-c', script], {
    timeoutMs: 600_000,
  });
  const counts = run.then(({ stdout }) => {
    const byStatus: Record<string, number> = {};
    const codes = stdout.split('\n').filter((l) => l.trim() !== '');
    for (const code of codes) byStatus[code] = (byStatus[code] ?? 0) + 1;
    return { total: codes.length, failed: codes.filter((c) => c !== '200').length, byStatus };
  });
  return {
    stop: async () => {
      await kubectl(['-n', namespace, 'exec', 'deploy/client', '-c', 'app', '--', 'touch', STOP_FILE]);
    },
    counts,
  };
}

async function rolloutStatus(namespace: string, name: string): Promise<void> {
  await kubectl(['-n', namespace, 'rollout', 'status', `deployment/${name}`, '--timeout=300s'], {
    timeoutMs: 310_000,
  });
}

function report(scenario: string, c: Counts, retries: string): void {
  console.log(
    `      churn: ${scenario}: ${c.total} requests, ${c.failed} failed ${JSON.stringify(c.byStatus)}`,
  );
  console.log(`      churn: ${scenario}: client sidecar retries so far: ${retries || 'none'}`);
}

/** The client sidecar's sluice_upstream_retries_total lines (what the retry rules caught). */
async function retriesOf(namespace: string): Promise<string> {
  const { stdout } = await kubectl([
    '-n',
    namespace,
    'exec',
    'deploy/client',
    '-c',
    'sluice-proxy',
    '--',
    'node',
    '-e',
    "fetch('http://127.0.0.1:15021/metrics').then(r=>r.text()).then(t=>console.log(t))",
  ]);
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('sluice_upstream_retries_total{'))
    .map((l) => l.replace('sluice_upstream_retries_total', ''))
    .join(' ');
}

describe('churn under load on the local cluster (target: 0 failed requests)', function () {
  this.timeout(900_000);
  let ns: Awaited<ReturnType<typeof testNamespace>>;
  let url: string;

  before(async function () {
    await requireCluster();
    await ensureGatewayApiCrds();
    await deploySluice();
    ns = await testNamespace('churn', INJECT);
    url = `http://echo.${ns.name}.svc.cluster.local/hello`;
    await apply(objects(), ns.name);
    await rolloutStatus(ns.name, 'echo');
    await rolloutStatus(ns.name, 'client');
    // The client's sidecar has the backend's endpoints once a request gets through.
    await eventually('the client reaches echo', async () => {
      const { stdout } = await kubectl(
        [
          '-n',
          ns.name,
          'exec',
          'deploy/client',
          '-c',
          'app',
          '--',
          'curl',
          '-s',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          url,
        ],
        { timeoutMs: 30_000 },
      );
      return stdout.trim() === '200' ? true : undefined;
    });
  });

  after(async () => {
    await ns.delete();
    await removeController();
  });

  /** Runs `churn` under load, then a little more load once it is over, and returns the counts. */
  async function underLoad(churn: () => Promise<void>): Promise<Counts> {
    const l = load(ns.name, url);
    try {
      await churn();
    } finally {
      await l.stop();
    }
    return l.counts;
  }

  it('rolling restart of a 3-replica backend', async () => {
    const c = await underLoad(async () => {
      await kubectl(['-n', ns.name, 'rollout', 'restart', 'deployment/echo']);
      await rolloutStatus(ns.name, 'echo');
      // Until the old pods are gone, not only replaced.
      await eventually('the old echo pods to be gone', async () => {
        const { stdout } = await kubectl(['-n', ns.name, 'get', 'pods', '-l', 'app=echo', '-o', 'name']);
        return stdout.trim().split('\n').length === 3 ? true : undefined;
      });
    });
    report('rolling restart of echo (3 replicas)', c, await retriesOf(ns.name));
    assert.ok(c.total > 100, `only ${c.total} requests were sent`);
    assert.equal(c.failed, 0, JSON.stringify(c.byStatus));
  });

  it('controller rollout', async () => {
    const c = await underLoad(async () => {
      await kubectl(['-n', CONTROL_NAMESPACE, 'rollout', 'restart', 'deployment/sluice-controller']);
      await controllerRollout();
    });
    report('controller rollout', c, await retriesOf(ns.name));
    assert.equal(c.failed, 0, JSON.stringify(c.byStatus));
  });
});
