import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, issueWorkloadCert, loadCa, type CertificateAuthority } from '../../pki/ca.ts';
import { PkiError } from '../../pki/errors.ts';
import type { Identity, IdentityPem } from '../../pki/identity.ts';
import { loadIdentityDir, watchIdentityDir, writeIdentityDir } from '../../pki/identity-dir.ts';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.ts';
import { waitFor } from '../support/wait-for.ts';

const ID = 'spiffe://cluster.local/ns/default/sa/web';

async function freshPem(ca: CertificateAuthority): Promise<IdentityPem> {
  const keys = await generateKeyPair();
  return {
    certPem: await issueWorkloadCert({ ca, spiffeId: ID, publicKey: keys.publicKey }),
    keyPem: await privateKeyToPem(keys.privateKey),
    bundlePem: ca.certPem,
  };
}

describe('pki: identity directory', () => {
  let ca: CertificateAuthority;
  let dir: string;
  before(async () => {
    ca = await loadCa(await createCa({ trustDomain: 'cluster.local' }));
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-identity-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes and loads cert.pem, key.pem (0600) and bundle.pem', async () => {
    const pem = await freshPem(ca);
    const target = join(dir, 'nested', 'identity');
    await writeIdentityDir(target, pem);
    assert.equal((await stat(join(target, 'key.pem'))).mode & 0o777, 0o600);
    assert.equal(await readFile(join(target, 'cert.pem'), 'utf8'), pem.certPem);
    const identity = await loadIdentityDir(target);
    assert.equal(identity.spiffeId, ID);
    assert.equal(identity.trustDomain, 'cluster.local');
    assert.equal(identity.bundlePem, ca.certPem);
  });

  it('reports missing and broken files as PkiError naming the file', async () => {
    await assert.rejects(loadIdentityDir(dir), (err: Error) => {
      assert.ok(err instanceof PkiError);
      assert.match(err.message, /cannot read .*cert\.pem: no such file/);
      return true;
    });
    const pem = await freshPem(ca);
    await writeIdentityDir(dir, { ...pem, keyPem: 'not a key' });
    await assert.rejects(loadIdentityDir(dir), /key\.pem: no PEM data/);
  });

  it('watches for rotation, keeping the old identity while the new one is inconsistent', async () => {
    await writeIdentityDir(dir, await freshPem(ca));
    const changes: Identity[] = [];
    const errors: Error[] = [];
    const watcher = watchIdentityDir(dir, {
      initial: await loadIdentityDir(dir),
      debounceMs: 30,
      onChange: (identity) => changes.push(identity),
      onError: (err) => errors.push(err),
    });
    try {
      const first = watcher.current;
      const next = await freshPem(ca);
      // A new key without its certificate: rejected, the old identity stays.
      await writeFile(join(dir, 'key.pem'), next.keyPem);
      await waitFor('the error', () => errors.length > 0);
      assert.match(errors[0]!.message, /key\.pem does not match/);
      assert.equal(watcher.current, first);
      assert.equal(changes.length, 0);
      await writeFile(join(dir, 'cert.pem'), next.certPem);
      await waitFor('the change', () => changes.length > 0);
      assert.equal(changes[0]!.certPem, next.certPem);
      assert.equal(watcher.current, changes[0]);
      // Touching a file without changing it is not a change.
      await writeFile(join(dir, 'bundle.pem'), ca.certPem);
      await watcher.reload();
      assert.equal(changes.length, 1);
    } finally {
      watcher.close();
    }
  });

  it("sees Kubernetes' atomic ..data symlink swap", async () => {
    // The kubelet's layout for secret volumes: files are links into ..data, itself a link to a dated dir.
    const writeVersion = async (name: string, pem: IdentityPem): Promise<void> => {
      await mkdir(join(dir, name));
      await writeFile(join(dir, name, 'cert.pem'), pem.certPem);
      await writeFile(join(dir, name, 'key.pem'), pem.keyPem);
      await writeFile(join(dir, name, 'bundle.pem'), pem.bundlePem);
      await symlink(name, join(dir, '..data_tmp'));
      await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    };
    await writeVersion('..v1', await freshPem(ca));
    for (const file of ['cert.pem', 'key.pem', 'bundle.pem'])
      await symlink(join('..data', file), join(dir, file));
    const changes: Identity[] = [];
    const watcher = watchIdentityDir(dir, {
      initial: await loadIdentityDir(dir),
      debounceMs: 30,
      onChange: (identity) => changes.push(identity),
      onError: (err) => assert.fail(err),
    });
    try {
      const next = await freshPem(ca);
      await writeVersion('..v2', next);
      await waitFor('the change', () => changes.length > 0);
      assert.equal(changes[0]!.certPem, next.certPem);
    } finally {
      watcher.close();
    }
  });

  it('polls when no event arrives and stops after close()', async () => {
    await writeIdentityDir(dir, await freshPem(ca));
    const other = await mkdtemp(join(tmpdir(), 'sluice-identity-other-'));
    const changes: Identity[] = [];
    /** A watcher that polls every 50 ms besides fs.watch, recording what it reports in `seen`. */
    const pollingWatcher = async (seen: Identity[]) =>
      watchIdentityDir(dir, {
        initial: await loadIdentityDir(dir),
        debounceMs: 10,
        pollMs: 50,
        onChange: (identity) => seen.push(identity),
        onError: () => undefined,
      });
    // Watch a directory that is replaced as a whole: the fs.watch handle then watches the old inode.
    const watcher = await pollingWatcher(changes);
    try {
      await writeIdentityDir(other, await freshPem(ca));
      await rm(dir, { recursive: true });
      await rename(other, dir);
      await waitFor('the change', () => changes.length > 0);
      // The watch moves to the new directory.
      await writeIdentityDir(dir, await freshPem(ca));
      await waitFor('the second change', () => changes.length > 1);
      watcher.close();
      const count = changes.length;
      // A second watcher, started like the first, sees the next change: by then the closed one would have.
      const witnessed: Identity[] = [];
      const witness = await pollingWatcher(witnessed);
      try {
        await writeIdentityDir(dir, await freshPem(ca));
        await waitFor('the witness to see the change', () => witnessed.length > 0);
        // Another poll period for good measure: the closed watcher's timers are gone, so it stays silent.
        const polls = witnessed.length;
        await writeIdentityDir(dir, await freshPem(ca));
        await waitFor('the witness to see the next change', () => witnessed.length > polls);
      } finally {
        witness.close();
      }
      assert.equal(changes.length, count);
    } finally {
      watcher.close();
      await rm(other, { recursive: true, force: true });
    }
  });
});
