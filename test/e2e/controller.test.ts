// The controller as users deploy it: `kubectl apply -k manifests/` (its service account and RBAC, so a
// missing permission fails here), then route status, the config stream to a sidecar-side
// ControllerConfigSource running in this process, the certificate endpoint with real projected tokens,
// and a restart of every controller pod.
// Needs the local cluster with a current sluice:dev image: npm run cluster:up && npm run cluster:images.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { isIP } from 'node:net';
import { MESH_CONTROLLER_NAME } from '../../mesh-model/controller-name.ts';
import { controllerSpiffeId } from '../../protocol/config-protocol.ts';
import type { ProxyView } from '../../mesh-model/proxy-view.ts';
import { createCsr } from '../../pki/create-csr.ts';
import { parseIdentity, type Identity } from '../../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.ts';
import { checkServerSpiffeId } from '../../pki/tls-options.ts';
import { ControllerConfigSource } from '../../sidecar/controller-config-source.ts';
import {
  apply,
  CONTROL_NAMESPACE,
  controllerRollout,
  deploySluice,
  ensureGatewayApiCrds,
  FOREIGN_ENTRY,
  GATEWAY_CONTROLLER,
  GATEWAY_PARENT,
  getJson,
  plainService,
  removeController,
  eventually,
  kubectl,
  requireCluster,
  testNamespace,
} from '../support/kube.ts';

const AUDIENCE = 'sluice.dev/mesh';
const TRUST_DOMAIN = 'cluster.local';
const SELECTOR = 'app.kubernetes.io/name=sluice-controller';

interface Condition {
  type: string;
  status: string;
  reason: string;
  lastTransitionTime: string;
}
interface ParentStatus {
  controllerName: string;
  parentRef: { kind?: string; name: string };
  conditions: Condition[];
}

function httpRoute(name: string, backend: string, extraParents: object[] = []): object {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'svc', port: 80 }, ...extraParents],
      rules: [{ backendRefs: [{ name: backend, port: 80 }] }],
    },
  };
}

function sleeperPod(name: string, serviceAccount: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name },
    spec: {
      serviceAccountName: serviceAccount,
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 0,
      containers: [
        { name: 'app', image: 'sluice:dev', imagePullPolicy: 'IfNotPresent', command: ['sleep', 'infinity'] },
      ],
    },
  };
}

async function parents(namespace: string, route: string): Promise<ParentStatus[]> {
  const obj = await getJson(['-n', namespace, 'get', 'httproute', route]);
  const status = obj.status as { parents?: ParentStatus[] } | undefined;
  return status?.parents ?? [];
}

function condition(entry: ParentStatus | undefined, type: string): Condition | undefined {
  return entry?.conditions.find((c) => c.type === type);
}

async function ours(namespace: string, route: string): Promise<ParentStatus | undefined> {
  return (await parents(namespace, route)).find((p) => p.controllerName === MESH_CONTROLLER_NAME);
}

function hostPort(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

interface CertReply {
  status: number;
  body: Record<string, unknown>;
}

/**
 * POST /v1/certificate as a sidecar does: when the CA says 429 (the tests all call from this host's one
 * address, which the CA rate-limits per source), try again after the rate allows it.
 */
function requestCertificate(
  address: string,
  bundlePem: string,
  token: string,
  csr: string,
): Promise<CertReply> {
  return eventually(
    'a certificate reply other than 429',
    async () => {
      const reply = await postCertificate(address, bundlePem, token, csr);
      return reply.status === 429 ? undefined : reply;
    },
    { timeoutMs: 120_000, intervalMs: 1000 },
  );
}

/** POST /v1/certificate over TLS without a client certificate, verifying the controller's identity. */
async function postCertificate(
  address: string,
  bundlePem: string,
  token: string,
  csr: string,
): Promise<CertReply> {
  const session = http2.connect(`https://${address}`, {
    ca: bundlePem,
    checkServerIdentity: checkServerSpiffeId(controllerSpiffeId(TRUST_DOMAIN)),
    ALPNProtocols: ['h2'],
  });
  try {
    return await new Promise<CertReply>((resolve, reject) => {
      session.on('error', reject);
      const req = session.request({
        ':method': 'POST',
        ':path': '/v1/certificate',
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
      });
      let status = 0;
      let text = '';
      req.on('response', (headers) => (status = Number(headers[':status'])));
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (text += chunk));
      req.on('end', () => {
        try {
          resolve({ status, body: JSON.parse(text) as Record<string, unknown> });
        } catch {
          reject(new Error(`status ${status}, body not JSON: ${text.slice(0, 200)}`));
        }
      });
      req.on('error', reject);
      req.end(JSON.stringify({ csr }));
    });
  } finally {
    session.close();
  }
}

async function token(
  namespace: string,
  serviceAccount: string,
  pod: string,
  audience = AUDIENCE,
): Promise<string> {
  const { stdout } = await kubectl([
    '-n',
    namespace,
    'create',
    'token',
    serviceAccount,
    '--audience',
    audience,
    '--bound-object-kind',
    'Pod',
    '--bound-object-name',
    pod,
    '--duration',
    '10m',
  ]);
  return stdout.trim();
}

async function controllerPods(): Promise<{ name: string; ip: string; ready: boolean }[]> {
  const list = await getJson(['-n', CONTROL_NAMESPACE, 'get', 'pods', '-l', SELECTOR]);
  const items = list.items as {
    metadata: { name: string; deletionTimestamp?: string };
    status: { podIP?: string; conditions?: { type: string; status: string }[] };
  }[];
  return items
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => ({
      name: p.metadata.name,
      ip: p.status.podIP ?? '',
      ready: p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    }));
}

describe('controller deployed from manifests/', function () {
  this.timeout(300_000);
  let ns: Awaited<ReturnType<typeof testNamespace>> | undefined;
  let bundlePem = '';
  let serviceAddress = '';
  const sources: ControllerConfigSource[] = [];
  const sourceErrors: string[] = [];

  /** A workload certificate from the controller at `address` for the service account "workload". */
  async function workloadIdentity(address: string): Promise<Identity> {
    const keys = await generateKeyPair();
    const spiffeId = `spiffe://${TRUST_DOMAIN}/ns/${ns!.name}/sa/workload`;
    const reply = await requestCertificate(
      address,
      bundlePem,
      await token(ns!.name, 'workload', 'workload'),
      await createCsr({ keys, spiffeId }),
    );
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const identity = parseIdentity({
      certPem: reply.body.certChain as string,
      keyPem: await privateKeyToPem(keys.privateKey),
      bundlePem: reply.body.trustBundle as string,
    });
    assert.equal(identity.spiffeId, spiffeId);
    return identity;
  }

  /** A config source like a sidecar's; `view()` is what it last received. Stopped in after(). */
  function configSource(address: string, identity: Identity) {
    let view: ProxyView | undefined;
    const source = new ControllerConfigSource({ address, identity: () => identity });
    sources.push(source);
    source.start(
      (v) => (view = v),
      (error) => sourceErrors.push(error.message),
    );
    const hasRoute = (name: string) => () =>
      Promise.resolve(view?.model.routes.some((r) => r.name === name) ? true : undefined);
    return { source, hasRoute };
  }

  before(async function () {
    await requireCluster();
    await ensureGatewayApiCrds();
    await deploySluice();
    ns = await testNamespace('ctl');
    const secret = await getJson(['-n', CONTROL_NAMESPACE, 'get', 'secret', 'sluice-ca']);
    bundlePem = Buffer.from((secret.data as Record<string, string>)['ca.crt']!, 'base64').toString('utf8');
    const svc = await getJson(['-n', CONTROL_NAMESPACE, 'get', 'service', 'sluice-controller']);
    serviceAddress = hostPort((svc.spec as { clusterIP: string }).clusterIP, 15012);
    await apply([plainService('svc'), plainService('v1')], ns.name);
    await kubectl(['-n', ns.name, 'create', 'serviceaccount', 'workload']);
    await apply([sleeperPod('workload', 'workload')], ns.name);
    // The routes every test may look at; each test waits for the status it checks.
    await apply(
      [
        httpRoute('good', 'v1'),
        httpRoute('dangling', 'missing'),
        httpRoute('shared', 'v1', [GATEWAY_PARENT]),
      ],
      ns.name,
    );
  });

  after(async function () {
    for (const source of sources) source.stop();
    await ns?.delete();
    await removeController();
  });

  it('marks a route with a Service parent Accepted and ResolvedRefs', async function () {
    const entry = await eventually('status of route good', async () => {
      const e = await ours(ns!.name, 'good');
      return condition(e, 'ResolvedRefs')?.status === 'True' ? e : undefined;
    });
    assert.equal(condition(entry, 'Accepted')?.status, 'True');
    assert.deepEqual(entry.parentRef, { group: '', kind: 'Service', name: 'svc', port: 80 });
  });

  it('reports a missing backend as ResolvedRefs=False/BackendNotFound', async function () {
    const entry = await eventually('status of route dangling', async () => {
      const e = await ours(ns!.name, 'dangling');
      return condition(e, 'ResolvedRefs')?.status === 'False' ? e : undefined;
    });
    assert.equal(condition(entry, 'ResolvedRefs')?.reason, 'BackendNotFound');
    assert.equal(condition(entry, 'Accepted')?.status, 'True');
  });

  it("keeps another controller's entry on a shared route", async function () {
    const foreign = FOREIGN_ENTRY;
    // A merge patch replaces the list: if ours was there, it is gone until the controller puts it back.
    await kubectl([
      '-n',
      ns!.name,
      'patch',
      'httproute',
      'shared',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { parents: [foreign] } }),
    ]);
    const all = await eventually('both entries on route shared', async () => {
      const list = await parents(ns!.name, 'shared');
      const mine = list.find((p) => p.controllerName === MESH_CONTROLLER_NAME);
      const theirs = list.find((p) => p.controllerName === GATEWAY_CONTROLLER);
      return mine && theirs && condition(mine, 'Accepted')?.status === 'True' ? list : undefined;
    });
    assert.equal(all.length, 2);
    assert.deepEqual(
      all.find((p) => p.controllerName === GATEWAY_CONTROLLER),
      foreign,
    );
  });

  it('issues a workload certificate for a projected token and streams config to it', async function () {
    const pods = await controllerPods();
    const pod = pods.find((p) => p.ready && p.ip !== '');
    assert.ok(pod, 'a ready controller pod with an IP');
    const address = hostPort(pod.ip, 15012);
    const { hasRoute } = configSource(address, await workloadIdentity(address));
    await eventually('snapshot with route good', hasRoute('good'));
    const startedAt = Date.now();
    await apply([httpRoute('pushed', 'v1')], ns!.name);
    await eventually('route change reaches the sidecar', hasRoute('pushed'), 20_000);
    console.log(
      `      route change seen by the config source after ${Date.now() - startedAt} ms (kubectl apply included)`,
    );
  });

  it('refuses a token of another audience', async function () {
    const keys = await generateKeyPair();
    const reply = await requestCertificate(
      serviceAddress,
      bundlePem,
      await token(ns!.name, 'workload', 'workload', 'https://kubernetes.default.svc'),
      await createCsr({ keys }),
    );
    assert.equal(reply.status, 401, JSON.stringify(reply.body));
    assert.equal(reply.body.error, 'Unauthenticated');
  });

  it('refuses a CSR asking for a different identity', async function () {
    const keys = await generateKeyPair();
    const reply = await requestCertificate(
      serviceAddress,
      bundlePem,
      await token(ns!.name, 'workload', 'workload'),
      await createCsr({ keys, spiffeId: `spiffe://${TRUST_DOMAIN}/ns/${ns!.name}/sa/someone-else` }),
    );
    assert.equal(reply.status, 403, JSON.stringify(reply.body));
    assert.equal(reply.body.error, 'PermissionDenied');
  });

  it('refuses the token of a deleted service account', async function () {
    await kubectl(['-n', ns!.name, 'create', 'serviceaccount', 'doomed']);
    await apply([sleeperPod('doomed', 'doomed')], ns!.name);
    const doomedToken = await token(ns!.name, 'doomed', 'doomed');
    const keys = await generateKeyPair();
    const csr = await createCsr({ keys });
    const before = await requestCertificate(serviceAddress, bundlePem, doomedToken, csr);
    assert.equal(
      before.status,
      200,
      `the token works while the account exists: ${JSON.stringify(before.body)}`,
    );
    await kubectl(['-n', ns!.name, 'delete', 'serviceaccount', 'doomed', '--wait=true']);
    const reply = await eventually('refusal after the account is deleted', async () => {
      const r = await requestCertificate(serviceAddress, bundlePem, doomedToken, csr);
      // 200 while the review is cached (10 s).
      return r.status === 200 ? undefined : r;
    });
    assert.equal(reply.status, 401, JSON.stringify(reply.body));
  });

  it('loses nothing when every controller pod is replaced', async function () {
    // Through the Service, as sidecars connect.
    const { source, hasRoute } = configSource(serviceAddress, await workloadIdentity(serviceAddress));
    await eventually('source connected through the Service', hasRoute('good'));
    const goodBefore = await eventually('status of route good', async () => {
      const e = await ours(ns!.name, 'good');
      return condition(e, 'ResolvedRefs')?.status === 'True' ? e : undefined;
    });
    await eventually('status of route dangling', async () =>
      condition(await ours(ns!.name, 'dangling'), 'ResolvedRefs')?.status === 'False' ? true : undefined,
    );
    const sharedBefore = (await parents(ns!.name, 'shared')).map((p) => p.controllerName).sort();
    const oldPods = (await controllerPods()).map((p) => p.name);
    const disconnectsBefore = source.state.disconnects;

    await kubectl(['-n', CONTROL_NAMESPACE, 'delete', 'pods', '-l', SELECTOR, '--wait=false']);
    await eventually(
      'replacement pods ready',
      async () => {
        const pods = await controllerPods();
        const fresh = pods.filter((p) => !oldPods.includes(p.name));
        return fresh.length === 2 && fresh.every((p) => p.ready) ? true : undefined;
      },
      180_000,
    );
    await controllerRollout();
    // A change made after the restart reaches the sidecar through a new stream and is written to status.
    await apply([httpRoute('after-restart', 'v1')], ns!.name);
    await eventually('sidecar converges after the restart', hasRoute('after-restart'), 90_000);
    assert.ok(source.state.disconnects > disconnectsBefore, 'the stream was cut by the restart');
    assert.ok(source.state.connected);
    await eventually('status of the new route', async () =>
      condition(await ours(ns!.name, 'after-restart'), 'Accepted')?.status === 'True' ? true : undefined,
    );
    const goodAfter = await ours(ns!.name, 'good');
    assert.deepEqual(goodAfter, goodBefore, 'status unchanged (same conditions and transition times)');
    const dangling = await ours(ns!.name, 'dangling');
    assert.equal(condition(dangling, 'ResolvedRefs')?.reason, 'BackendNotFound');
    const shared = await parents(ns!.name, 'shared');
    assert.deepEqual(shared.map((p) => p.controllerName).sort(), sharedBefore, 'entries on route shared');
  });
});
