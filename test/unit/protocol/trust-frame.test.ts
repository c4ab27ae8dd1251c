import assert from 'node:assert/strict';
import { createCa, issueWorkloadCert, loadCa } from '../../../pki/ca.ts';
import { generateKeyPair } from '../../../pki/keys.ts';
import { parseFrame, trustFrameLine } from '../../../protocol/config-protocol.ts';
import { issuedBySigner } from '../../../sidecar/controller-identity.ts';

describe('trust frames (CA rotation through the config stream)', function () {
  it('round-trips bundle and signer, and refuses a frame without PEM', async function () {
    const ca = await createCa({ trustDomain: 'cluster.local' });
    const line = trustFrameLine(ca.certPem + ca.certPem, ca.certPem);
    assert.ok(line.toString().endsWith('}\n'));
    assert.deepEqual(parseFrame(line.subarray(0, -1)), {
      type: 'trust',
      bundle: ca.certPem + ca.certPem,
      signer: ca.certPem,
    });
    assert.match(parseFrame('{"type":"trust","bundle":"x","signer":"y"}') as string, /PEM bundle/);
    assert.match(parseFrame(JSON.stringify({ type: 'trust', bundle: ca.certPem })) as string, /PEM signer/);
  });

  it('issuedBySigner tells the CA that signed a workload certificate from another', async function () {
    const one = await loadCa(await createCa({ trustDomain: 'cluster.local' }));
    const two = await createCa({ trustDomain: 'cluster.local' });
    const keys = await generateKeyPair();
    const certPem = await issueWorkloadCert({
      ca: one,
      spiffeId: 'spiffe://cluster.local/ns/shop/sa/web',
      publicKey: keys.publicKey,
    });
    assert.equal(issuedBySigner(certPem, one.certPem), true);
    assert.equal(issuedBySigner(certPem, two.certPem), false);
    assert.equal(issuedBySigner('not a certificate', one.certPem), false);
  });
});
