import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { LogFields, Logger } from '../../lib/json-log.ts';
import { x509 } from '../../pki/x509-lib.ts';
import { parseCertificates } from '../../pki/pem.ts';
import { WebhookCertificate, type WebhookTlsStore } from '../../injector/webhook-certificate.ts';
import {
  caBundleMatches,
  caBundlePatch,
  createWebhookCa,
  issueServingCert,
  planCertificate,
  servingDnsNames,
  type JsonPatchOperation,
  type ServingCert,
  type WebhookTlsSecret,
} from '../../injector/webhook-tls.ts';

const NS = 'sluice-system';
const NAMES = servingDnsNames('sluice-injector', NS);
const SERVICE = { name: 'sluice-injector', namespace: NS };
const DAY = 24 * 3600 * 1000;
const YEAR = 365 * DAY;
const T0 = Date.parse('2026-01-01T00:00:00Z');

const b64 = (text: string) => Buffer.from(text).toString('base64');
const unb64 = (text: string | undefined) => Buffer.from(text ?? '', 'base64').toString();
const clone = <T>(value: T): T => structuredClone(value);

interface Material {
  caCertPem: string;
  caKeyPem: string;
  certPem: string;
  keyPem: string;
}

async function material(params: { at?: number; names?: string[]; caAt?: number } = {}): Promise<Material> {
  const ca = await createWebhookCa({ now: new Date(params.caAt ?? params.at ?? T0) });
  const serving = await issueServingCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    dnsNames: params.names ?? NAMES,
    now: new Date(params.at ?? T0),
  });
  return { caCertPem: ca.certPem, caKeyPem: ca.keyPem, certPem: serving.certPem, keyPem: serving.keyPem };
}

function secretOf(m: Material, over: Record<string, string> = {}, bundle = m.caCertPem): WebhookTlsSecret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'sluice-injector-tls', namespace: NS, resourceVersion: '1', labels: {} },
    type: 'kubernetes.io/tls',
    data: {
      'tls.crt': b64(m.certPem),
      'tls.key': b64(m.keyPem),
      'ca.crt': b64(bundle),
      'ca.key': b64(m.caKeyPem),
      ...over,
    },
  };
}

function webhookConfiguration(caBundles: (string | undefined)[]): Record<string, unknown> {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'sluice-injector' },
    webhooks: [
      ...caBundles.map((caBundle, i) => ({
        name: `inject-${i}.sluice.dev`,
        clientConfig: {
          service: { name: 'sluice-injector', namespace: NS, path: '/inject', port: 443 },
          ...(caBundle === undefined ? {} : { caBundle }),
        },
      })),
      {
        name: 'other.example.com',
        clientConfig: { service: { name: 'other', namespace: NS }, caBundle: 'eA==' },
      },
      { name: 'url.example.com', clientConfig: { url: 'https://example.com/hook' } },
    ],
  };
}

/** Applies the test/add operations caBundlePatch makes, as the API server would; false when a test fails. */
function applyPatch(target: Record<string, unknown>, patch: readonly JsonPatchOperation[]): boolean {
  const copy = clone(target);
  for (const op of patch) {
    const path = op.path.split('/').slice(1);
    const last = path.pop()!;
    let node: unknown = copy;
    for (const part of path) node = (node as Record<string, unknown>)[part];
    const parent = node as Record<string, unknown>;
    if (op.op === 'test' && parent[last] !== op.value) return false;
    if (op.op === 'add') parent[last] = op.value;
  }
  Object.assign(target, copy);
  return true;
}

/** The API server's part, in memory: resourceVersion conflicts, 409 on create, JSON patch tests. */
class MemoryStore implements WebhookTlsStore {
  secret: Record<string, unknown> | undefined;
  configuration: Record<string, unknown> | undefined;
  version = 0;
  writes: string[] = [];
  /** Runs once just before the next Secret write lands (another replica getting there first). */
  beforeWrite: (() => Promise<void>) | undefined;
  failReads: Error | undefined;
  failPatch: Error | undefined;

  put(secret: WebhookTlsSecret | Record<string, unknown>): void {
    const copy = clone(secret) as Record<string, unknown>;
    copy.metadata = { ...(copy.metadata as object), resourceVersion: String(++this.version) };
    this.secret = copy;
  }

  async #hook(): Promise<void> {
    const hook = this.beforeWrite;
    this.beforeWrite = undefined;
    await hook?.();
  }

  getSecret(): Promise<unknown> {
    if (this.failReads) return Promise.reject(this.failReads);
    return Promise.resolve(clone(this.secret));
  }

  async createSecret(secret: WebhookTlsSecret): Promise<boolean> {
    await this.#hook();
    if (this.secret) return false;
    this.writes.push('create');
    this.put(secret);
    return true;
  }

  async replaceSecret(secret: WebhookTlsSecret): Promise<boolean> {
    await this.#hook();
    const current = (this.secret?.metadata as { resourceVersion?: string } | undefined)?.resourceVersion;
    if (current === undefined || secret.metadata.resourceVersion !== current) return false;
    this.writes.push('replace');
    this.put(secret);
    return true;
  }

  getWebhookConfiguration(): Promise<unknown> {
    if (this.failReads) return Promise.reject(this.failReads);
    return Promise.resolve(clone(this.configuration));
  }

  patchWebhookConfiguration(_name: string, patch: readonly JsonPatchOperation[]): Promise<boolean> {
    if (this.failPatch) return Promise.reject(this.failPatch);
    if (!this.configuration) return Promise.resolve(false);
    this.writes.push('patch');
    return Promise.resolve(applyPatch(this.configuration, patch));
  }

  data(key: string): string {
    return unb64((this.secret?.data as Record<string, string> | undefined)?.[key]);
  }

  caBundles(): unknown[] {
    const webhooks = (this.configuration?.webhooks ?? []) as { clientConfig: { caBundle?: string } }[];
    return webhooks.map((w) => w.clientConfig.caBundle);
  }
}

class MemoryLog implements Logger {
  lines: { level: string; msg: string; fields: LogFields }[] = [];
  info(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: 'info', msg, fields });
  }
  warn(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: 'warn', msg, fields });
  }
  error(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: 'error', msg, fields });
  }
  has(level: string, text: RegExp): boolean {
    return this.lines.some((line) => line.level === level && text.test(line.msg));
  }
}

/** Checks a serving certificate as the API server would: chains to the bundle, names, key. */
function checkServing(cert: ServingCert, caPem = cert.caBundlePem): void {
  const leaf = new X509Certificate(cert.certPem);
  const cas = parseCertificates(caPem, 'ca');
  assert.ok(
    cas.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey)),
    'the leaf chains to the bundle',
  );
  for (const name of NAMES) assert.equal(leaf.checkHost(name, { subject: 'never' }), name);
  assert.ok(leaf.checkPrivateKey(createPrivateKey(cert.keyPem)));
  assert.equal(cert.notAfter.getTime(), leaf.validToDate.getTime());
}

function instance(store: MemoryStore, clock: { now: number }, log = new MemoryLog()): WebhookCertificate {
  return new WebhookCertificate({
    store,
    namespace: NS,
    log,
    checkIntervalMs: 3_600_000,
    now: () => new Date(clock.now),
  });
}

describe('injector/webhook-certificate: certificates', () => {
  it('derives the Service DNS names, the cluster-local one included', () => {
    assert.deepEqual(NAMES, [
      'sluice-injector.sluice-system.svc',
      'sluice-injector.sluice-system.svc.cluster.local',
      'sluice-injector.sluice-system',
    ]);
    assert.throws(() => servingDnsNames('Bad_Name', NS), /not a valid DNS label/);
  });

  it('issues a serving certificate that verifies against its CA', async () => {
    const m = await material();
    const ca = new X509Certificate(m.caCertPem);
    const leaf = new X509Certificate(m.certPem);
    assert.ok(ca.ca);
    assert.ok(!leaf.ca);
    assert.equal(ca.subject, 'CN=sluice-injector-ca');
    assert.equal(leaf.subject, `CN=${NAMES[0]!}`);
    assert.ok(leaf.checkIssued(ca));
    assert.ok(leaf.verify(ca.publicKey));
    assert.ok(ca.verify(ca.publicKey));
    for (const name of NAMES) assert.equal(leaf.checkHost(name), name);
    assert.equal(leaf.checkHost('sluice-injector.other.svc'), undefined);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(m.keyPem)));
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(leaf.validToDate.getTime() - T0, YEAR);
    assert.equal(ca.validToDate.getTime() - T0, 10 * YEAR);

    const caExt = new x509.X509Certificate(m.caCertPem);
    const constraints = caExt.getExtension(x509.BasicConstraintsExtension)!;
    assert.equal(constraints.ca, true);
    assert.equal(constraints.pathLength, 0);
    assert.ok(caExt.getExtension(x509.KeyUsagesExtension)!.usages & x509.KeyUsageFlags.keyCertSign);
    const leafExt = new x509.X509Certificate(m.certPem);
    assert.equal(leafExt.getExtension(x509.KeyUsagesExtension)!.usages, x509.KeyUsageFlags.digitalSignature);
    assert.deepEqual(
      [...leafExt.getExtension(x509.ExtendedKeyUsageExtension)!.usages],
      [x509.ExtendedKeyUsage.serverAuth],
    );
  });

  it('cuts a serving certificate to the CA expiry', async () => {
    const ca = await createWebhookCa({ now: new Date(T0), validityDays: 30 });
    const serving = await issueServingCert({
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      dnsNames: NAMES,
      now: new Date(T0),
    });
    assert.equal(serving.notAfter.getTime(), new X509Certificate(ca.certPem).validToDate.getTime());
  });
});

describe('injector/webhook-certificate: planCertificate', () => {
  let m: Material;
  before(async () => {
    m = await material();
  });
  const plan = (secret: unknown, at = T0 + DAY) => planCertificate(secret, new Date(at), NAMES);

  it('creates when there is no Secret, keeps a valid one', () => {
    assert.equal(plan(undefined).action, 'create');
    const keep = plan(secretOf(m));
    assert.equal(keep.action, 'keep');
    assert.match(keep.reason, /valid until/);
    assert.equal(plan(JSON.parse(JSON.stringify(secretOf(m)))).action, 'keep');
  });

  it('renews the serving certificate with less than a third of its lifetime left, or expired', () => {
    assert.equal(plan(secretOf(m), T0 + 0.66 * YEAR).action, 'keep');
    const near = plan(secretOf(m), T0 + 0.67 * YEAR);
    assert.equal(near.action, 'renew-serving');
    assert.match(near.reason, /less than a third/);
    assert.equal(plan(secretOf(m), T0 + 2 * YEAR).action, 'renew-serving');
  });

  it('renews a serving certificate for other names, from another CA, or with a foreign key', async () => {
    const other = await material({ names: ['sluice-injector.default.svc'] });
    const wrongNames = plan(secretOf({ ...other }));
    assert.equal(wrongNames.action, 'renew-serving');
    assert.match(wrongNames.reason, /does not cover sluice-injector\.sluice-system\.svc/);

    const foreignCa = plan(secretOf({ ...m, certPem: other.certPem, keyPem: other.keyPem }));
    assert.equal(foreignCa.action, 'renew-serving');
    assert.match(foreignCa.reason, /not issued by the current CA/);

    const wrongKey = plan(secretOf({ ...m, keyPem: other.keyPem }));
    assert.equal(wrongKey.action, 'renew-serving');
    assert.match(wrongKey.reason, /tls\.key does not match/);
  });

  it('treats garbage as needing a new certificate, never throws', () => {
    const garbage: [Record<string, string>, string][] = [
      [{ 'tls.crt': b64('junk') }, 'renew-serving'],
      [{ 'tls.crt': '!!!' }, 'renew-serving'],
      [{ 'tls.key': '' }, 'renew-serving'],
      [{ 'tls.crt': b64('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n') }, 'renew-serving'],
      [{ 'ca.key': b64('junk') }, 'rotate-ca'],
      [{ 'ca.crt': b64(m.certPem) }, 'rotate-ca'],
      [{ 'ca.key': b64(m.keyPem) }, 'rotate-ca'],
      [{ 'ca.crt': 'not base64 at all' }, 'rotate-ca'],
    ];
    for (const [over, action] of garbage) {
      const result = plan(secretOf(m, over));
      assert.equal(result.action, action, JSON.stringify(over));
      assert.doesNotMatch(result.reason, /\n/);
    }
    for (const odd of [null, 'text', 42, [], {}, { data: null }, { data: { 'ca.crt': 7 } }, { data: [] }]) {
      assert.equal(plan(odd).action, odd === null ? 'create' : 'rotate-ca');
    }
  });

  it('rotates a CA with less than a third of its lifetime left; keeps the rotated Secret', async () => {
    assert.equal(plan(secretOf(m), T0 + 6 * YEAR).action, 'renew-serving');
    const near = plan(secretOf(m), T0 + 7 * YEAR);
    assert.equal(near.action, 'rotate-ca');
    assert.match(near.reason, /the CA expires at .*less than a third/);
    assert.equal(plan(secretOf(m), T0 + 11 * YEAR).action, 'rotate-ca');

    // After a rotation ca.crt holds the new CA and the old one; the new serving cert is from the new one.
    const next = await material({ at: T0 + 7 * YEAR });
    const rotated = secretOf(next, {}, next.caCertPem + m.caCertPem);
    assert.equal(plan(rotated, T0 + 7 * YEAR + DAY).action, 'keep');
    // The old CA's serving cert with the new CA's key is not accepted.
    assert.equal(
      plan(secretOf({ ...next, certPem: m.certPem, keyPem: m.keyPem }), T0 + DAY).action,
      'renew-serving',
    );
  });
});

describe('injector/webhook-certificate: caBundle', () => {
  it('patches only the webhooks calling our Service whose caBundle differs', () => {
    const bundle = 'BUNDLE PEM\n';
    const configuration = webhookConfiguration(['c3RhbGU=', b64(bundle), undefined]);
    const patch = caBundlePatch(configuration, bundle, SERVICE);
    assert.deepEqual(patch, [
      { op: 'test', path: '/webhooks/0/name', value: 'inject-0.sluice.dev' },
      { op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: b64(bundle) },
      { op: 'test', path: '/webhooks/2/name', value: 'inject-2.sluice.dev' },
      { op: 'add', path: '/webhooks/2/clientConfig/caBundle', value: b64(bundle) },
    ]);
    assert.ok(!caBundleMatches(configuration, bundle, SERVICE));
    assert.ok(applyPatch(configuration, patch));
    assert.ok(caBundleMatches(configuration, bundle, SERVICE));
    assert.deepEqual(caBundlePatch(configuration, bundle, SERVICE), []);
    // Another namespace's Service of the same name is not ours.
    assert.deepEqual(
      caBundlePatch(configuration, 'x', { name: 'sluice-injector', namespace: 'default' }),
      [],
    );
  });

  it('finds nothing to patch in odd input', () => {
    for (const odd of [
      undefined,
      null,
      'x',
      {},
      { webhooks: 'x' },
      { webhooks: [null, 1, { clientConfig: 3 }] },
    ]) {
      assert.deepEqual(caBundlePatch(odd, 'b', SERVICE), []);
    }
  });
});

describe('injector/webhook-certificate: WebhookCertificate', () => {
  const started: WebhookCertificate[] = [];
  const make = (store: MemoryStore, clock: { now: number }, log?: MemoryLog): WebhookCertificate => {
    const certificate = instance(store, clock, log);
    started.push(certificate);
    return certificate;
  };
  afterEach(() => {
    for (const certificate of started.splice(0)) certificate.stop();
  });

  it('creates the Secret and the caBundle on first start; a second replica uses them', async () => {
    const store = new MemoryStore();
    store.configuration = webhookConfiguration([undefined, undefined]);
    const clock = { now: T0 };
    const log = new MemoryLog();
    const a = make(store, clock, log);
    const cert = await a.start();
    checkServing(cert);
    assert.equal(a.current, cert);
    assert.deepEqual(store.writes, ['create', 'patch']);
    const secret = store.secret as unknown as WebhookTlsSecret;
    assert.equal(secret.type, 'kubernetes.io/tls');
    assert.deepEqual(secret.metadata.labels, {
      'app.kubernetes.io/part-of': 'sluice',
      'app.kubernetes.io/managed-by': 'sluice-injector',
    });
    assert.deepEqual(Object.keys(secret.data).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
    assert.equal(store.data('tls.crt'), cert.certPem);
    assert.equal(store.data('ca.crt'), cert.caBundlePem);
    assert.deepEqual(store.caBundles(), [b64(cert.caBundlePem), b64(cert.caBundlePem), 'eA==', undefined]);
    assert.ok(log.has('info', /created the webhook CA/));
    assert.ok(log.has('info', /updated the caBundle/));

    const b = make(store, clock);
    const same = await b.start();
    assert.equal(same.certPem, cert.certPem);
    assert.deepEqual(store.writes, ['create', 'patch']);
  });

  it('uses the other replica Secret when its create loses (409)', async () => {
    const store = new MemoryStore();
    const winner = await material();
    store.beforeWrite = () => Promise.resolve(store.put(secretOf(winner)));
    const log = new MemoryLog();
    const cert = await make(store, { now: T0 }, log).start();
    assert.equal(cert.certPem, winner.certPem);
    assert.deepEqual(store.writes, []);
    assert.ok(log.has('info', /another replica/));
    assert.ok(
      log.has('info', /does not exist yet/),
      'the missing MutatingWebhookConfiguration is only logged',
    );
  });

  it('renews near expiry and tells the listeners; a replace that loses (409) takes the winner', async () => {
    const store = new MemoryStore();
    store.configuration = webhookConfiguration([undefined]);
    const clock = { now: T0 };
    const a = make(store, clock);
    const b = make(store, clock);
    const first = await a.start();
    await b.start();
    const seenA: ServingCert[] = [];
    const seenB: ServingCert[] = [];
    a.onChange((cert) => seenA.push(cert));
    b.onChange((cert) => seenB.push(cert));

    clock.now = T0 + 0.7 * YEAR;
    // b renews while a is about to write: a's replace carries a stale resourceVersion.
    store.beforeWrite = () => b.checkNow();
    await a.checkNow();
    assert.deepEqual(store.writes, ['create', 'patch', 'replace']);
    assert.equal(seenA.length, 1);
    assert.equal(seenB.length, 1);
    assert.equal(seenA[0]!.certPem, seenB[0]!.certPem);
    assert.notEqual(seenA[0]!.certPem, first.certPem);
    assert.equal(seenA[0]!.caBundlePem, first.caBundlePem, 'same CA');
    checkServing(seenA[0]!);
    assert.equal(a.current, seenA[0]);

    await a.checkNow();
    assert.equal(seenA.length, 1, 'nothing new, no call');
  });

  it('rotates the CA: bundle of both, new serving cert from the new CA, caBundle before switching', async () => {
    const store = new MemoryStore();
    store.configuration = webhookConfiguration([undefined]);
    const clock = { now: T0 };
    const a = make(store, clock);
    const b = make(store, clock);
    await a.start();
    await b.start();
    const seenB: ServingCert[] = [];
    b.onChange((cert) => seenB.push(cert));
    // Serving certificates renewed as usual, the CA not yet two thirds through its life.
    clock.now = T0 + 6.5 * YEAR;
    await a.checkNow();
    await b.checkNow();
    assert.equal(seenB.length, 1);
    const first = a.current!;
    const oldCa = first.caBundlePem;
    assert.equal(seenB[0]!.certPem, first.certPem);

    clock.now = T0 + 7 * YEAR;
    // The caBundle cannot be updated: a keeps serving from the old CA (still valid) rather than break.
    store.failPatch = new Error('connect ECONNREFUSED 127.0.0.1:6443');
    const log = new MemoryLog();
    const c = make(store, clock, log);
    const cFirst = await c.start();
    assert.ok(log.has('info', /rotated the webhook CA/));
    assert.ok(log.has('warn', /could not update the caBundle/));
    const bundle = parseCertificates(store.data('ca.crt'), 'ca.crt');
    assert.equal(bundle.length, 2);
    assert.equal(bundle[1]!.toString(), oldCa);
    checkServing(cFirst);
    const leaf = new X509Certificate(cFirst.certPem);
    assert.ok(leaf.verify(bundle[0]!.publicKey), 'signed by the new CA');
    assert.ok(!leaf.verify(bundle[1]!.publicKey));

    // a already serves the old CA's certificate, and the caBundle still cannot be updated.
    await a.checkNow();
    assert.equal(a.current, first, 'held until the caBundle holds the new CA');

    store.failPatch = undefined;
    await b.checkNow();
    assert.deepEqual(store.caBundles().slice(0, 1), [b64(store.data('ca.crt'))]);
    assert.equal(seenB.length, 2);
    assert.equal(seenB[1]!.certPem, cFirst.certPem);
    await a.checkNow();
    assert.equal(a.current.certPem, cFirst.certPem);

    // Once the old CA has expired, the next serving renewal drops it from the bundle.
    clock.now = T0 + 10 * YEAR + DAY;
    await a.checkNow();
    const pruned = parseCertificates(store.data('ca.crt'), 'ca.crt');
    assert.equal(pruned.length, 1);
    assert.ok(pruned[0]!.raw.equals(bundle[0]!.raw));
    assert.deepEqual(store.caBundles().slice(0, 1), [b64(store.data('ca.crt'))]);
    checkServing(a.current);
  });

  it('replaces a garbage Secret, keeping its type, other keys and metadata', async () => {
    const store = new MemoryStore();
    store.put({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'sluice-injector-tls', namespace: NS, annotations: { a: 'b' }, labels: { x: 'y' } },
      type: 'Opaque',
      data: { 'ca.crt': b64('junk'), other: b64('kept') },
    });
    const log = new MemoryLog();
    const cert = await make(store, { now: T0 }, log).start();
    checkServing(cert);
    const secret = store.secret as unknown as WebhookTlsSecret;
    assert.equal(secret.type, 'Opaque');
    assert.equal(store.data('other'), 'kept');
    assert.deepEqual(secret.metadata.annotations, { a: 'b' });
    assert.equal(secret.metadata.labels.x, 'y');
    const rotated = log.lines.find((line) => /rotated the webhook CA/.test(line.msg));
    assert.match(String(rotated?.fields.reason), /the CA is unusable: ca\.crt: no PEM data found/);
  });

  it('patches the caBundle once the MutatingWebhookConfiguration appears', async () => {
    const store = new MemoryStore();
    const certificate = make(store, { now: T0 });
    const cert = await certificate.start();
    store.configuration = webhookConfiguration(['c3RhbGU=']);
    await certificate.checkNow();
    assert.deepEqual(store.caBundles()[0], b64(cert.caBundlePem));
  });

  it('start rejects with one line when the API is unreachable; a later check only logs', async () => {
    const store = new MemoryStore();
    store.failReads = new Error('connect ECONNREFUSED 127.0.0.1:6443\n    at stack');
    const certificate = make(store, { now: T0 });
    await assert.rejects(certificate.start(), (err: Error) => {
      assert.equal(err.cause, undefined);
      assert.equal(
        err.message,
        'webhook serving certificate: reading Secret sluice-system/sluice-injector-tls: connect ECONNREFUSED 127.0.0.1:6443',
      );
      return true;
    });

    store.failReads = undefined;
    const log = new MemoryLog();
    const b = make(store, { now: T0 }, log);
    const cert = await b.start();
    store.failReads = new Error('request timed out');
    await b.checkNow();
    assert.equal(b.current, cert);
    assert.ok(log.has('warn', /check failed/));
  });

  it('checks on its timer and picks up the other replica rotation', async () => {
    const store = new MemoryStore();
    store.configuration = webhookConfiguration([undefined]);
    const clock = { now: T0 };
    const certificate = new WebhookCertificate({
      store,
      namespace: NS,
      log: new MemoryLog(),
      checkIntervalMs: 20,
      now: () => new Date(clock.now),
    });
    started.push(certificate);
    await certificate.start();
    const changed = new Promise<ServingCert>((resolve) => certificate.onChange(resolve));
    const other = await material();
    const rv = (store.secret?.metadata as { resourceVersion: string }).resourceVersion;
    await store.replaceSecret({
      ...secretOf(other),
      metadata: { ...secretOf(other).metadata, resourceVersion: rv },
    });
    const cert = await changed;
    assert.equal(cert.certPem, other.certPem);
    assert.deepEqual(store.caBundles()[0], b64(other.caCertPem));
    certificate.stop();
  });
});
