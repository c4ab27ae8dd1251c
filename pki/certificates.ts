// The one place that builds X.509 certificates (@peculiar/x509 on WebCrypto, P-256, ECDSA-SHA256): the mesh
// CA and its workload certificates (ca.ts), the injector's webhook CA and serving certificate, and the
// local cluster's CA and component certificates (cluster/cluster-pki.ts). Callers decide names, lifetimes
// and usages; this module holds the encoding and the extensions common to all of them.
import type { webcrypto } from 'node:crypto';
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { SIGNING_ALGORITHM } from './keys.ts';
import { x509 } from './x509-lib.ts';

export type SubjectAltName = { readonly type: 'dns' | 'ip' | 'url'; readonly value: string };
export type ExtendedKeyUsage = 'serverAuth' | 'clientAuth';

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the public key bits, here the uncompressed P-256 point. */
export function keyIdentifier(spkiDer: Uint8Array): string {
  const jwk = createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' }).export({
    format: 'jwk',
  });
  const point = Buffer.concat([
    Buffer.from([4]),
    Buffer.from(jwk.x ?? '', 'base64url'),
    Buffer.from(jwk.y ?? '', 'base64url'),
  ]);
  return createHash('sha1').update(point).digest('hex');
}

/** A random positive 128-bit serial number (hex), as RFC 5280 and the CA/B baseline ask. */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

async function spkiOf(key: webcrypto.CryptoKey | Uint8Array): Promise<Uint8Array> {
  return key instanceof Uint8Array
    ? key
    : new Uint8Array(await globalThis.crypto.subtle.exportKey('spki', key));
}

function pem(cert: x509.X509Certificate): string {
  return cert.toString('pem') + '\n';
}

export interface CaCertificateSpec {
  /** Distinguished name, e.g. 'O=sluice' or 'CN=sluice-injector-ca'. */
  readonly name: string;
  readonly keys: webcrypto.CryptoKeyPair;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** basicConstraints pathLenConstraint (none by default). */
  readonly pathLength?: number;
  readonly subjectAltNames?: readonly SubjectAltName[];
}

/** A self-signed CA certificate (PEM): CA:TRUE, keyCertSign + cRLSign, subject key identifier. */
export async function selfSignedCaCertificate(spec: CaCertificateSpec): Promise<string> {
  const spki = await spkiOf(spec.keys.publicKey);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: spec.name,
    notBefore: spec.notBefore,
    notAfter: spec.notAfter,
    keys: spec.keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, spec.pathLength, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectKeyIdentifierExtension(keyIdentifier(spki)),
      ...(spec.subjectAltNames?.length
        ? [new x509.SubjectAlternativeNameExtension([...spec.subjectAltNames])]
        : []),
    ],
  });
  return pem(cert);
}

/** The issuer side of a leaf: its name and key identifier (from its certificate) and its signing key. */
export interface Issuer {
  readonly name: string | x509.Name;
  readonly keyId: string;
  readonly signingKey: webcrypto.CryptoKey;
}

/** An issuer from a CA certificate (PEM or parsed) and its private key. */
export function issuerOf(caCert: string | x509.X509Certificate, signingKey: webcrypto.CryptoKey): Issuer {
  const cert = typeof caCert === 'string' ? new x509.X509Certificate(caCert) : caCert;
  const keyId =
    cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ??
    keyIdentifier(new Uint8Array(cert.publicKey.rawData));
  return { name: cert.subjectName, keyId, signingKey };
}

export interface LeafCertificateSpec {
  /** Distinguished name ('' for an empty subject). */
  readonly subject: string;
  readonly issuer: Issuer;
  /** The subject's public key, as a CryptoKey or DER SubjectPublicKeyInfo. */
  readonly publicKey: webcrypto.CryptoKey | Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly extendedKeyUsages: readonly ExtendedKeyUsage[];
  /** keyUsage keyEncipherment besides digitalSignature (what Kubernetes' own certificates carry). */
  readonly keyEncipherment?: boolean;
  readonly subjectAltNames: readonly SubjectAltName[];
  readonly criticalSubjectAltNames?: boolean;
}

/** An end-entity certificate (PEM): CA:FALSE, digitalSignature, the given EKUs, key identifiers, SANs. */
export async function issueCertificate(spec: LeafCertificateSpec): Promise<string> {
  const spki = await spkiOf(spec.publicKey);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: spec.subject,
    issuer: spec.issuer.name,
    notBefore: spec.notBefore,
    notAfter: spec.notAfter,
    publicKey: spki,
    signingKey: spec.issuer.signingKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      spec.keyEncipherment
        ? new x509.KeyUsagesExtension(
            x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
            true,
          )
        : new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(spec.extendedKeyUsages.map((usage) => x509.ExtendedKeyUsage[usage])),
      new x509.SubjectKeyIdentifierExtension(keyIdentifier(spki)),
      new x509.AuthorityKeyIdentifierExtension(spec.issuer.keyId),
      ...(spec.subjectAltNames.length > 0
        ? [new x509.SubjectAlternativeNameExtension([...spec.subjectAltNames], spec.criticalSubjectAltNames)]
        : []),
    ],
  });
  return pem(cert);
}
