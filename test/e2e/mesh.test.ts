// The whole mesh on the local cluster: Sluice installed from manifests/ (controller + injector), pods
// injected by label, traffic between real pods through their sidecars.
import assert from 'node:assert/strict';
import {
  apply,
  CONTROL_NAMESPACE,
  deploySluice,
  ensureGatewayApiCrds,
  eventually,
  getJson,
  kubectl,
  removeController,
  requireCluster,
  testNamespace,
} from '../support/kube.ts';
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
  toolboxContainer,
  type Obj,
} from '../support/mesh-e2e.ts';

const TRUST_DOMAIN = 'cluster.local';

interface Reply {
  name: string;
  peerIdentity: string | null;
  headers: Record<string, unknown>;
}

/** echo (both versions), echo-v1, echo-v2: the servers. */
function echoServers(): object[] {
  const version = (v: string): object =>
    deployment(
      `echo-${v}`,
      { serviceAccountName: 'echo', containers: [echoContainer(`echo-${v}`)] },
      { labels: { app: 'echo', version: v } },
    );
  return [
    serviceAccount('echo'),
    version('v1'),
    version('v2'),
    service('echo', { app: 'echo' }),
    service('echo-v1', { app: 'echo', version: 'v1' }),
    service('echo-v2', { app: 'echo', version: 'v2' }),
  ];
}

function client(name = 'client', pod: Obj = {}, annotations: Record<string, string> = {}): object {
  const d = deployment(name, {
    serviceAccountName: 'client',
    containers: [toolboxContainer],
    ...pod,
  }) as { spec: { template: { metadata: Obj } } };
  d.spec.template.metadata.annotations = annotations;
  return [serviceAccount('client'), d];
}

async function podOf(namespace: string, app: string): Promise<Obj> {
  const list = await getJson(['-n', namespace, 'get', 'pods', '-l', `app=${app}`]);
  const pods = (list.items as Obj[]).filter((p) => !(p.metadata as Obj).deletionTimestamp);
  assert.equal(pods.length, 1, `one ${app} pod in ${namespace}`);
  return pods[0]!;
}

const containerNames = (pod: Obj, field: 'containers' | 'initContainers'): string[] =>
  (((pod.spec as Obj)[field] as Obj[] | undefined) ?? []).map((c) => c.name as string);

/** `count` requests from the client pod's app container in one curl (keep-alive; the sidecar routes each). */
async function send(
  namespace: string,
  url: string,
  count: number,
  headers: string[] = [],
  from = 'client',
): Promise<Reply[]> {
  const args = ['-sS', '--max-time', '30', '-w', '\\n', ...headers.flatMap((h) => ['-H', h])];
  const stdout = await execIn(
    namespace,
    from,
    'app',
    ['curl', ...args, ...Array<string>(count).fill(url)],
    60_000,
  );
  const replies = stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Reply);
  assert.equal(replies.length, count, `${count} replies from ${url}`);
  return replies;
}

function countNames(replies: readonly Reply[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of replies) counts[r.name] = (counts[r.name] ?? 0) + 1;
  return counts;
}

/** Polls until every one of a few requests is answered by `name` (a route change has reached the client). */
async function until(namespace: string, url: string, name: string, headers: string[] = [], from = 'client') {
  return eventually(`${url} answered by ${name} from ${namespace}/${from}`, async () => {
    const replies = await send(namespace, url, 5, headers, from);
    return replies.every((r) => r.name === name) ? replies : undefined;
  });
}

describe('the mesh on the local cluster (injector + controller + sidecars)', function () {
  this.timeout(600_000);
  let server: Awaited<ReturnType<typeof testNamespace>>;
  let consumer: Awaited<ReturnType<typeof testNamespace>>;
  let plain: Awaited<ReturnType<typeof testNamespace>>;
  let serverUrl: string;

  before(async function () {
    await requireCluster();
    await ensureGatewayApiCrds();
    await deploySluice();
    server = await testNamespace('mesh', INJECT);
    consumer = await testNamespace('mesh-consumer', INJECT);
    plain = await testNamespace('plain');
    serverUrl = `http://echo.${server.name}.svc.cluster.local/hello`;
    await apply([...echoServers(), ...(client() as object[])], server.name);
    await apply(client() as object[], consumer.name);
    await apply(client() as object[], plain.name);
    for (const name of ['echo-v1', 'echo-v2', 'client']) await rolloutStatus(server.name, name);
    await rolloutStatus(consumer.name, 'client');
    await rolloutStatus(plain.name, 'client');
  });

  after(async function () {
    await Promise.all([server, consumer, plain].filter(Boolean).map((ns) => ns.delete()));
    await removeController();
  });

  it('injects a labelled namespace’s pod: capture init container and native sidecar, Ready', async () => {
    const pod = await podOf(server.name, 'client');
    assert.deepEqual(containerNames(pod, 'initContainers'), ['sluice-init', 'sluice-proxy']);
    assert.deepEqual(containerNames(pod, 'containers'), ['app']);
    assert.equal(((pod.metadata as Obj).annotations as Obj)['sluice.dev/status'], 'injected');
    const statuses = (pod.status as Obj).initContainerStatuses as Obj[];
    const proxy = statuses.find((s) => s.name === 'sluice-proxy')!;
    assert.equal(proxy.ready, true);
    const ready = ((pod.status as Obj).conditions as Obj[]).find((c) => c.type === 'Ready');
    assert.equal(ready?.status, 'True');
  });

  it('leaves opted-out, hostNetwork and unlabelled-namespace pods untouched', async () => {
    await apply(
      [
        ...(client('opted-out', {}, { 'sluice.dev/inject': 'disabled' }) as object[]),
        ...(client('host', { hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet' }) as object[]),
      ],
      server.name,
    );
    await rolloutStatus(server.name, 'opted-out');
    await rolloutStatus(server.name, 'host');
    for (const [namespace, app] of [
      [server.name, 'opted-out'],
      [server.name, 'host'],
      [plain.name, 'client'],
    ] as const) {
      const pod = await podOf(namespace, app);
      assert.deepEqual(containerNames(pod, 'initContainers'), [], `${namespace}/${app}`);
      assert.deepEqual(containerNames(pod, 'containers'), ['app'], `${namespace}/${app}`);
      assert.equal(((pod.metadata as Obj).annotations as Obj | undefined)?.['sluice.dev/status'], undefined);
    }
  });

  it('carries traffic between meshed pods over mTLS: the server sees the client’s SPIFFE identity', async () => {
    const replies = await send(server.name, serverUrl, 10);
    const expected = `spiffe://${TRUST_DOMAIN}/ns/${server.name}/sa/client`;
    assert.deepEqual([...new Set(replies.map((r) => r.peerIdentity))], [expected]);
  });

  it('serves a Service without routes from its endpoints', async () => {
    // Per request, by latency (peak EWMA, two choices): which version answers is the balancer's choice.
    const replies = await send(server.name, serverUrl, 20);
    assert.ok(
      replies.every((r) => r.name === 'echo-v1' || r.name === 'echo-v2'),
      JSON.stringify(countNames(replies)),
    );
  });

  it('lets an un-meshed client reach a meshed server (PERMISSIVE), without a peer identity', async () => {
    const replies = await send(plain.name, serverUrl, 5);
    assert.ok(replies.every((r) => r.peerIdentity === null));
  });

  it('splits by weight (90/10) within tolerance', async () => {
    await apply(
      [
        serviceRoute('echo', { name: 'echo' }, [
          { backendRefs: [backendRef('echo-v1', 90), backendRef('echo-v2', 10)] },
        ]),
      ],
      server.name,
    );
    await eventually('the 90/10 route reached the client', async () => {
      const counts = countNames(await send(server.name, serverUrl, 100));
      return (counts['echo-v1'] ?? 0) >= 70 && (counts['echo-v2'] ?? 0) <= 30 ? counts : undefined;
    });
    const counts = countNames(await send(server.name, serverUrl, 400));
    const v2 = (counts['echo-v2'] ?? 0) / 400;
    // Binomial(400, 0.1): sd 1.5 %; ±6 % is four standard deviations.
    assert.ok(v2 > 0.04 && v2 < 0.16, `v2 share ${v2} (${JSON.stringify(counts)})`);
  });

  /** The producer route: header x-canary: true → v2, else v1. */
  const canaryRoute = () =>
    serviceRoute('echo', { name: 'echo' }, [
      {
        matches: [{ headers: [{ name: 'x-canary', value: 'true' }] }],
        backendRefs: [backendRef('echo-v2')],
      },
      { backendRefs: [backendRef('echo-v1')] },
    ]);

  /** Whether the server namespace's client sidecar has the producer route echo. */
  async function clientHasRoute(): Promise<boolean> {
    const { stdout } = await kubectl([
      '-n',
      server.name,
      'exec',
      'deploy/client',
      '-c',
      'app',
      '--',
      'curl',
      '-sS',
      'localhost:15021/config_dump',
    ]);
    const routes = (JSON.parse(stdout) as { config: { routes: { route: string }[] } }).config.routes;
    return routes.some((r) => r.route === `HTTPRoute ${server.name}/echo`);
  }

  it('matches on a header', async () => {
    await apply([canaryRoute()], server.name);
    await until(server.name, serverUrl, 'echo-v2', ['x-canary: true']);
    await until(server.name, serverUrl, 'echo-v1');
  });

  it('applies a consumer route only in its own namespace', async () => {
    await apply([canaryRoute()], server.name);
    await apply(
      [
        {
          apiVersion: 'gateway.networking.k8s.io/v1beta1',
          kind: 'ReferenceGrant',
          metadata: { name: 'consumers' },
          spec: {
            from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: consumer.name }],
            to: [{ group: '', kind: 'Service' }],
          },
        },
      ],
      server.name,
    );
    await apply(
      [
        serviceRoute('echo-override', { namespace: server.name, name: 'echo' }, [
          { backendRefs: [backendRef('echo-v2', 1, server.name)] },
        ]),
      ],
      consumer.name,
    );
    await until(consumer.name, serverUrl, 'echo-v2');
    // The producer route (header match → v2, else v1) still holds for the server's own namespace.
    await until(server.name, serverUrl, 'echo-v1');
  });

  it('converges within seconds when a route is deleted and re-created', async () => {
    await apply([canaryRoute()], server.name);
    await eventually('the client sidecar has the route', async () =>
      (await clientHasRoute()) ? true : undefined,
    );
    await kubectl(['-n', server.name, 'delete', 'httproute', 'echo']);
    await eventually('the client sidecar dropped the route', async () =>
      (await clientHasRoute()) ? undefined : true,
    );
    const started = Date.now();
    await apply(
      [serviceRoute('echo', { name: 'echo' }, [{ backendRefs: [backendRef('echo-v2')] }])],
      server.name,
    );
    await until(server.name, serverUrl, 'echo-v2');
    const seconds = (Date.now() - started) / 1000;
    assert.ok(seconds < 20, `converged after ${seconds} s`);
  });

  it('does not block kube-system while the webhook is down, and keeps un-meshed pods out of meshed namespaces', async () => {
    await kubectl(['-n', CONTROL_NAMESPACE, 'scale', 'deployment/sluice-injector', '--replicas=0']);
    try {
      await kubectl(
        [
          '-n',
          CONTROL_NAMESPACE,
          'wait',
          '--for=delete',
          'pod',
          '-l',
          'app.kubernetes.io/name=sluice-injector',
          '--timeout=60s',
        ],
        { timeoutMs: 70_000 },
      );
      const pod = (name: string): object => ({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name },
        spec: { containers: [{ name: 'app', image: 'sluice-pause:dev', imagePullPolicy: 'Never' }] },
      });
      const name = `webhook-down-${Date.now()}`;
      await apply([pod(name)], 'kube-system');
      await kubectl(['-n', 'kube-system', 'delete', 'pod', name, '--wait=false']);
      const refused = await kubectl(['-n', server.name, 'apply', '-f', '-'], {
        input: JSON.stringify(pod(name)),
        okCodes: [1],
      });
      assert.equal(refused.code, 1, 'a pod in a meshed namespace is refused while the injector is down');
      assert.match(refused.stderr, /sluice-injector|inject\.sluice\.dev/);
    } finally {
      await kubectl(['-n', CONTROL_NAMESPACE, 'scale', 'deployment/sluice-injector', '--replicas=2']);
      await rolloutStatus(CONTROL_NAMESPACE, 'sluice-injector');
    }
  });
});
