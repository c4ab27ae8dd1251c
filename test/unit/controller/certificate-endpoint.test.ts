// The CA's certificate endpoint as an attacker in the cluster tries it (issue 13, point 8): the real config
// server with the real endpoint, limits and CA on loopback; only the API server's TokenReview is a stand-in.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { createCa, issueWorkloadCert, loadCa } from '../../../pki/ca.ts';
import { createCsr } from '../../../pki/create-csr.ts';
import { parseIdentity } from '../../../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../../../pki/keys.ts';
import { MeshTlsCredentials } from '../../../pki/tls-options.ts';
import { CERTIFICATE_PATH } from '../../../protocol/certificate-protocol.ts';
import { controllerSpiffeId } from '../../../protocol/config-protocol.ts';
import { jsonLogger } from '../../../lib/json-log.ts';
import { ConfigHub } from '../../../controller/config-hub.ts';
import type { ConfigServer } from '../../../controller/config-server.ts';
import { createConfigServer } from '../../../controller/config-distribution.ts';
import { waitFor } from '../../support/wait-for.ts';
import {
  CachedTokenReviewer,
  KeyedLimiter,
  sourceKey,
  tokenShape,
} from '../../../controller/certificate-admission.ts';
import {
  DEFAULT_AUDIENCE,
  POD_NAME_KEY,
  POD_UID_KEY,
  type TokenReviewer,
  type TokenReviewResult,
} from '../../../controller/workload-ca.ts';

const TD = 'cluster.local';
const NOW_S = Math.floor(Date.now() / 1000);

/** A token shaped like a projected service-account token (the signature is junk: only review says). */
function jwt(
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = { alg: 'RS256' },
): string {
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = {
    aud: [DEFAULT_AUDIENCE],
    exp: NOW_S + 3600,
    sub: 'system:serviceaccount:shop:web',
    ...claims,
  };
  return `${part(header)}.${part(body)}.${randomBytes(32).toString('base64url')}`;
}

const VALID = jwt({ jti: 'valid' });

function review(authenticated: boolean): TokenReviewResult {
  return {
    authenticated,
    username: authenticated ? 'system:serviceaccount:shop:web' : '',
    uid: 'u',
    groups: [],
    audiences: authenticated ? [DEFAULT_AUDIENCE] : [],
    extra: authenticated ? { [POD_NAME_KEY]: ['web-1'], [POD_UID_KEY]: ['pod-uid-1'] } : {},
    error: authenticated ? '' : 'invalid bearer token',
  };
}

/** Stands in for the API server: only VALID is authenticated; counts what it is asked. */
class FakeApiServer implements TokenReviewer {
  calls = 0;
  review(token: string): Promise<TokenReviewResult> {
    this.calls++;
    return Promise.resolve(review(token === VALID));
  }
}

describe('CA certificate endpoint under attack', function () {
  this.timeout(60_000);
  let server: ConfigServer;
  let port = 0;
  let bundlePem = '';
  let csr = '';
  let theCa: Awaited<ReturnType<typeof loadCa>>;
  const api = new FakeApiServer();
  const certificates = new Map<string, number>();

  before(async () => {
    const caPem = await createCa({ trustDomain: TD });
    const ca = await loadCa(caPem);
    theCa = ca;
    bundlePem = caPem.certPem;
    const keys = await generateKeyPair();
    const certPem = await issueWorkloadCert({
      ca,
      spiffeId: controllerSpiffeId(TD),
      publicKey: keys.publicKey,
    });
    const identity = parseIdentity({ certPem, keyPem: await privateKeyToPem(keys.privateKey), bundlePem });
    const hub = new ConfigHub();
    hub.markSynced();
    server = createConfigServer({
      log: jsonLogger('test', () => undefined),
      hub,
      issuer: { ca, chainPem: '', trustBundlePem: bundlePem },
      identity,
      credentials: new MeshTlsCredentials(identity),
      trustDomain: TD,
      port: 0,
      reviewer: api,
      certificates,
    });
    await server.listen();
    port = server.port;
    csr = await createCsr({ keys: await generateKeyPair() });
  });

  after(() => server.close());

  /** An HTTP/2 session to the endpoint from `localAddress`, presenting `clientCert` if given. */
  function connect(localAddress: string, clientCert?: { cert: string; key: string }) {
    const session = http2.connect(`https://127.0.0.1:${port}`, {
      createConnection: () =>
        tls.connect({
          socket: net.connect({ host: '127.0.0.1', port, localAddress }),
          ca: bundlePem,
          ...clientCert,
          ALPNProtocols: ['h2'],
          checkServerIdentity: () => undefined,
        }),
    });
    session.on('error', () => undefined);
    return session;
  }

  /** One session from `localAddress`; `post` sends a certificate request and resolves with the status. */
  function client(localAddress: string) {
    const session = connect(localAddress);
    const post = (token: string | undefined, body = JSON.stringify({ csr })): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = session.request({
          ':method': 'POST',
          ':path': CERTIFICATE_PATH,
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        });
        let status = 0;
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('error', reject);
        req.on('data', () => undefined);
        req.on('end', () => resolve(status));
        req.end(body);
      });
    return { session, post };
  }

  it('one source flooding junk and forged tokens does not make a valid caller elsewhere get 429', async () => {
    // Four connections from one source, eight streams each at a time (the server's stream limit).
    const attackers = [1, 2, 3, 4].map(() => client('127.0.0.1'));
    const statuses = new Map<number, number>();
    const count = (s: number): void => void statuses.set(s, (statuses.get(s) ?? 0) + 1);
    // 2,000 requests: half junk (not a JWT, wrong audience, expired, alg none), half well-formed forgeries.
    const junk = [
      'x',
      'a.b',
      jwt({ aud: ['https://kubernetes.default.svc'] }),
      jwt({ exp: NOW_S - 10 }),
      jwt({}, { alg: 'none' }),
    ];
    await Promise.all(
      attackers.map(async (attacker) => {
        for (let round = 0; round < 125; round++) {
          const batch: Promise<number>[] = [];
          for (let i = 0; i < 4; i++)
            batch.push(attacker.post(junk[(round + i) % junk.length]), attacker.post(jwt()));
          (await Promise.all(batch)).forEach(count);
        }
      }),
    );
    for (const attacker of attackers) attacker.session.close();
    assert.equal(statuses.get(200), undefined, 'no forged token got a certificate');
    assert.ok((statuses.get(401) ?? 0) >= 1000, `junk refused with 401: ${JSON.stringify([...statuses])}`);
    assert.ok(
      (statuses.get(429) ?? 0) >= 900,
      `the flooding source is limited: ${JSON.stringify([...statuses])}`,
    );
    assert.ok(api.calls <= 15, `the flood cost ${api.calls} TokenReviews`);

    const valid = client('127.0.0.2');
    assert.equal(await valid.post(VALID), 200);
    valid.session.close();
    const fromFlooder = client('127.0.0.1');
    assert.equal(await fromFlooder.post(VALID), 429, 'the limit is the flooding source’s own');
    fromFlooder.session.close();

    const byReason = Object.fromEntries(certificates);
    assert.equal(byReason['Issued|issued'], 1);
    assert.ok(api.calls <= 16);
    assert.ok(byReason['Unauthenticated|malformed_token']! >= 1000);
    assert.ok(byReason['ResourceExhausted|source_rate_limited']! >= 900);
    assert.ok(byReason['Unauthenticated|unauthenticated']! >= 1);
  });

  /** A workload certificate and key from `ca` (PEM) for `spiffeId`. */
  async function workloadCert(
    ca: Awaited<ReturnType<typeof loadCa>>,
    spiffeId: string,
  ): Promise<{ cert: string; key: string }> {
    const keys = await generateKeyPair();
    const cert = await issueWorkloadCert({ ca, spiffeId, publicKey: keys.publicKey });
    return { cert, key: await privateKeyToPem(keys.privateKey) };
  }

  /** POST without a token on a connection that presents `clientCert`: status and JSON body. */
  async function renew(
    clientCert: { cert: string; key: string },
    csrPem: string,
    localAddress: string,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const session = connect(localAddress, clientCert);
    try {
      return await new Promise((resolve, reject) => {
        const req = session.request({ ':method': 'POST', ':path': CERTIFICATE_PATH });
        let status = 0;
        let text = '';
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('error', reject);
        req.on('data', (d: Buffer) => (text += d.toString()));
        req.on('end', () => resolve({ status, body: JSON.parse(text) as Record<string, unknown> }));
        req.end(JSON.stringify({ csr: csrPem }));
      });
    } finally {
      session.close();
    }
  }

  it('renews with the current workload certificate and no token: same identity, no TokenReview', async () => {
    const before = api.calls;
    const web = 'spiffe://cluster.local/ns/shop/sa/web';
    const current = await workloadCert(theCa, web);
    const r = await renew(
      current,
      await createCsr({ keys: await generateKeyPair(), spiffeId: web }),
      '127.0.0.4',
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.spiffeId, web);
    assert.match(String(r.body.certChain), /BEGIN CERTIFICATE/);
    // A CSR without a SAN gets the presented identity too.
    const plain = await renew(current, csr, '127.0.0.4');
    assert.equal(plain.status, 200, JSON.stringify(plain.body));
    assert.equal(plain.body.spiffeId, web);
    assert.equal(api.calls, before, 'no TokenReview for a renewal');
    assert.equal(certificates.get('Issued|renewed'), 2);
  });

  it('a renewal cannot change identity, and a certificate from another CA is no credential', async () => {
    const current = await workloadCert(theCa, 'spiffe://cluster.local/ns/shop/sa/web');
    const other = 'spiffe://cluster.local/ns/shop/sa/admin';
    const r = await renew(
      current,
      await createCsr({ keys: await generateKeyPair(), spiffeId: other }),
      '127.0.0.5',
    );
    assert.equal(r.status, 403);
    assert.match(
      String(r.body.message),
      /asks for "spiffe:\/\/cluster.local\/ns\/shop\/sa\/admin", but the certificate is for/,
    );
    const foreignCa = await loadCa(await createCa({ trustDomain: TD }));
    const foreign = await workloadCert(foreignCa, other);
    const f = await renew(foreign, csr, '127.0.0.5');
    assert.equal(f.status, 401, JSON.stringify(f.body));
    assert.equal(f.body.error, 'Unauthenticated');
  });

  it('answers a request without a token, or with a GET, before any work', async () => {
    const before = api.calls;
    const c = client('127.0.0.3');
    assert.equal(await c.post(undefined), 401);
    c.session.close();
    assert.equal(api.calls, before);
    assert.ok(certificates.get('Unauthenticated|no_token')! >= 1);
  });

  it('times its requests under the OTel HTTP server metric, by route template and status', async () => {
    const c = client('127.0.0.4');
    assert.equal(await c.post(undefined), 401);
    c.session.close();
    await waitFor('the 401 in http_server_request_duration_seconds', () => {
      const out: string[] = server.durations.render();
      return out.some((l) =>
        /^http_server_request_duration_seconds_count\{http_request_method="POST",http_route="\/v1\/certificate",http_response_status_code="401"\} [1-9]/.test(
          l,
        ),
      );
    });
  });
});

describe('certificate admission pieces', () => {
  it('tokenShape refuses what cannot be a mesh token and passes what might be', () => {
    const now = NOW_S * 1000;
    assert.deepEqual(tokenShape(VALID, DEFAULT_AUDIENCE, now), { expiresAtMs: (NOW_S + 3600) * 1000 });
    assert.ok('expiresAtMs' in tokenShape(jwt({ aud: DEFAULT_AUDIENCE }), DEFAULT_AUDIENCE, now));
    for (const [token, why] of [
      ['abc', /JWT/],
      ['a.b.c.d', /JWT/],
      ['a.b!.c', /JWT/],
      [jwt({}, { alg: 'none' }), /header/],
      [`${Buffer.from('[]').toString('base64url')}.e30.c2ln`, /header/],
      [jwt({ aud: 'other' }), /audience/],
      [jwt({ exp: undefined }), /expiry/],
      [jwt({ exp: NOW_S - 1 }), /expired/],
      ['a'.repeat(20_000), /larger/],
    ] as const) {
      const shape = tokenShape(token, DEFAULT_AUDIENCE, now);
      assert.ok('problem' in shape, token.slice(0, 40));
      assert.match(shape.problem, why);
    }
  });

  it('sourceKey folds IPv4-mapped addresses', () => {
    assert.equal(sourceKey('::ffff:10.0.0.1'), '10.0.0.1');
    assert.equal(sourceKey('10.0.0.1'), '10.0.0.1');
    assert.equal(sourceKey('fe80::1%eth0'), 'fe80::1');
    assert.equal(sourceKey(undefined), 'unknown');
  });

  it('KeyedLimiter: a bucket per key, penalties, bounded keys', () => {
    let t = 0;
    const limiter = new KeyedLimiter({ qps: 1, burst: 2 }, 3, () => t);
    assert.deepEqual([limiter.tryTake('a'), limiter.tryTake('a')], [0, 0]);
    assert.ok(limiter.tryTake('a') > 0, 'a is out');
    assert.equal(limiter.tryTake('b'), 0, 'b has its own bucket');
    limiter.charge('b', 10);
    t += 2000;
    assert.ok(limiter.tryTake('b') > 0, 'b pays its penalty');
    assert.equal(limiter.tryTake('a'), 0, 'a refilled');
    for (const k of ['c', 'd', 'e', 'f']) limiter.tryTake(k);
    assert.ok(limiter.size <= 3);
  });

  it('CachedTokenReviewer: one review per token while cached, a global budget, failures not kept', async () => {
    let t = 0;
    let fail = false;
    const inner = new FakeApiServer();
    const reviewer = new CachedTokenReviewer({
      reviewer: {
        review: (token) => (fail ? Promise.reject(new Error('api down')) : inner.review(token)),
      },
      budget: { qps: 1, burst: 2 },
      ttlMs: 10_000,
      now: () => t,
    });
    const a = await reviewer.review(VALID, [DEFAULT_AUDIENCE]);
    await reviewer.review(VALID, [DEFAULT_AUDIENCE]);
    assert.equal(a.authenticated, true);
    assert.equal(inner.calls, 1, 'the second is answered from the cache');
    await reviewer.review(jwt(), [DEFAULT_AUDIENCE]);
    await assert.rejects(reviewer.review(jwt(), [DEFAULT_AUDIENCE]), { name: 'ReviewBudgetExhausted' });
    assert.equal((await reviewer.review(VALID, [DEFAULT_AUDIENCE])).authenticated, true, 'cached: no budget');
    t += 11_000;
    fail = true;
    const other = jwt();
    await assert.rejects(reviewer.review(other, [DEFAULT_AUDIENCE]), /api down/);
    fail = false;
    t += 1000;
    assert.equal((await reviewer.review(other, [DEFAULT_AUDIENCE])).authenticated, false, 'asked again');
  });
});
