// A real `sluice proxy --controller` process on the host against the controller deployed from manifests/:
// the trust bundle comes from the sluice-ca-root ConfigMap the controller published in the test namespace,
// the workload certificate from /v1/certificate with a pod-bound projected token, the config from the
// stream. Needs the local cluster with a current sluice:dev image: npm run cluster:up && npm run cluster:images.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  apply,
  CONTROL_NAMESPACE,
  deploySluice,
  ensureGatewayApiCrds,
  getJson,
  plainService,
  removeController,
  eventually,
  kubectl,
  requireCluster,
  testNamespace,
} from '../support/kube.ts';
import { freePort } from '../support/free-port.ts';

function httpRoute(name: string): object {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'svc', port: 80 }],
      rules: [{ backendRefs: [{ name: 'v1', port: 80 }] }],
    },
  };
}

interface Dump {
  identity: { spiffeId: string } | null;
  sources: {
    config: { name: string; connected?: boolean };
    identity: { name: string; issued?: number };
  } | null;
  config: { destinations: { routes: string[] }[] } | null;
}

describe('sluice proxy --controller (host process)', function () {
  this.timeout(300_000);
  let ns: Awaited<ReturnType<typeof testNamespace>> | undefined;
  let dir = '';
  let child: ChildProcess | undefined;
  let output = '';
  let adminPort = 0;
  let bundleFromSecret = '';

  const admin = async (path: string): Promise<{ status: number; text: string }> => {
    const res = await fetch(`http://127.0.0.1:${adminPort}${path}`, { signal: AbortSignal.timeout(5000) });
    return { status: res.status, text: await res.text() };
  };
  const dump = async (): Promise<Dump> => JSON.parse((await admin('/config_dump')).text) as Dump;
  const routesInDump = (d: Dump): string[] => d.config?.destinations.flatMap((x) => x.routes) ?? [];

  before(async function () {
    await requireCluster();
    await ensureGatewayApiCrds();
    await deploySluice();
    ns = await testNamespace('sc');
    dir = mkdtempSync(join(tmpdir(), 'sluice-sidecar-controller-'));
    const secret = await getJson(['-n', CONTROL_NAMESPACE, 'get', 'secret', 'sluice-ca']);
    bundleFromSecret = Buffer.from((secret.data as Record<string, string>)['ca.crt']!, 'base64').toString();
    await apply([plainService('svc'), plainService('v1'), httpRoute('first')], ns.name);
    await kubectl(['-n', ns.name, 'create', 'serviceaccount', 'workload']);
    await apply(
      [
        {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'workload' },
          spec: {
            serviceAccountName: 'workload',
            automountServiceAccountToken: false,
            terminationGracePeriodSeconds: 0,
            containers: [
              {
                name: 'app',
                image: 'sluice:dev',
                imagePullPolicy: 'IfNotPresent',
                command: ['sleep', 'infinity'],
              },
            ],
          },
        },
      ],
      ns.name,
    );
  });

  after(async function () {
    child?.kill('SIGTERM');
    if (dir) rmSync(dir, { recursive: true, force: true });
    await ns?.delete();
    await removeController();
  });

  /** Waits for the controller to publish the trust bundle ConfigMap in the test namespace; its ca.crt. */
  async function publishedBundle(): Promise<string> {
    let seen = 'no ConfigMap';
    return eventually(`ConfigMap sluice-ca-root with the bundle of ${CONTROL_NAMESPACE}`, async () => {
      const { code, stdout } = await kubectl(
        ['-n', ns!.name, 'get', 'configmap', 'sluice-ca-root', '-o', 'json'],
        { okCodes: [1] },
      );
      if (code !== 0) return undefined;
      const cm = JSON.parse(stdout) as {
        metadata: { annotations?: Record<string, string> };
        data?: Record<string, string>;
      };
      const owner = cm.metadata.annotations?.['sluice.dev/control-plane'];
      seen = `owner ${owner ?? 'none'}, ${cm.data?.['ca.crt'] === bundleFromSecret ? 'same' : 'another'} bundle`;
      return owner === CONTROL_NAMESPACE && cm.data?.['ca.crt'] === bundleFromSecret
        ? cm.data['ca.crt']
        : undefined;
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; last seen: ${seen}`);
    });
  }

  it('publishes the trust bundle ConfigMap in the test namespace', async function () {
    await publishedBundle();
  });

  it('gets a certificate and config from the controller, and follows a route change', async function () {
    const bundleFile = join(dir, 'ca.crt');
    writeFileSync(bundleFile, await publishedBundle());
    const { stdout: token } = await kubectl([
      '-n',
      ns!.name,
      'create',
      'token',
      'workload',
      '--audience',
      'sluice.dev/mesh',
      '--bound-object-kind',
      'Pod',
      '--bound-object-name',
      'workload',
      '--duration',
      '10m',
    ]);
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, token.trim());
    const svc = await getJson(['-n', CONTROL_NAMESPACE, 'get', 'service', 'sluice-controller']);
    const ip = (svc.spec as { clusterIP: string }).clusterIP;
    const address = isIP(ip) === 6 ? `[${ip}]:15012` : `${ip}:15012`;
    adminPort = await freePort();
    const startedAt = Date.now();
    // prettier-ignore
    const args = [
      'bin/sluice.js', 'proxy', '--controller', address, '--token-file', tokenFile, '--ca-bundle-file', bundleFile,
      '--bind', '127.0.0.1', '--admin-port', String(adminPort),
      '--outbound-port', String(await freePort()), '--inbound-port', String(await freePort()),
    ];
    child = spawn('node_modules/.bin/node', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let exited: number | null | undefined;
    child.once('exit', (code) => (exited = code));

    try {
      await eventually('proxy ready', async () => {
        if (exited !== undefined) throw new Error(`proxy exited with ${exited}`);
        return (await admin('/ready')).status === 200 ? true : undefined;
      });
      const readyMs = Date.now() - startedAt;
      const d = await dump();
      assert.equal(d.identity?.spiffeId, `spiffe://cluster.local/ns/${ns!.name}/sa/workload`);
      assert.equal(d.sources?.config.name, 'controller');
      assert.equal(d.sources.config.connected, true);
      assert.equal(d.sources.identity.name, 'controller');
      assert.equal(d.sources.identity.issued, 1);
      assert.ok(routesInDump(d).includes(`HTTPRoute ${ns!.name}/first`), JSON.stringify(d.config));

      const changedAt = Date.now();
      await apply([httpRoute('second')], ns!.name);
      await eventually(
        'route change in /config_dump',
        async () => (routesInDump(await dump()).includes(`HTTPRoute ${ns!.name}/second`) ? true : undefined),
        30_000,
      );
      console.log(
        `      proxy ready ${readyMs} ms after spawn (certificate + snapshot); route change in /config_dump after ${Date.now() - changedAt} ms (kubectl apply included)`,
      );
    } catch (err) {
      console.log(output);
      throw err;
    }
  });
});
