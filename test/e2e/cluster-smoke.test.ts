import assert from 'node:assert/strict';
import { request } from 'node:http';
import { CLUSTER } from '../../cluster/cluster-config.ts';
import { apply, eventually, kubectl, requireCluster, testNamespace } from '../support/kube.ts';

const ECHO_PORT = 8080;

function echoDeployment(name: string): object[] {
  const labels = { app: name };
  return [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, labels },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            containers: [
              {
                name: 'echo',
                image: 'sluice-echo:dev',
                imagePullPolicy: 'Never',
                args: ['--name', name, '--ports', String(ECHO_PORT)],
                ports: [{ containerPort: ECHO_PORT, name: 'http' }],
                readinessProbe: { tcpSocket: { port: ECHO_PORT }, periodSeconds: 1 },
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, labels },
      spec: { selector: labels, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
    },
  ];
}

const toolbox = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'toolbox' },
  spec: {
    terminationGracePeriodSeconds: 1,
    containers: [
      {
        name: 'toolbox',
        image: 'sluice-toolbox:dev',
        imagePullPolicy: 'Never',
        command: ['sleep', 'infinity'],
      },
    ],
  },
};

function hostGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request(url, { timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(body));
    })
      .on('error', reject)
      .on('timeout', function (this: { destroy(e: Error): void }) {
        this.destroy(new Error(`GET ${url}: timed out`));
      })
      .end();
  });
}

describe('local cluster smoke test', function () {
  this.timeout(300_000);
  let ns: Awaited<ReturnType<typeof testNamespace>> | undefined;
  const namespace = (): string => ns!.name;
  /** kubectl in the suite's namespace. */
  const k = (...args: string[]) => kubectl(['-n', namespace(), ...args], { timeoutMs: 190_000 });

  before(async () => {
    await requireCluster();
    ns = await testNamespace('smoke');
  });

  after(async () => {
    if (ns && process.env.KEEP_NAMESPACE !== '1') await ns.delete();
  });

  it('has a Ready node', async () => {
    const { stdout } = await kubectl(['get', 'node', CLUSTER.nodeName, '-o', 'json']);
    const node = JSON.parse(stdout) as { status: { conditions: { type: string; status: string }[] } };
    assert.equal(node.status.conditions.find((c) => c.type === 'Ready')?.status, 'True');
  });

  describe('with a Deployment of sluice-echo:dev behind a Service, and a toolbox pod', function () {
    // In a hook, not a test of its own: when it fails, the tests that need it are skipped, not failed.
    before(async () => {
      await apply([...echoDeployment('echo'), toolbox], namespace());
      await k('rollout', 'status', 'deployment/echo', '--timeout=180s');
      await k('wait', '--for=condition=Ready', 'pod/toolbox', '--timeout=180s');
    });

    it('reaches the Service by its DNS name through the ClusterIP from another pod', async () => {
      const url = `http://echo.${namespace()}.svc.${CLUSTER.clusterDomain}/hello`;
      const reply = await eventually('curl through the Service', async () => {
        const { stdout } = await k('exec', 'toolbox', '--', 'curl', '-sS', '--max-time', '5', url);
        return JSON.parse(stdout) as { name: string; path: string };
      });
      assert.equal(reply.name, 'echo');
      assert.equal(reply.path, '/hello');
    });

    it('resolves the Service name to its ClusterIP inside pods', async () => {
      const { stdout: clusterIp } = await k('get', 'svc', 'echo', '-o', 'jsonpath={.spec.clusterIP}');
      const { stdout } = await k('exec', 'toolbox', '--', 'getent', 'hosts', `echo.${namespace()}`);
      assert.equal(stdout.trim().split(/\s+/)[0], clusterIp);
    });

    it('reaches pod IPs from the host', async () => {
      const { stdout } = await k('get', 'pods', '-l', 'app=echo', '-o', 'jsonpath={.items[0].status.podIP}');
      const reply = JSON.parse(await hostGet(`http://${stdout}:${ECHO_PORT}/from-host`)) as { path: string };
      assert.equal(reply.path, '/from-host');
    });

    it('serves kubectl exec and kubectl logs', async () => {
      const { stdout } = await k('exec', 'toolbox', '--', 'sh', '-c', 'echo exec-works; hostname');
      assert.deepEqual(stdout.trim().split('\n'), ['exec-works', 'toolbox']);
      const logs = await k('logs', 'deployment/echo', '--tail=50');
      assert.match(logs.stdout, /echo/i);
    });
  });

  it('completes a namespace deletion', async () => {
    const doomed = await testNamespace('doomed');
    await apply(echoDeployment('victim'), doomed.name);
    await doomed.delete();
    const { code } = await kubectl(['get', 'namespace', doomed.name], { okCodes: [1] });
    assert.equal(code, 1, 'the namespace is gone');
  });
});
