import assert from 'node:assert/strict';
import { createCa, issueWorkloadCert, type CaPem } from '../../../pki/ca.ts';
import { parseIdentity } from '../../../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../../../pki/keys.ts';
import {
  buildCaSecret,
  CA_SECRET_NAME,
  loadOrCreateCaSecret,
  type CaSecret,
  type CaSecretStore,
} from '../../../controller/ca-root-secret.ts';
import { ReloadableCa } from '../../../controller/ca-reload.ts';
import type { IssuingCa } from '../../../controller/workload-ca.ts';
import { watchMeshCa } from '../../../controller/mesh-identity.ts';
import { jsonLogger } from '../../../lib/json-log.ts';

// The three Secret edits of a CA rotation (docs/operations.md), applied to a running controller's CA:
// what it signs with and the bundle it hands out follow the Secret, and every certificate issued on the
// way is trusted by a sidecar holding the bundle of the step after it.

const TD = 'cluster.local';
const NS = 'sluice-system';
const b64 = (text: string) => Buffer.from(text).toString('base64');

/** The Secret store as the API would hold it: one object per name, replaced by edits. */
class SecretStore implements CaSecretStore {
  secret: CaSecret | undefined;
  get(): Promise<unknown> {
    return Promise.resolve(this.secret && structuredClone(this.secret));
  }
  create(secret: CaSecret): Promise<boolean> {
    if (this.secret) return Promise.resolve(false);
    this.secret = structuredClone(secret);
    return Promise.resolve(true);
  }
  edit(data: { cert: CaPem; bundle: CaPem[] }): void {
    this.secret = {
      ...this.secret!,
      data: {
        'tls.crt': b64(data.cert.certPem),
        'tls.key': b64(data.cert.keyPem),
        'ca.crt': b64(data.bundle.map((c) => c.certPem).join('')),
      },
    };
  }
}

/** A leaf from the CA as it is now, in PEM with its chain. */
async function issue(ca: IssuingCa): Promise<{ certPem: string; keyPem: string }> {
  const keys = await generateKeyPair();
  const leaf = await issueWorkloadCert({
    ca: ca.ca,
    spiffeId: `spiffe://${TD}/ns/shop/sa/web`,
    publicKey: keys.publicKey,
  });
  return { certPem: leaf + ca.chainPem, keyPem: await privateKeyToPem(keys.privateKey) };
}

/** Whether a sidecar holding `bundlePem` accepts the certificate (it chains to a root in the bundle). */
function trusted(cert: { certPem: string; keyPem: string }, bundlePem: string): boolean {
  try {
    parseIdentity({ ...cert, bundlePem });
    return true;
  } catch {
    return false;
  }
}

describe('controller: CA rotation by Secret edits, without restarts (ReloadableCa)', () => {
  it('introduce the new root, sign with it, drop the old one; a broken edit keeps the CA in use', async () => {
    const store = new SecretStore();
    const oldCa = await createCa({ trustDomain: TD });
    const newCa = await createCa({ trustDomain: TD });
    store.secret = buildCaSecret({ namespace: NS, ...oldCa });
    const loaded = await loadOrCreateCaSecret(store, { namespace: NS, trustDomain: TD });
    const ca = new ReloadableCa(loaded, store, { namespace: NS, trustDomain: TD });
    assert.deepEqual(await ca.reload(), { outcome: 'unchanged' });
    const fromOld = await issue(ca);

    // 1. The new root joins the bundle; the old CA still signs.
    store.edit({ cert: oldCa, bundle: [oldCa, newCa] });
    assert.deepEqual(await ca.reload(), { outcome: 'reloaded', signerChanged: false, bundleChanged: true });
    const bundleBoth = ca.trustBundlePem;
    assert.ok(trusted(fromOld, bundleBoth));
    assert.ok(trusted(await issue(ca), oldCa.certPem), 'still signed by the old root');

    // 2. The new CA signs; both roots stay trusted, so old and new certificates are accepted everywhere.
    store.edit({ cert: newCa, bundle: [oldCa, newCa] });
    assert.deepEqual(await ca.reload(), { outcome: 'reloaded', signerChanged: true, bundleChanged: false });
    const fromNew = await issue(ca);
    assert.ok(trusted(fromNew, bundleBoth) && trusted(fromOld, ca.trustBundlePem));
    assert.ok(!trusted(fromNew, oldCa.certPem), 'signed by the new root');

    // A broken edit (a key that is not the CA's) is reported; the CA in use stays.
    store.edit({ cert: { certPem: newCa.certPem, keyPem: oldCa.keyPem }, bundle: [oldCa, newCa] });
    const kept = await ca.reload();
    assert.equal(kept.outcome, 'kept');
    assert.ok(trusted(await issue(ca), newCa.certPem));

    // 3. The old root leaves the bundle (once nothing it signed is valid): new certificates keep working.
    store.edit({ cert: newCa, bundle: [newCa] });
    assert.deepEqual(await ca.reload(), { outcome: 'reloaded', signerChanged: false, bundleChanged: true });
    assert.ok(trusted(await issue(ca), ca.trustBundlePem));
    assert.ok(!trusted(fromOld, ca.trustBundlePem));
    assert.equal(ca.snapshot().trustBundlePem, ca.trustBundlePem);
  });

  it('a deleted Secret keeps the CA in use', async () => {
    const store = new SecretStore();
    const loaded = await loadOrCreateCaSecret(store, { namespace: NS, trustDomain: TD });
    assert.equal(loaded.created, true);
    const ca = new ReloadableCa(loaded, store, { namespace: NS, name: CA_SECRET_NAME, trustDomain: TD });
    store.secret = undefined;
    assert.deepEqual(await ca.reload(), { outcome: 'kept', error: `Secret ${NS}/${CA_SECRET_NAME} is gone` });
    assert.ok(trusted(await issue(ca), ca.trustBundlePem));
  });

  it('watchMeshCa: an edit seen by the informer applies at once; one asked for during a reload follows it', async () => {
    const store = new SecretStore();
    const [oldCa, newCa] = [await createCa({ trustDomain: TD }), await createCa({ trustDomain: TD })];
    store.secret = buildCaSecret({ namespace: NS, ...oldCa });
    const ca = new ReloadableCa(
      await loadOrCreateCaSecret(store, { namespace: NS, trustDomain: TD }),
      store,
      {
        namespace: NS,
        trustDomain: TD,
      },
    );
    const stop = new AbortController();
    let changed: () => void = () => undefined;
    /** Resolves once `holds` is true, checked after every reload that changed the CA. */
    const until = (holds: () => boolean) =>
      new Promise<void>((resolve) => {
        const check = (): void => (holds() ? resolve() : void (changed = check));
        check();
      });
    const watch = watchMeshCa(ca, {
      log: jsonLogger('test', () => undefined),
      signal: stop.signal,
      intervalMs: 3_600_000, // the poll never fires here: only reloadNow does
      changed: () => changed(),
    });
    const trusts = (c: CaPem) => ca.trustBundlePem.includes(c.certPem.trim());
    try {
      store.edit({ cert: oldCa, bundle: [oldCa, newCa] });
      watch.reloadNow();
      await until(() => trusts(newCa));

      // The second ask comes while the first reload runs (it is synchronous after it): it must not be lost.
      store.edit({ cert: newCa, bundle: [oldCa, newCa] });
      watch.reloadNow();
      store.edit({ cert: newCa, bundle: [newCa] });
      watch.reloadNow();
      await until(() => !trusts(oldCa));
    } finally {
      stop.abort();
    }
  });
});
