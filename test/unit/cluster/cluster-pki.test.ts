import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterCertSpecs, ensureClusterPki } from '../../../cluster/cluster-pki.ts';
import { kubeconfigFor } from '../../../cluster/kubeconfig.ts';
import { parse } from 'yaml';

describe('cluster PKI', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cluster-pki-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('issues every certificate from one CA, with the names Kubernetes components expect', async () => {
    const issued = await ensureClusterPki(dir, '192.0.2.7');
    assert.deepEqual(issued.sort(), [...clusterCertSpecs('192.0.2.7').map((s) => s.file), 'sa'].sort());
    const ca = new X509Certificate(readFileSync(join(dir, 'ca.crt')));
    const apiserver = new X509Certificate(readFileSync(join(dir, 'apiserver.crt')));
    assert.ok(apiserver.verify(ca.publicKey));
    assert.ok(apiserver.checkIP('10.96.0.1'));
    assert.ok(apiserver.checkIP('192.0.2.7'));
    assert.equal(
      apiserver.checkHost('kubernetes.default.svc.cluster.local'),
      'kubernetes.default.svc.cluster.local',
    );
    const kubelet = new X509Certificate(readFileSync(join(dir, 'kubelet-client.crt')));
    assert.match(kubelet.subject, /CN=system:node:sluice-node/);
    assert.match(kubelet.subject, /O=system:nodes/);
    assert.equal(statSync(join(dir, 'ca.key')).mode & 0o777, 0o600);
  });

  it('keeps what is current and re-issues only certificates whose names changed', async () => {
    assert.deepEqual(await ensureClusterPki(dir, '192.0.2.7'), []);
    assert.deepEqual((await ensureClusterPki(dir, '192.0.2.8')).sort(), ['apiserver', 'kubelet']);
  });

  it('writes kubeconfigs with the certificates embedded', () => {
    const config = parse(kubeconfigFor(dir, 'admin', 'https://127.0.0.1:6443')) as {
      users: { user: Record<string, string> }[];
      clusters: { cluster: { server: string } }[];
    };
    assert.equal(config.clusters[0]?.cluster.server, 'https://127.0.0.1:6443');
    const cert = Buffer.from(config.users[0]?.user['client-certificate-data'] ?? '', 'base64').toString();
    assert.equal(cert, readFileSync(join(dir, 'admin.crt'), 'utf8'));
  });
});
