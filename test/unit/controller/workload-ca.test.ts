import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { webcrypto } from 'node:crypto';
import { createCa, loadCa } from '../../../pki/ca.ts';
import { createCsr } from '../../../pki/create-csr.ts';
import { parseIdentity } from '../../../pki/identity.ts';
import { generateKeyPair, privateKeyToPem, SIGNING_ALGORITHM } from '../../../pki/keys.ts';
import { parsePemBlocks, toPem } from '../../../pki/pem.ts';
import { x509 } from '../../../pki/x509-lib.ts';
import {
  DEFAULT_AUDIENCE,
  MAX_CSR_BYTES,
  MAX_TOKEN_BYTES,
  POD_NAME_KEY,
  POD_UID_KEY,
  serviceAccountOf,
  tokenReviewRequest,
  tokenReviewResult,
  TokenReviewError,
  WorkloadCa,
  type IssuedCertificate,
  type IssueResult,
  type IssuingCa,
  type Refusal,
  type TokenReviewer,
  type TokenReviewResult,
} from '../../../controller/workload-ca.ts';
import { renewAt } from '../../../protocol/certificate-protocol.ts';

const TD = 'cluster.local';
const HOUR = 3600_000;
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;

function saReview(namespace: string, serviceAccount: string, over: Partial<TokenReviewResult> = {}) {
  const review: TokenReviewResult = {
    authenticated: true,
    username: `system:serviceaccount:${namespace}:${serviceAccount}`,
    uid: '8c7f0f3e-0000-4000-8000-000000000001',
    groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
    audiences: [DEFAULT_AUDIENCE],
    extra: { [POD_NAME_KEY]: ['web-7d4b9c-abcde'], [POD_UID_KEY]: ['2f1e0d3c-0000-4000-8000-000000000002'] },
    error: '',
  };
  return { ...review, ...over };
}

/** Answers every review with `answer` and records what it was asked. */
class FakeReviewer implements TokenReviewer {
  calls: { token: string; audiences: readonly string[] }[] = [];
  answer: () => Promise<TokenReviewResult>;
  constructor(answer: TokenReviewResult | (() => Promise<TokenReviewResult>)) {
    this.answer = typeof answer === 'function' ? answer : () => Promise.resolve(answer);
  }
  review(token: string, audiences: readonly string[]): Promise<TokenReviewResult> {
    this.calls.push({ token, audiences });
    return this.answer();
  }
}

let issuer: IssuingCa;
before(async () => {
  const pem = await createCa({ trustDomain: TD });
  issuer = { ca: await loadCa(pem), chainPem: '', trustBundlePem: pem.certPem };
});

function workloadCa(
  reviewer: TokenReviewer,
  options: Partial<ConstructorParameters<typeof WorkloadCa>[0]> = {},
) {
  return new WorkloadCa({ issuer, reviewer, audience: DEFAULT_AUDIENCE, ...options });
}

function issued(result: IssueResult): IssuedCertificate {
  if (!result.ok) assert.fail(`refused: ${result.code} ${result.message}`);
  return result;
}

function refused(result: IssueResult, code: Refusal['code'], message?: RegExp): Refusal {
  if (result.ok) assert.fail(`issued ${result.spiffeId}, expected ${code}`);
  assert.equal(result.code, code, result.message);
  if (message) assert.match(result.message, message);
  assert.doesNotMatch(result.message, /\n/);
  return result;
}

/** The request is refused with `code` (and `message`) before any TokenReview. */
async function refusedUnreviewed(
  request: { token: unknown; csrPem: unknown },
  code: Refusal['code'],
  message: RegExp,
  what?: string,
): Promise<void> {
  const reviewer = new FakeReviewer(saReview('shop', 'web'));
  const refusal = refused(await workloadCa(reviewer).issue(request), code);
  assert.match(refusal.message, message, what);
  assert.equal(reviewer.calls.length, 0, what);
}

async function csrWith(
  extensions: x509.Extension[],
  keys?: webcrypto.CryptoKeyPair,
  signingAlgorithm: webcrypto.EcdsaParams = SIGNING_ALGORITHM,
): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'O=sluice',
    keys: keys ?? (await generateKeyPair()),
    signingAlgorithm,
    extensions,
  });
  return csr.toString('pem');
}

function sans(...names: x509.JsonGeneralName[]): x509.Extension {
  return new x509.SubjectAlternativeNameExtension(names);
}

describe('controller/workload-ca: issuing', () => {
  it('issues a P-256 certificate for the token identity that chains to the trust bundle', async () => {
    const reviewer = new FakeReviewer(saReview('shop', 'web'));
    const keys = await generateKeyPair();
    const before = Date.now();
    const result = issued(
      await workloadCa(reviewer).issue({ token: TOKEN, csrPem: await createCsr({ keys }) }),
    );

    assert.deepEqual(reviewer.calls, [{ token: TOKEN, audiences: [DEFAULT_AUDIENCE] }]);
    assert.equal(result.spiffeId, WEB);
    assert.equal(result.namespace, 'shop');
    assert.equal(result.serviceAccount, 'web');
    assert.equal(result.podName, 'web-7d4b9c-abcde');
    assert.equal(result.trustBundlePem, issuer.trustBundlePem);

    const identity = parseIdentity({
      certPem: result.certChainPem,
      keyPem: await privateKeyToPem(keys.privateKey),
      bundlePem: result.trustBundlePem,
    });
    assert.equal(identity.spiffeId, WEB);
    const leaf = new X509Certificate(result.certChainPem);
    assert.equal(leaf.subjectAltName, `URI:${WEB}`);
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(leaf.ca, false);
    assert.equal(parsePemBlocks(result.certChainPem, 'chain').length, 1);
    assert.deepEqual(result.notAfter, leaf.validToDate);
    const lifetime = result.notAfter.getTime() - before;
    assert.ok(Math.abs(lifetime - 24 * HOUR) < 60_000, `lifetime ${lifetime / HOUR} h`);
  });

  it('accepts a CSR that asks for exactly the token identity', async () => {
    const csrPem = await createCsr({ keys: await generateKeyPair(), spiffeId: WEB });
    const result = issued(
      await workloadCa(new FakeReviewer(saReview('shop', 'web'))).issue({ token: TOKEN, csrPem }),
    );
    assert.equal(result.spiffeId, WEB);
  });

  it('uses the configured validity and clock', async () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const pem = await createCa({ trustDomain: TD, now: new Date(now.getTime() - HOUR) });
    const ca = new WorkloadCa({
      issuer: { ca: await loadCa(pem), chainPem: '', trustBundlePem: pem.certPem },
      reviewer: new FakeReviewer(saReview('shop', 'web')),
      audience: DEFAULT_AUDIENCE,
      validityHours: 2,
      now: () => now,
    });
    const result = issued(
      await ca.issue({ token: TOKEN, csrPem: await createCsr({ keys: await generateKeyPair() }) }),
    );
    assert.equal(result.notAfter.toISOString(), '2030-01-01T02:00:00.000Z');
    assert.equal(result.notBefore.toISOString(), '2029-12-31T23:55:00.000Z');
  });

  it('refuses validity settings out of bounds', () => {
    const reviewer = new FakeReviewer(saReview('shop', 'web'));
    for (const validityHours of [0, 0.01, 169, NaN, Infinity, -1]) {
      assert.throws(() => workloadCa(reviewer, { validityHours }), RangeError, String(validityHours));
    }
    assert.throws(() => workloadCa(reviewer, { audience: '' }), RangeError);
    workloadCa(reviewer, { validityHours: 1 / 60 });
    workloadCa(reviewer, { validityHours: 168 });
  });

  it('appends the CA chain after the leaf', async () => {
    const extra = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const ca = new WorkloadCa({
      issuer: { ...issuer, chainPem: extra },
      reviewer: new FakeReviewer(saReview('shop', 'web')),
      audience: DEFAULT_AUDIENCE,
    });
    const result = issued(
      await ca.issue({ token: TOKEN, csrPem: await createCsr({ keys: await generateKeyPair() }) }),
    );
    assert.ok(result.certChainPem.endsWith(extra));
  });
});

describe('controller/workload-ca: refusals', () => {
  let csrPem: string;
  before(async () => {
    csrPem = await createCsr({ keys: await generateKeyPair() });
  });

  it('refuses a token the API server does not authenticate (invalid, expired, deleted service account)', async () => {
    for (const error of [
      '',
      'invalid bearer token, service account web has been deleted',
      'token expired\nline 2',
    ]) {
      const reviewer = new FakeReviewer({
        ...saReview('shop', 'web'),
        authenticated: false,
        username: '',
        error,
      });
      const refusal = refused(await workloadCa(reviewer).issue({ token: TOKEN, csrPem }), 'Unauthenticated');
      assert.ok(refusal.message.startsWith('token not authenticated'));
      if (error !== '') assert.ok(refusal.message.includes(error.split('\n')[0]!));
    }
  });

  it('refuses a token for another audience, or one reviewed without audiences', async () => {
    for (const audiences of [[], ['https://kubernetes.default.svc'], ['sluice.dev/mesh-other']]) {
      const reviewer = new FakeReviewer(saReview('shop', 'web', { audiences }));
      refused(await workloadCa(reviewer).issue({ token: TOKEN, csrPem }), 'Unauthenticated', /audience/);
    }
  });

  it('checks the configured audience', async () => {
    const reviewer = new FakeReviewer(saReview('shop', 'web', { audiences: ['other-mesh'] }));
    issued(await workloadCa(reviewer, { audience: 'other-mesh' }).issue({ token: TOKEN, csrPem }));
    assert.deepEqual(reviewer.calls[0]?.audiences, ['other-mesh']);
  });

  it('refuses users that are not service accounts', async () => {
    for (const username of [
      'system:admin',
      'kubernetes-admin',
      'system:node:worker-1',
      'system:serviceaccount:shop',
      'system:serviceaccount:shop:web:extra',
      '',
    ]) {
      const reviewer = new FakeReviewer(saReview('shop', 'web', { username }));
      refused(
        await workloadCa(reviewer).issue({ token: TOKEN, csrPem }),
        'PermissionDenied',
        /not a service account/,
      );
    }
  });

  it('refuses a service account whose name cannot be a SPIFFE ID', async () => {
    const reviewer = new FakeReviewer(saReview('Shop_NS', 'web'));
    refused(await workloadCa(reviewer).issue({ token: TOKEN, csrPem }), 'PermissionDenied', /namespace/);
  });

  it('refuses a token not bound to a pod unless configured otherwise', async () => {
    const extras: TokenReviewResult['extra'][] = [
      {},
      { [POD_NAME_KEY]: ['a'] },
      { [POD_NAME_KEY]: ['a', 'b'], [POD_UID_KEY]: ['u'] },
    ];
    for (const extra of extras) {
      const reviewer = new FakeReviewer(saReview('shop', 'web', { extra }));
      refused(
        await workloadCa(reviewer).issue({ token: TOKEN, csrPem }),
        'PermissionDenied',
        /bound to a pod/,
      );
    }
    const reviewer = new FakeReviewer(saReview('shop', 'web', { extra: {} }));
    const result = issued(
      await workloadCa(reviewer, { requirePodBoundToken: false }).issue({ token: TOKEN, csrPem }),
    );
    assert.equal(result.podName, undefined);
  });

  it('refuses a CSR that asks for another SPIFFE ID instead of rewriting it', async () => {
    const cases: [string, RegExp][] = [
      [
        `spiffe://${TD}/ns/shop/sa/admin`,
        /asks for "spiffe:\/\/cluster.local\/ns\/shop\/sa\/admin", but the token is for/,
      ],
      [
        `spiffe://${TD}/ns/kube-system/sa/web`,
        /but the token is for spiffe:\/\/cluster.local\/ns\/shop\/sa\/web/,
      ],
      [`spiffe://${TD}/anything`, /token is for/],
      [
        'spiffe://other.domain/ns/shop/sa/web',
        /trust domain "other.domain"; this CA issues for 'cluster.local'/,
      ],
    ];
    for (const [asked, message] of cases) {
      const reviewer = new FakeReviewer(saReview('shop', 'web'));
      const csr = await createCsr({ keys: await generateKeyPair(), spiffeId: asked });
      refused(await workloadCa(reviewer).issue({ token: TOKEN, csrPem: csr }), 'PermissionDenied', message);
    }
  });

  it('refuses CSRs that ask for more than a SPIFFE ID, before any TokenReview', async () => {
    const cases: [string, x509.Extension[], RegExp][] = [
      ['a DNS name', [sans({ type: 'dns', value: 'web.shop.svc' })], /dns SAN/],
      ['an IP address', [sans({ type: 'ip', value: '10.0.0.1' })], /ip SAN/],
      ['an email address', [sans({ type: 'email', value: 'a@b.c' })], /email SAN/],
      [
        'the ID and a DNS name',
        [sans({ type: 'url', value: WEB }, { type: 'dns', value: 'web' })],
        /dns SAN/,
      ],
      ['two URIs', [sans({ type: 'url', value: WEB }, { type: 'url', value: WEB })], /2 URI SANs/],
      ['a URI that is not a SPIFFE ID', [sans({ type: 'url', value: 'https://web.shop' })], /CSR URI SAN/],
      ['a CA certificate', [new x509.BasicConstraintsExtension(true, undefined, true)], /to be a CA/],
      ['key usages', [new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign)], /2\.5\.29\.15/],
      ['SAN twice', [sans({ type: 'url', value: WEB }), sans({ type: 'url', value: WEB })], /twice/],
    ];
    for (const [what, extensions, message] of cases) {
      const csr = await csrWith(extensions);
      await refusedUnreviewed({ token: TOKEN, csrPem: csr }, 'InvalidArgument', message, what);
    }
  });

  it('accepts a CSR that asks for basicConstraints CA:FALSE', async () => {
    const csr = await csrWith([new x509.BasicConstraintsExtension(false), sans({ type: 'url', value: WEB })]);
    issued(await workloadCa(new FakeReviewer(saReview('shop', 'web'))).issue({ token: TOKEN, csrPem: csr }));
  });

  it('refuses malformed CSRs and keys other than P-256, before any TokenReview', async () => {
    const good = parsePemBlocks(csrPem, 'csr')[0]!.der;
    const tampered = Buffer.from(good);
    const at = tampered.indexOf('sluice') + 5;
    tampered[at] = tampered[at]! ^ 1;
    const p384 = await globalThis.crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, [
      'sign',
      'verify',
    ]);
    const cases: [string, unknown, RegExp][] = [
      ['not PEM', 'hello', /no PEM data/],
      ['a certificate', issuer.trustBundlePem, /CERTIFICATE REQUEST/],
      ['garbage DER', toPem('CERTIFICATE REQUEST', Buffer.from('not asn.1 at all')), /cannot be parsed/],
      ['truncated DER', toPem('CERTIFICATE REQUEST', good.subarray(0, good.length - 10)), /cannot be parsed/],
      ['bad signature', toPem('CERTIFICATE REQUEST', tampered), /signature does not verify/],
      ['two CSRs', csrPem + csrPem, /exactly one/],
      ['P-384 key', await csrWith([], p384, { name: 'ECDSA', hash: 'SHA-384' }), /P-256/],
      ['empty', '', /no CSR/],
      ['missing', undefined, /no CSR/],
      ['a number', 42, /no CSR/],
    ];
    for (const [what, csr, message] of cases) {
      await refusedUnreviewed({ token: TOKEN, csrPem: csr }, 'InvalidArgument', message, what);
    }
  });

  it('refuses oversized or malformed tokens and CSRs without a TokenReview', async () => {
    const cases: [unknown, unknown, Refusal['code'], RegExp][] = [
      ['a'.repeat(MAX_TOKEN_BYTES + 1), csrPem, 'InvalidArgument', /token is larger than 16384/],
      [TOKEN, csrPem + ' '.repeat(MAX_CSR_BYTES), 'InvalidArgument', /CSR is larger than 16384/],
      [`${TOKEN}\nX-Other: 1`, csrPem, 'InvalidArgument', /characters/],
      ['two words', csrPem, 'InvalidArgument', /characters/],
      ['', csrPem, 'Unauthenticated', /no token/],
      [undefined, csrPem, 'Unauthenticated', /no token/],
      [{ token: TOKEN }, csrPem, 'Unauthenticated', /no token/],
    ];
    for (const [token, csr, code, message] of cases) {
      await refusedUnreviewed({ token, csrPem: csr }, code, message);
    }
    // A token of exactly the limit is reviewed.
    const reviewer = new FakeReviewer(saReview('shop', 'web'));
    issued(await workloadCa(reviewer).issue({ token: 'a'.repeat(MAX_TOKEN_BYTES), csrPem }));
  });

  it('never throws, whatever the request', async () => {
    const ca = workloadCa(new FakeReviewer(saReview('shop', 'web')));
    for (const request of [null, undefined, 42, 'x', [], { token: 1, csrPem: 2 }]) {
      const result = await ca.issue(request as never);
      assert.equal(result.ok, false);
    }
  });

  it('reports a failing TokenReview as Unavailable, with the cause kept for the log', async () => {
    const reviewer = new FakeReviewer(() => Promise.reject(new Error('connect ECONNREFUSED 10.96.0.1:443')));
    const refusal = refused(await workloadCa(reviewer).issue({ token: TOKEN, csrPem }), 'Unavailable');
    assert.doesNotMatch(refusal.message, /ECONNREFUSED/);
    assert.match(refusal.detail ?? '', /ECONNREFUSED/);
  });

  it('reports a CA that can no longer sign as Internal', async () => {
    const ca = workloadCa(new FakeReviewer(saReview('shop', 'web')), {
      now: () => new Date(Date.now() + 400 * 24 * HOUR),
    });
    const refusal = refused(await ca.issue({ token: TOKEN, csrPem }), 'Internal');
    assert.match(refusal.detail ?? '', /expired/);
  });
});

describe('controller/workload-ca: TokenReview objects', () => {
  it('builds the request body', () => {
    assert.deepEqual(tokenReviewRequest(TOKEN, [DEFAULT_AUDIENCE]), {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token: TOKEN, audiences: [DEFAULT_AUDIENCE] },
    });
  });

  it('reads an authenticated pod-bound service-account review', () => {
    // As returned by kube-apiserver for a projected token (node-name and credential-id since 1.30 / 1.29).
    const response = JSON.parse(`{
      "kind": "TokenReview",
      "apiVersion": "authentication.k8s.io/v1",
      "metadata": { "creationTimestamp": null },
      "spec": { "token": "x", "audiences": ["sluice.dev/mesh"] },
      "status": {
        "authenticated": true,
        "user": {
          "username": "system:serviceaccount:shop:web",
          "uid": "5f0ef4f6-1111-4222-8333-944444444444",
          "groups": ["system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"],
          "extra": {
            "authentication.kubernetes.io/credential-id": ["JTI=0c1d2e3f"],
            "authentication.kubernetes.io/node-name": ["worker-1"],
            "authentication.kubernetes.io/node-uid": ["aaaa"],
            "authentication.kubernetes.io/pod-name": ["web-7d4b9c-abcde"],
            "authentication.kubernetes.io/pod-uid": ["bbbb"]
          }
        },
        "audiences": ["sluice.dev/mesh"]
      }
    }`) as unknown;
    const result = tokenReviewResult(response);
    assert.equal(result.authenticated, true);
    assert.equal(result.username, 'system:serviceaccount:shop:web');
    assert.equal(result.uid, '5f0ef4f6-1111-4222-8333-944444444444');
    assert.deepEqual(result.audiences, ['sluice.dev/mesh']);
    assert.deepEqual(result.extra[POD_NAME_KEY], ['web-7d4b9c-abcde']);
    assert.deepEqual(result.extra[POD_UID_KEY], ['bbbb']);
    assert.equal(result.error, '');
  });

  it('reads a refused review (fields omitted when empty)', () => {
    const result = tokenReviewResult({
      kind: 'TokenReview',
      status: { user: {}, error: '[invalid bearer token, token has been invalidated]' },
    });
    assert.deepEqual(result, {
      authenticated: false,
      username: '',
      uid: '',
      groups: [],
      audiences: [],
      extra: {},
      error: '[invalid bearer token, token has been invalidated]',
    });
  });

  it('fails closed on fields of the wrong type', () => {
    const result = tokenReviewResult({
      status: {
        authenticated: 'true',
        user: { username: 7, groups: 'g', extra: { a: 'b', c: [1, 'd'], ['__proto__']: ['x'] } },
        audiences: [DEFAULT_AUDIENCE, 3],
      },
    });
    assert.equal(result.authenticated, false);
    assert.equal(result.username, '');
    assert.deepEqual(result.groups, []);
    assert.deepEqual(result.audiences, [DEFAULT_AUDIENCE]);
    assert.deepEqual(Object.keys(result.extra), ['c', '__proto__']);
    assert.deepEqual(result.extra.c, ['d']);
    assert.equal(Object.getPrototypeOf(result.extra), Object.prototype);
  });

  it('throws TokenReviewError for answers that are not TokenReviews', () => {
    for (const response of [null, 'x', [], {}, { kind: 'Status', status: 'Failure' }, { status: [] }]) {
      assert.throws(() => tokenReviewResult(response), TokenReviewError);
    }
  });

  it('splits service-account usernames', () => {
    assert.deepEqual(serviceAccountOf('system:serviceaccount:shop:web'), {
      namespace: 'shop',
      serviceAccount: 'web',
    });
    assert.equal(serviceAccountOf('system:serviceaccounts:shop'), undefined);
    assert.equal(serviceAccountOf('system:serviceaccount:a:b:c'), undefined);
  });
});

describe('protocol/certificate-protocol: renewAt', () => {
  const start = new Date('2030-01-01T00:00:00Z');
  const end = new Date(start.getTime() + 24 * HOUR);

  it('renews at 70% of the lifetime without jitter', () => {
    assert.equal(renewAt(start, end, 0.7, 0).toISOString(), '2030-01-01T16:48:00.000Z');
  });

  it('spreads renewals by the jitter either way', () => {
    assert.equal(renewAt(start, end, 0.7, 0.05, () => 0).getTime(), start.getTime() + 0.65 * 24 * HOUR);
    assert.equal(renewAt(start, end, 0.7, 0.05, () => 0.5).getTime(), start.getTime() + 0.7 * 24 * HOUR);
    assert.ok(
      Math.abs(renewAt(start, end, 0.7, 0.05, () => 1).getTime() - (start.getTime() + 0.75 * 24 * HOUR)) < 2,
    );
    for (let i = 0; i < 100; i++) {
      const at = renewAt(start, end).getTime() - start.getTime();
      assert.ok(at >= 0.65 * 24 * HOUR && at <= 0.75 * 24 * HOUR);
    }
  });

  it('is due at once for a certificate with no lifetime', () => {
    assert.equal(renewAt(end, start).getTime(), end.getTime());
  });

  it('rejects nonsense parameters', () => {
    assert.throws(() => renewAt(new Date(NaN), end), RangeError);
    assert.throws(() => renewAt(start, end, 0), RangeError);
    assert.throws(() => renewAt(start, end, 1), RangeError);
    assert.throws(() => renewAt(start, end, NaN), RangeError);
    assert.throws(() => renewAt(start, end, 0.9, 0.2), RangeError);
    assert.throws(() => renewAt(start, end, 0.7, -0.1), RangeError);
  });
});
