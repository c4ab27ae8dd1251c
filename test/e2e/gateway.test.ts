// Ingress Gateways on the local cluster: a Gateway of class `sluice` is provisioned (Deployment, Service,
// ServiceAccount owned by it), becomes Programmed with the Service's address, takes traffic from the host
// (the ClusterIP through kube-proxy, docs/adr/0010) to a meshed backend that sees the gateway's SPIFFE
// identity, terminates TLS with the certificate SNI names and picks up a rotated Secret, validates client
// certificates on the port whose spec.tls.frontend asks for it, writes route parent status beside the
// mesh's, and is removed with the Gateway.
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { createCa, loadCa, type CertificateAuthority } from '../../pki/ca.ts';
import { serverCert, tlsSecret } from '../support/server-cert.ts';
import {
  apply,
  deploySluice,
  ensureGatewayApiCrds,
  eventually,
  getJson,
  kubectl,
  requireCluster,
  testNamespace,
} from '../support/kube.ts';

type Obj = Record<string, unknown>;
const INJECT = { 'sluice.dev/inject': 'enabled' };
const ECHO_PORT = 8080;
const GW_CONTROLLER = 'sluice.dev/gateway-controller';

function echo(): object[] {
  const labels = { app: 'echo' };
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'echo' } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'echo', labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: 'echo',
            terminationGracePeriodSeconds: 2,
            containers: [
              {
                name: 'echo',
                image: 'sluice-echo:dev',
                imagePullPolicy: 'Never',
                args: ['--name', 'echo', '--ports', String(ECHO_PORT)],
                readinessProbe: { httpGet: { path: '/ready', port: ECHO_PORT }, periodSeconds: 1 },
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'echo' },
      spec: { selector: labels, ports: [{ name: 'http', port: 80, targetPort: ECHO_PORT }] },
    },
  ];
}

function gateway(namespace: string): object {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'web', namespace },
    spec: {
      gatewayClassName: 'sluice',
      tls: {
        frontend: {
          default: {},
          perPort: [
            {
              port: 8443,
              tls: {
                validation: { caCertificateRefs: [{ group: '', kind: 'ConfigMap', name: 'client-ca' }] },
              },
            },
          ],
        },
      },
      infrastructure: { labels: { team: 'storefront' } },
      listeners: [
        { name: 'http', port: 80, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'All' } } },
        {
          name: 'mtls',
          port: 8443,
          protocol: 'HTTPS',
          hostname: 'secure.example',
          tls: { mode: 'Terminate', certificateRefs: [{ kind: 'Secret', name: 'secure-cert' }] },
          allowedRoutes: { namespaces: { from: 'All' } },
        },
        {
          name: 'https',
          port: 443,
          protocol: 'HTTPS',
          hostname: 'secure.example',
          tls: { mode: 'Terminate', certificateRefs: [{ kind: 'Secret', name: 'secure-cert' }] },
          allowedRoutes: { namespaces: { from: 'All' } },
        },
      ],
    },
  };
}

function route(gatewayNamespace: string, hostnames: string[]): object {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'shop' },
    spec: {
      parentRefs: [
        { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: gatewayNamespace, name: 'web' },
      ],
      hostnames,
      rules: [{ backendRefs: [{ name: 'echo', port: 80 }] }],
    },
  };
}

interface Answer {
  status: number;
  body: string;
  serial?: string;
}

function request(
  address: string,
  port: number,
  host: string,
  tls?: { ca: string; cert?: string; key?: string },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const options = {
      host: address,
      port,
      path: '/hello',
      headers: { host },
      agent: false,
      timeout: 10_000,
      ...(tls ? { servername: host, ca: tls.ca } : {}),
      ...(tls?.cert ? { cert: tls.cert, key: tls.key } : {}),
    };
    const req = (tls ? https : http).get(options, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body,
          ...(tls ? { serial: (res.socket as unknown as TLSSocket).getPeerCertificate().serialNumber } : {}),
        }),
      );
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

function condition(conditions: unknown, type: string): Obj | undefined {
  return (Array.isArray(conditions) ? (conditions as Obj[]) : []).find((c) => c.type === type);
}

describe('ingress Gateways on the local cluster', function () {
  this.timeout(600_000);
  let edge: Awaited<ReturnType<typeof testNamespace>>;
  let app: Awaited<ReturnType<typeof testNamespace>>;
  let ca: CertificateAuthority;
  let address: string;

  before(async () => {
    await requireCluster();
    await ensureGatewayApiCrds();
    await deploySluice();
    // The gateway namespace asks for injection too: the gateway's own pods must still get no sidecar.
    edge = await testNamespace('gw-edge', INJECT);
    app = await testNamespace('gw-app', INJECT);
    ca = await loadCa(await createCa({ trustDomain: 'cluster.local' }));
    await apply(echo(), app.name);
    await kubectl(['-n', app.name, 'rollout', 'status', 'deployment/echo', '--timeout=180s'], {
      timeoutMs: 190_000,
    });
    await apply([
      tlsSecret(edge.name, 'secure-cert', await serverCert(ca, 'secure.example')),
      // The CA bundle the 8443 listener validates client certificates against (spec.tls.frontend).
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'client-ca', namespace: edge.name },
        data: { 'ca.crt': ca.certPem },
      },
      gateway(edge.name),
    ]);
    await apply([route(edge.name, ['shop.example', 'secure.example'])], app.name);
  });

  after(async () => {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when before() failed early
    await Promise.all([edge?.delete(), app?.delete()]);
  });

  it('accepts the GatewayClass with its supported features', async () => {
    await eventually('GatewayClass sluice Accepted', async () => {
      const gc = await getJson(['get', 'gatewayclass', 'sluice']);
      const status = (gc.status ?? {}) as Obj;
      return condition(status.conditions, 'Accepted')?.status === 'True' &&
        Array.isArray(status.supportedFeatures) &&
        status.supportedFeatures.length > 0
        ? true
        : undefined;
    });
  });

  it('provisions a Deployment, Service and ServiceAccount owned by the Gateway, without a sidecar', async () => {
    const deployment = await eventually('the gateway Deployment', () =>
      getJson(['-n', edge.name, 'get', 'deployment', 'web-sluice']).catch(() => undefined),
    );
    const owners = (deployment.metadata as Obj).ownerReferences as Obj[];
    assert.equal(owners[0]?.kind, 'Gateway');
    assert.equal(((deployment.metadata as Obj).labels as Obj).team, 'storefront');
    await getJson(['-n', edge.name, 'get', 'serviceaccount', 'web-sluice']);
    const service = await getJson(['-n', edge.name, 'get', 'service', 'web-sluice']);
    assert.equal((service.spec as Obj).type, 'LoadBalancer');
    await kubectl(['-n', edge.name, 'rollout', 'status', 'deployment/web-sluice', '--timeout=180s'], {
      timeoutMs: 190_000,
    });
    const pods = await getJson([
      '-n',
      edge.name,
      'get',
      'pods',
      '-l',
      'gateway.networking.k8s.io/gateway-name=web',
    ]);
    for (const pod of pods.items as Obj[]) {
      const spec = pod.spec as Obj;
      const names = [
        ...((spec.initContainers as Obj[] | undefined) ?? []),
        ...(spec.containers as Obj[]),
      ].map((c) => c.name);
      assert.deepEqual(names, ['sluice-gateway']);
    }
  });

  it('becomes Programmed with the Service address, listeners and attached routes in status', async () => {
    const gw = await eventually('Gateway web Programmed', async () => {
      const g = await getJson(['-n', edge.name, 'get', 'gateway', 'web']);
      const status = (g.status ?? {}) as Obj;
      return condition(status.conditions, 'Programmed')?.status === 'True' ? status : undefined;
    });
    const addresses = gw.addresses as Obj[];
    assert.ok(addresses.length > 0);
    address = String(addresses[0]!.value);
    const listeners = gw.listeners as Obj[];
    assert.deepEqual(
      listeners.map((l) => [l.name, l.attachedRoutes]),
      [
        ['http', 1],
        ['mtls', 1],
        ['https', 1],
      ],
    );
    for (const l of listeners) {
      for (const type of ['Accepted', 'ResolvedRefs', 'Programmed']) {
        assert.equal(condition(l.conditions, type)?.status, 'True', `${String(l.name)} ${type}`);
      }
    }
  });

  it('carries traffic from the host to a meshed backend, which sees the gateway identity', async () => {
    const reply = await eventually('a reply through the Gateway', async () => {
      const r = await request(address, 80, 'shop.example').catch(() => undefined);
      return r?.status === 200 ? r : undefined;
    });
    const body = JSON.parse(reply.body) as { name: string; peerIdentity: string | null };
    assert.equal(body.name, 'echo');
    assert.equal(body.peerIdentity, `spiffe://cluster.local/ns/${edge.name}/sa/web-sluice`);
    assert.equal((await request(address, 80, 'nothing.example')).status, 404);
  });

  it('writes route parent status under the gateway controller', async () => {
    await eventually('route status from the gateway controller', async () => {
      const r = await getJson(['-n', app.name, 'get', 'httproute', 'shop']);
      const parents = (((r.status ?? {}) as Obj).parents ?? []) as Obj[];
      const ours = parents.find((p) => p.controllerName === GW_CONTROLLER);
      return ours && condition(ours.conditions, 'Accepted')?.status === 'True' ? true : undefined;
    });
  });

  it('terminates TLS by SNI and serves a rotated certificate Secret', async () => {
    const first = await eventually('an HTTPS reply', async () => {
      const r = await request(address, 443, 'secure.example', { ca: ca.certPem }).catch(() => undefined);
      return r?.status === 200 ? r : undefined;
    });
    const rotated = await serverCert(ca, 'secure.example');
    assert.notEqual(rotated.serial, first.serial);
    await apply([tlsSecret(edge.name, 'secure-cert', rotated)]);
    await eventually('the rotated certificate', async () => {
      const r = await request(address, 443, 'secure.example', { ca: ca.certPem }).catch(() => undefined);
      return r?.serial === rotated.serial ? true : undefined;
    });
  });

  it('validates client certificates on a port with frontend validation', async () => {
    const client = await serverCert(ca, 'client.example');
    const ok = await eventually('an HTTPS reply with a client certificate', async () => {
      const r = await request(address, 8443, 'secure.example', { ca: ca.certPem, ...client }).catch(
        () => undefined,
      );
      return r?.status === 200 ? r : undefined;
    });
    assert.equal(ok.status, 200);
    await assert.rejects(request(address, 8443, 'secure.example', { ca: ca.certPem }));
    // The port without validation still takes clients without a certificate.
    assert.equal((await request(address, 443, 'secure.example', { ca: ca.certPem })).status, 200);
  });

  it('removes the data plane with the Gateway', async () => {
    await kubectl(['-n', edge.name, 'delete', 'gateway', 'web', '--wait=true', '--timeout=60s'], {
      timeoutMs: 70_000,
    });
    await eventually(
      'the gateway Deployment and Service gone',
      async () => {
        const { stdout } = await kubectl([
          '-n',
          edge.name,
          'get',
          'deployment,service,serviceaccount',
          '-l',
          'gateway.networking.k8s.io/gateway-name=web',
          '-o',
          'name',
        ]);
        return stdout.trim() === '' ? true : undefined;
      },
      { timeoutMs: 120_000 },
    );
  });
});
