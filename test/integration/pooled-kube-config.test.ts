import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../../controller/kube/pooled-kube-config.ts';
import { createWebhookCa, issueServingCert } from '../../injector/webhook-certificate.ts';

/** An HTTPS server answering every request with a Namespace, counting TLS connections and tokens. */
async function fakeApiServer(): Promise<{
  server: https.Server;
  caPem: string;
  connections: () => number;
  tokens: string[];
}> {
  const ca = await createWebhookCa({});
  const serving = await issueServingCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, dnsNames: ['api'] });
  let connections = 0;
  const tokens: string[] = [];
  const server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    tokens.push(req.headers.authorization ?? '');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }));
  });
  server.on('secureConnection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, caPem: ca.certPem, connections: () => connections, tokens };
}

function load(kubeConfig: KubeConfig, server: https.Server, caPem: string, token: string): void {
  const { port } = server.address() as AddressInfo;
  kubeConfig.loadFromClusterAndUser(
    {
      name: 'local',
      server: `https://127.0.0.1:${port}`,
      caData: Buffer.from(caPem).toString('base64'),
      tlsServerName: 'api',
      skipTLSVerify: false,
    },
    { name: 'user', token },
  );
}

describe('PooledKubeConfig (typed API clients against a local HTTPS server)', function () {
  let api: Awaited<ReturnType<typeof fakeApiServer>>;

  before(async () => {
    api = await fakeApiServer();
  });
  after(() => {
    api.server.closeAllConnections();
    api.server.close();
  });

  it('sends sequential and concurrent requests over one pool, not a connection each', async () => {
    const kubeConfig = new PooledKubeConfig();
    load(kubeConfig, api.server, api.caPem, 'token-1');
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const before = api.connections();
    for (let i = 0; i < 20; i++) await core.readNamespace({ name: 'default' });
    // undici opens a second connection for the second request (the first stays open, unused); after
    // that every request reuses one.
    assert.ok(api.connections() - before <= 2, `${api.connections() - before} connections`);
    await Promise.all(Array.from({ length: 5 }, () => core.readNamespace({ name: 'default' })));
    assert.ok(api.connections() - before <= 6, `${api.connections() - before} connections`);
  });

  it('still reads credentials for every request', async () => {
    const kubeConfig = new PooledKubeConfig();
    load(kubeConfig, api.server, api.caPem, 'token-a');
    const core = kubeConfig.makeApiClient(CoreV1Api);
    await core.readNamespace({ name: 'default' });
    (kubeConfig.getCurrentUser() as { token?: string }).token = 'token-b';
    await core.readNamespace({ name: 'default' });
    assert.deepEqual(api.tokens.slice(-2), ['Bearer token-a', 'Bearer token-b']);
  });

  it('takes a fresh pool after the refresh interval (a plain KubeConfig opens one per request)', async () => {
    const refreshing = new PooledKubeConfig(0);
    load(refreshing, api.server, api.caPem, 't');
    const plain = new KubeConfig();
    load(plain, api.server, api.caPem, 't');
    for (const kubeConfig of [refreshing, plain]) {
      const core = kubeConfig.makeApiClient(CoreV1Api);
      const before = api.connections();
      for (let i = 0; i < 3; i++) await core.readNamespace({ name: 'default' });
      assert.equal(api.connections() - before, 3);
    }
  });
});
