import { PkiError } from './errors.ts';
import { readPrivateKeyPem } from './keys.ts';
import { issuedBy, parseCertificates } from './pem.ts';
import { spiffeIdFromCertificate } from './peer-identity.ts';
import { parseSpiffeId } from './spiffe-id.ts';

/** The PEM files of an identity directory (see docs/identity-dir.md). */
export interface IdentityPem {
  /** Leaf certificate, optionally followed by intermediates (leaf first). */
  readonly certPem: string;
  /** The leaf's private key (PKCS#8; SEC1 is accepted too). */
  readonly keyPem: string;
  /** Trust bundle: the CA certificates peers' chains must end at. */
  readonly bundlePem: string;
}

/** A checked identity: the PEM as given plus what was read from it. */
export interface Identity extends IdentityPem {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const MAX_CHAIN_DEPTH = 8;

/**
 * Checks that the three PEMs form a usable identity: the leaf is not a CA, has exactly one URI SAN that is
 * a SPIFFE ID, is within its validity, matches the private key, and chains (through the intermediates in
 * cert.pem) to a CA in the bundle. Throws PkiError naming the first problem.
 */
export function parseIdentity(pem: IdentityPem, now: Date = new Date()): Identity {
  const chain = parseCertificates(pem.certPem, 'cert.pem');
  const bundle = parseCertificates(pem.bundlePem, 'bundle.pem');
  const leaf = chain[0]!;
  if (leaf.ca)
    throw new PkiError('cert.pem: the first certificate is a CA, expected the workload certificate');
  for (const [i, cert] of bundle.entries()) {
    if (!cert.ca) throw new PkiError(`bundle.pem: certificate ${i + 1} is not a CA`);
  }
  let spiffeId: string;
  try {
    spiffeId = spiffeIdFromCertificate({ subjectaltname: leaf.subjectAltName ?? '' });
  } catch (err) {
    throw new PkiError(`cert.pem: ${(err as Error).message}`);
  }
  if (now > leaf.validToDate)
    throw new PkiError(`cert.pem: certificate expired at ${leaf.validToDate.toISOString()}`);
  const key = readPrivateKeyPem(pem.keyPem, 'key.pem');
  if (!key.publicKeySpki.equals(leaf.publicKey.export({ type: 'spki', format: 'der' }))) {
    throw new PkiError('key.pem does not match the certificate in cert.pem');
  }
  let current = leaf;
  const intermediates = chain.slice(1);
  for (let depth = 0; ; depth++) {
    if (bundle.some((root) => issuedBy(current, root))) break;
    const next = intermediates.find((c) => c !== current && issuedBy(current, c));
    if (!next || depth >= MAX_CHAIN_DEPTH) {
      throw new PkiError('cert.pem does not chain to a CA in bundle.pem');
    }
    current = next;
  }
  return {
    certPem: pem.certPem,
    keyPem: pem.keyPem,
    bundlePem: pem.bundlePem,
    spiffeId,
    trustDomain: parseSpiffeId(spiffeId).trustDomain,
    notBefore: leaf.validFromDate,
    notAfter: leaf.validToDate,
  };
}
