import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { apiStatus, KubeApi, MERGE_PATCH } from '../../lib/kube/kube-api.ts';
import { createWebhookCa, issueServingCert } from '../../injector/webhook-tls.ts';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  contentType: string | undefined;
  body: string;
}

/** An HTTPS stand-in for the API server: Status 404 for /missing, never answers /hang, echoes the rest. */
async function fakeApiServer() {
  const ca = await createWebhookCa({});
  const serving = await issueServingCert({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, dnsNames: ['api'] });
  let connections = 0;
  const seen: Seen[] = [];
  const server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        authorization: req.headers.authorization,
        contentType: req.headers['content-type'],
        body: Buffer.concat(chunks).toString(),
      });
      if (req.url?.startsWith('/hang')) return;
      res.setHeader('content-type', 'application/json');
      if (req.url?.startsWith('/missing')) {
        res.statusCode = 404;
        res.end(
          JSON.stringify({ kind: 'Status', code: 404, reason: 'NotFound', message: 'leases "x" not found' }),
        );
        return;
      }
      res.end(JSON.stringify({ kind: 'Echo', method: req.method }));
    });
  });
  server.on('secureConnection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, caPem: ca.certPem, port, seen, connections: () => connections };
}

describe('KubeApi against a local HTTPS server', () => {
  let fake: Awaited<ReturnType<typeof fakeApiServer>>;
  let api: KubeApi;
  let token = 'token-1';

  before(async () => {
    fake = await fakeApiServer();
    api = new KubeApi({
      server: `https://127.0.0.1:${fake.port}`,
      caPem: fake.caPem,
      tlsServerName: 'api',
      credentials: () => Promise.resolve({ authorization: `Bearer ${token}` }),
    });
  });
  after(() => {
    api.close();
    fake.server.closeAllConnections();
    fake.server.close();
  });

  it('sends JSON with the credentials of the moment, over one kept-alive connection', async () => {
    const before = fake.connections();
    for (let i = 0; i < 20; i++) {
      token = `token-${i}`;
      assert.deepEqual(await api.request('GET', '/api/v1/namespaces/a', { query: { limit: 5 } }), {
        kind: 'Echo',
        method: 'GET',
      });
    }
    assert.equal(fake.connections() - before, 1);
    assert.equal(fake.seen.at(-1)?.authorization, 'Bearer token-19');
    assert.equal(fake.seen.at(-1)?.url, '/api/v1/namespaces/a?limit=5');
    await api.request('PATCH', '/apis/x/status', { body: { status: { a: 1 } }, contentType: MERGE_PATCH });
    assert.deepEqual(
      { ...fake.seen.at(-1), authorization: undefined },
      {
        method: 'PATCH',
        url: '/apis/x/status',
        authorization: undefined,
        contentType: MERGE_PATCH,
        body: '{"status":{"a":1}}',
      },
    );
  });

  it('turns a Status response into a one-line KubeApiError with the HTTP status', async () => {
    await assert.rejects(api.request('GET', '/missing/x'), (error: unknown) => {
      assert.equal(apiStatus(error), 404);
      assert.equal((error as Error).message, 'GET /missing/x: 404 NotFound: leases "x" not found');
      return true;
    });
  });

  it('gives up at the timeout, and on an abort', async () => {
    await assert.rejects(api.request('GET', '/hang', { timeoutMs: 200 }), /GET \/hang: request timed out/);
    const abort = new AbortController();
    const pending = api.request('GET', '/hang', { signal: abort.signal });
    setTimeout(() => abort.abort(), 50);
    await assert.rejects(pending, /GET \/hang: /);
  });

  it('refuses a server whose certificate the CA did not sign', async () => {
    const stranger = new KubeApi({
      server: `https://127.0.0.1:${fake.port}`,
      caPem: (await createWebhookCa({})).certPem,
      tlsServerName: 'api',
      credentials: () => Promise.resolve({}),
    });
    await assert.rejects(stranger.request('GET', '/x'), /GET \/x: .*(certificate|verify)/i);
    stranger.close();
  });
});
