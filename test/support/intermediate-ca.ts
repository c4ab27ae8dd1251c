import { type CaPem, type CertificateAuthority } from '../../pki/ca.ts';
import { generateKeyPair, privateKeyToPem, SIGNING_ALGORITHM } from '../../pki/keys.ts';
import { x509 } from '../../pki/x509-lib.ts';

const HOUR = 3600_000;

/** A CA certificate signed by `parent`, valid for two days (createCa only makes roots; tests need chains). */
export async function intermediateCa(parent: CertificateAuthority): Promise<CaPem> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    subject: 'O=sluice, CN=intermediate',
    issuer: parent.issuerName,
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + 48 * HOUR),
    publicKey: keys.publicKey,
    signingKey: parent.signingKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.AuthorityKeyIdentifierExtension(parent.authorityKeyId),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${parent.trustDomain}` }]),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await privateKeyToPem(keys.privateKey) };
}
