import assert from 'node:assert/strict';
import { createCa, issueWorkloadCert, loadCa, type CaPem } from '../../../pki/ca.ts';
import { parseIdentity } from '../../../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../../../pki/keys.ts';
import {
  buildCaSecret,
  CA_SECRET_NAME,
  CA_SECRET_TYPE,
  CaSecretError,
  loadCaSecret,
  loadOrCreateCaSecret,
  type CaSecret,
  type CaSecretStore,
} from '../../../controller/ca-root-secret.ts';
import type { IssuingCa } from '../../../controller/workload-ca.ts';
import { intermediateCa } from '../../support/intermediate-ca.ts';

const TD = 'cluster.local';
const NS = 'sluice-system';
const HOUR = 3600_000;

const b64 = (text: string) => Buffer.from(text).toString('base64');

/** Issues a leaf from `issuer` and checks it as a sidecar would (chain to the bundle, key, SAN). */
async function checkIssues(issuer: IssuingCa): Promise<void> {
  const keys = await generateKeyPair();
  const spiffeId = `spiffe://${TD}/ns/shop/sa/web`;
  const leaf = await issueWorkloadCert({ ca: issuer.ca, spiffeId, publicKey: keys.publicKey });
  const identity = parseIdentity({
    certPem: leaf + issuer.chainPem,
    keyPem: await privateKeyToPem(keys.privateKey),
    bundlePem: issuer.trustBundlePem,
  });
  assert.equal(identity.spiffeId, spiffeId);
}

function secret(data: Record<string, string>, over: Record<string, unknown> = {}): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: CA_SECRET_NAME, namespace: NS },
    type: CA_SECRET_TYPE,
    data,
    ...over,
  };
}

async function loadError(input: unknown, trustDomain = TD, now?: Date): Promise<string> {
  try {
    await loadCaSecret(input, { trustDomain, ...(now ? { now } : {}) });
  } catch (err) {
    assert.ok(err instanceof CaSecretError, `not a CaSecretError: ${String(err)}`);
    assert.doesNotMatch(err.message, /\n/);
    return err.message;
  }
  return assert.fail('loaded');
}

let root: CaPem;
before(async () => {
  root = await createCa({ trustDomain: TD });
});

describe('controller/ca-root-secret: building and loading', () => {
  it('builds the first-start Secret and loads it back', async () => {
    const built = buildCaSecret({ namespace: NS, ...root });
    assert.equal(built.metadata.name, 'sluice-ca');
    assert.equal(built.metadata.namespace, NS);
    assert.equal(built.metadata.labels['app.kubernetes.io/part-of'], 'sluice');
    assert.equal(built.type, 'kubernetes.io/tls');
    assert.deepEqual(Object.keys(built.data).sort(), ['ca.crt', 'tls.crt', 'tls.key']);
    assert.equal(Buffer.from(built.data['tls.key']!, 'base64').toString(), root.keyPem);

    // As it comes back from the API server: plain JSON.
    const issuer = await loadCaSecret(JSON.parse(JSON.stringify(built)), { trustDomain: TD });
    assert.equal(issuer.ca.trustDomain, TD);
    assert.equal(issuer.chainPem, '');
    assert.equal(issuer.trustBundlePem, root.certPem);
    await checkIssues(issuer);
  });

  it('loads a user Secret without ca.crt (self-signed root) and an Opaque one', async () => {
    const data = { 'tls.crt': b64(root.certPem), 'tls.key': b64(root.keyPem) };
    assert.equal((await loadCaSecret(secret(data), { trustDomain: TD })).trustBundlePem, root.certPem);
    await loadCaSecret(secret(data, { type: 'Opaque' }), { trustDomain: TD });
    await loadCaSecret(secret(data, { type: undefined }), { trustDomain: TD });
  });

  it('loads an intermediate CA: the chain goes with every leaf, the bundle holds the root', async () => {
    const mid = await intermediateCa(await loadCa(root));
    for (const tlsCrt of [mid.certPem, mid.certPem + root.certPem]) {
      const issuer = await loadCaSecret(
        secret({ 'tls.crt': b64(tlsCrt), 'tls.key': b64(mid.keyPem), 'ca.crt': b64(root.certPem) }),
        { trustDomain: TD },
      );
      assert.equal(issuer.chainPem, mid.certPem);
      assert.equal(issuer.trustBundlePem, root.certPem);
      await checkIssues(issuer);
    }
  });

  it('publishes every root in ca.crt (CA rotation)', async () => {
    const next = await createCa({ trustDomain: TD });
    const issuer = await loadCaSecret(
      secret({
        'tls.crt': b64(next.certPem),
        'tls.key': b64(next.keyPem),
        'ca.crt': b64(root.certPem + next.certPem),
      }),
      { trustDomain: TD },
    );
    assert.equal(issuer.trustBundlePem, root.certPem + next.certPem);
    assert.equal(issuer.chainPem, '');
    await checkIssues(issuer);
  });
});

describe('controller/ca-root-secret: bad Secrets', () => {
  it('says which key is missing or broken', async () => {
    const where = `Secret ${NS}/${CA_SECRET_NAME}`;
    assert.equal(
      await loadError(secret({ 'tls.crt': b64(root.certPem) })),
      `${where}: key tls.key is missing (a mesh CA Secret holds tls.crt, tls.key and optionally ca.crt)`,
    );
    assert.match(await loadError(secret({ 'tls.key': b64(root.keyPem) })), /key tls\.crt is missing/);
    assert.match(await loadError(secret({})), /key tls\.crt is missing/);
    assert.match(await loadError(secret({}, { data: undefined })), /key tls\.crt is missing/);
    assert.match(
      await loadError(secret({ 'tls.crt': '%%%', 'tls.key': b64(root.keyPem) })),
      /key tls\.crt is not base64/,
    );
    assert.match(
      await loadError(secret({ 'tls.crt': b64(root.certPem), 'tls.key': 5 as never })),
      /key tls\.key is not base64/,
    );
    assert.match(
      await loadError(secret({ 'tls.crt': b64('not pem'), 'tls.key': b64(root.keyPem) })),
      /^Secret sluice-system\/sluice-ca: tls\.crt: no PEM data found$/,
    );
  });

  it('refuses other Secret types and things that are not Secrets', async () => {
    const data = { 'tls.crt': b64(root.certPem), 'tls.key': b64(root.keyPem) };
    assert.match(
      await loadError(secret(data, { type: 'kubernetes.io/service-account-token' })),
      /has type "kubernetes.io\/service-account-token"; expected kubernetes.io\/tls/,
    );
    assert.equal(await loadError(null), 'CA Secret: not an object');
    assert.equal(await loadError('x'), 'CA Secret: not an object');
  });

  it('refuses a key that is not the CA key, a certificate that is not a CA, another trust domain', async () => {
    const other = await createCa({ trustDomain: TD });
    assert.match(
      await loadError(secret({ 'tls.crt': b64(root.certPem), 'tls.key': b64(other.keyPem) })),
      /CA key does not match the CA certificate/,
    );
    const ca = await loadCa(root);
    const keys = await generateKeyPair();
    const leaf = await issueWorkloadCert({
      ca,
      spiffeId: `spiffe://${TD}/ns/a/sa/b`,
      publicKey: keys.publicKey,
    });
    assert.match(
      await loadError(
        secret({ 'tls.crt': b64(leaf), 'tls.key': b64(await privateKeyToPem(keys.privateKey)) }),
      ),
      /basicConstraints does not say CA:TRUE/,
    );
    assert.match(
      await loadError(secret({ 'tls.crt': b64(root.certPem), 'tls.key': b64(root.keyPem) }), 'mesh.example'),
      /trust domain 'cluster.local', not 'mesh.example'/,
    );
  });

  it('refuses an expired CA', async () => {
    const data = { 'tls.crt': b64(root.certPem), 'tls.key': b64(root.keyPem) };
    assert.match(
      await loadError(secret(data), TD, new Date(Date.now() + 400 * 24 * HOUR)),
      /the CA certificate in tls\.crt expired at \d{4}-/,
    );
  });

  it('refuses chains that do not hold together', async () => {
    const mid = await intermediateCa(await loadCa(root));
    const other = await createCa({ trustDomain: TD });
    assert.match(
      await loadError(secret({ 'tls.crt': b64(mid.certPem), 'tls.key': b64(mid.keyPem) })),
      /key ca\.crt is missing and tls\.crt does not end with a self-signed root/,
    );
    assert.match(
      await loadError(
        secret({ 'tls.crt': b64(mid.certPem), 'tls.key': b64(mid.keyPem), 'ca.crt': b64(other.certPem) }),
      ),
      /tls\.crt does not chain to a certificate in ca\.crt/,
    );
    assert.match(
      await loadError(
        secret({
          'tls.crt': b64(mid.certPem + other.certPem),
          'tls.key': b64(mid.keyPem),
          'ca.crt': b64(root.certPem),
        }),
      ),
      /tls\.crt: certificate 2 is not the CA that issued certificate 1/,
    );
    const keys = await generateKeyPair();
    const leaf = await issueWorkloadCert({
      ca: await loadCa(root),
      spiffeId: `spiffe://${TD}/ns/a/sa/b`,
      publicKey: keys.publicKey,
    });
    assert.match(
      await loadError(
        secret({ 'tls.crt': b64(root.certPem), 'tls.key': b64(root.keyPem), 'ca.crt': b64(leaf) }),
      ),
      /ca\.crt: certificate 1 is not a CA/,
    );
  });
});

/** An in-memory API: Secrets by namespace/name; `beforeCreate` lets a test play the other replica. */
class MemoryStore implements CaSecretStore {
  secrets = new Map<string, unknown>();
  creates = 0;
  beforeCreate: (() => void) | undefined;
  get(namespace: string, name: string): Promise<unknown> {
    return Promise.resolve(this.secrets.get(`${namespace}/${name}`));
  }
  create(created: CaSecret): Promise<boolean> {
    this.beforeCreate?.();
    this.creates++;
    const key = `${created.metadata.namespace}/${created.metadata.name}`;
    if (this.secrets.has(key)) return Promise.resolve(false);
    this.secrets.set(key, JSON.parse(JSON.stringify(created)));
    return Promise.resolve(true);
  }
}

describe('controller/ca-root-secret: load or create', () => {
  it('creates the root on first start and reuses it afterwards', async () => {
    const store = new MemoryStore();
    const first = await loadOrCreateCaSecret(store, { namespace: NS, trustDomain: TD });
    assert.equal(first.created, true);
    assert.ok(store.secrets.has(`${NS}/${CA_SECRET_NAME}`));
    const second = await loadOrCreateCaSecret(store, { namespace: NS, trustDomain: TD });
    assert.equal(second.created, false);
    assert.equal(second.issuer.trustBundlePem, first.issuer.trustBundlePem);
    assert.equal(store.creates, 1);
    await checkIssues(second.issuer);
  });

  it('uses a Secret the user provided and never replaces it', async () => {
    const store = new MemoryStore();
    store.secrets.set(`${NS}/my-ca`, buildCaSecret({ namespace: NS, name: 'my-ca', ...root }));
    const result = await loadOrCreateCaSecret(store, { namespace: NS, name: 'my-ca', trustDomain: TD });
    assert.equal(result.created, false);
    assert.equal(result.issuer.trustBundlePem, root.certPem);
    assert.equal(store.creates, 0);
  });

  it('fails with the Secret problem rather than replacing a broken Secret', async () => {
    const store = new MemoryStore();
    store.secrets.set(`${NS}/${CA_SECRET_NAME}`, secret({ 'tls.crt': b64(root.certPem) }));
    await assert.rejects(
      loadOrCreateCaSecret(store, { namespace: NS, trustDomain: TD }),
      /key tls\.key is missing/,
    );
    assert.equal(store.creates, 0);
  });

  it('uses the Secret of the replica that created it first', async () => {
    const store = new MemoryStore();
    store.beforeCreate = () =>
      store.secrets.set(`${NS}/${CA_SECRET_NAME}`, buildCaSecret({ namespace: NS, ...root }));
    const result = await loadOrCreateCaSecret(store, { namespace: NS, trustDomain: TD });
    assert.equal(result.created, false);
    assert.equal(result.issuer.trustBundlePem, root.certPem);
  });

  it('passes API errors through', async () => {
    const store: CaSecretStore = {
      get: () => Promise.reject(new Error('secrets "sluice-ca" is forbidden')),
      create: () => Promise.resolve(true),
    };
    await assert.rejects(loadOrCreateCaSecret(store, { namespace: NS, trustDomain: TD }), /forbidden/);
  });
});
