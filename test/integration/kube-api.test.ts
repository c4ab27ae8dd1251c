import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiStatus, KubeApi, MERGE_PATCH } from '../../lib/kube/kube-api.ts';
import { execCredentials } from '../../lib/kube/kube-credentials.ts';
import { waitFor } from '../support/wait-for.ts';
import { createWebhookCa, issueServingCert } from '../../injector/webhook-tls.ts';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  contentType: string | undefined;
  body: string;
}

/**
 * An HTTPS stand-in for the API server: Status 404 for /missing, never answers /hang, echoes the rest; with
 * `accept` set, a request without `Authorization: Bearer <accept>` gets Status 401.
 */
async function fakeApiServer() {
  const auth: { accept: string | undefined } = { accept: undefined };
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
      if (auth.accept !== undefined && req.headers.authorization !== `Bearer ${auth.accept}`) {
        res.statusCode = 401;
        res.end(
          JSON.stringify({ kind: 'Status', code: 401, reason: 'Unauthorized', message: 'Unauthorized' }),
        );
        return;
      }
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
  return { server, caPem: ca.certPem, port, seen, auth, connections: () => connections };
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
    const seen = fake.seen.length;
    const pending = api.request('GET', '/hang?abort', { signal: abort.signal });
    await waitFor('the request to arrive', () => fake.seen.slice(seen).some((r) => r.url === '/hang?abort'));
    abort.abort();
    await assert.rejects(pending, /GET \/hang\?abort: /);
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

describe('KubeApi with an exec credential plugin', () => {
  let fake: Awaited<ReturnType<typeof fakeApiServer>>;
  let dir: string;
  let plugin: string;

  /** The plugin prints token tok-<run number>, with the expirationTimestamp in the file `expiry` if any. */
  before(async () => {
    fake = await fakeApiServer();
    dir = mkdtempSync(join(tmpdir(), 'exec-plugin-'));
    plugin = join(dir, 'plugin.sh');
    writeFileSync(
      plugin,
      [
        '#!/bin/sh',
        `echo run >> ${dir}/runs`,
        `n=$(($(wc -l < ${dir}/runs)))`,
        `exp=$(cat ${dir}/expiry 2>/dev/null)`,
        `if [ -n "$exp" ]; then exp=',"expirationTimestamp":"'$exp'"'; fi`,
        `echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"tok-'$n'"'$exp'}}'`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
  });
  beforeEach(() => {
    rmSync(join(dir, 'runs'), { force: true });
    rmSync(join(dir, 'expiry'), { force: true });
    fake.auth.accept = undefined;
    fake.seen.length = 0;
  });
  after(() => {
    fake.auth.accept = undefined;
    fake.server.closeAllConnections();
    fake.server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const runs = (): number => readFileSync(join(dir, 'runs'), 'utf8').split('\n').length - 1;
  const apiWith = (now: () => number = Date.now): KubeApi =>
    new KubeApi({
      server: `https://127.0.0.1:${fake.port}`,
      caPem: fake.caPem,
      tlsServerName: 'api',
      credentials: execCredentials(
        { apiVersion: 'client.authentication.k8s.io/v1', command: plugin },
        { now },
      ),
    });

  it('keeps a credential without expirationTimestamp until a 401, then runs the plugin again and retries once', async () => {
    const api = apiWith();
    try {
      fake.auth.accept = 'tok-1';
      await api.request('GET', '/a');
      await api.request('GET', '/b');
      assert.equal(runs(), 1);

      fake.auth.accept = 'tok-2'; // the old credential was revoked
      const results = await Promise.all([1, 2, 3].map((i) => api.request('GET', `/c${i}`)));
      assert.deepEqual(results, Array(3).fill({ kind: 'Echo', method: 'GET' }));
      assert.equal(runs(), 2, 'one plugin run for all requests the server rejected');
      assert.deepEqual(
        fake.seen.filter((r) => r.url === '/c1').map((r) => r.authorization),
        ['Bearer tok-1', 'Bearer tok-2'],
      );

      fake.auth.accept = 'nobody';
      await assert.rejects(api.request('GET', '/d'), (error: unknown) => apiStatus(error) === 401);
      assert.equal(fake.seen.filter((r) => r.url === '/d').length, 2, 'one retry, not more');
      assert.equal(runs(), 3);
    } finally {
      api.close();
    }
  });

  it('runs the plugin again shortly before expirationTimestamp, and after it', async () => {
    const expiry = Date.parse('2030-01-01T00:00:00Z');
    writeFileSync(join(dir, 'expiry'), '2030-01-01T00:00:00Z');
    let now = expiry - 60_000;
    const api = apiWith(() => now);
    try {
      await api.request('GET', '/a');
      await api.request('GET', '/b');
      assert.equal(runs(), 1, 'a credential a minute from expiry is kept');
      now = expiry - 5_000;
      await api.request('GET', '/c');
      assert.equal(runs(), 2, 'within the margin: run again');
      assert.equal(fake.seen.at(-1)?.authorization, 'Bearer tok-2');
      now = expiry + 1;
      await api.request('GET', '/d');
      assert.equal(runs(), 3, 'expired: run again');
      assert.equal(fake.seen.at(-1)?.authorization, 'Bearer tok-3');
    } finally {
      api.close();
    }
  });
});
