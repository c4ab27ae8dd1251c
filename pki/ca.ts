import type { webcrypto } from 'node:crypto';
import { X509Certificate } from 'node:crypto';
import { issueCertificate, keyIdentifier, selfSignedCaCertificate } from './certificates.ts';
import { PkiError } from './errors.ts';
import { generateKeyPair, importPrivateKeyPem, privateKeyToPem, requireP256PublicKey } from './keys.ts';
import { parseCertificates } from './pem.ts';
import { parseSubjectAltName } from './peer-identity.ts';
import {
  parseSpiffeId,
  parseWorkloadSpiffeId,
  trustDomainSpiffeId,
  validateTrustDomain,
} from './spiffe-id.ts';
import { x509 } from './x509-lib.ts';
import { verifyCsr } from './csr.ts';

export interface CaPem {
  readonly certPem: string;
  readonly keyPem: string;
}

/** A CA ready to sign: its certificate and a (non-extractable) signing key. */
export interface CertificateAuthority {
  readonly certPem: string;
  readonly cert: X509Certificate;
  /** The CA's subject, as the issuer of what it signs (copied byte for byte). */
  readonly issuerName: x509.Name;
  /** Hex key identifier for the authorityKeyIdentifier of what it signs (the CA's own SKI). */
  readonly authorityKeyId: string;
  readonly signingKey: webcrypto.CryptoKey;
  readonly trustDomain: string;
}

// Certificates are valid from a little before "now" so that peers whose clocks lag still accept them.
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const HOUR_MS = 3600 * 1000;
export const DEFAULT_CA_DAYS = 365;
export const DEFAULT_WORKLOAD_HOURS = 24;
const MAX_CA_DAYS = 100 * 365;
const MAX_WORKLOAD_HOURS = 366 * 24;
const DNS_NAME = /^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function checkRange(value: number, max: number, what: string): number {
  if (!Number.isFinite(value) || value <= 0 || value > max) {
    throw new PkiError(`${what} must be a number greater than 0 and at most ${max}, got ${value}`);
  }
  return value;
}

/** Creates a self-signed P-256 root CA for a trust domain: CA:true, keyCertSign + cRLSign, URI SAN spiffe://td. */
export async function createCa(params: {
  trustDomain: string;
  validityDays?: number;
  now?: Date;
}): Promise<CaPem> {
  const trustDomain = validateTrustDomain(params.trustDomain);
  const days = checkRange(params.validityDays ?? DEFAULT_CA_DAYS, MAX_CA_DAYS, 'CA validity (days)');
  const now = params.now?.getTime() ?? Date.now();
  const keys = await generateKeyPair();
  const certPem = await selfSignedCaCertificate({
    name: 'O=sluice',
    keys,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + days * 24 * HOUR_MS),
    subjectAltNames: [{ type: 'url', value: trustDomainSpiffeId(trustDomain) }],
  });
  return { certPem, keyPem: await privateKeyToPem(keys.privateKey) };
}

/** The trust domain named by a certificate's URI SAN spiffe://td (no path), if it has one. */
function caTrustDomain(cert: X509Certificate): string | undefined {
  for (const [type, value] of parseSubjectAltName(cert.subjectAltName ?? '') ?? []) {
    if (type !== 'URI') continue;
    try {
      const id = parseSpiffeId(value);
      if (id.path === '') return id.trustDomain;
    } catch {
      // not a trust-domain ID: ignore
    }
  }
  return undefined;
}

/**
 * Loads a CA from PEM. Checks that the certificate is a CA allowed to sign certificates and that the key
 * is its key. The trust domain comes from the CA's spiffe://td URI SAN, or from `trustDomain` for a CA
 * without one (both given must agree).
 */
export async function loadCa(params: CaPem & { trustDomain?: string }): Promise<CertificateAuthority> {
  const certs = parseCertificates(params.certPem, 'CA certificate');
  if (certs.length !== 1) throw new PkiError('CA certificate: expected exactly one certificate');
  const cert = certs[0]!;
  if (!cert.ca) throw new PkiError('CA certificate: basicConstraints does not say CA:TRUE');
  const parsed = new x509.X509Certificate(cert.raw);
  const keyUsage = parsed.getExtension(x509.KeyUsagesExtension);
  if (keyUsage && (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new PkiError('CA certificate: keyUsage does not allow keyCertSign');
  }
  const key = await importPrivateKeyPem(params.keyPem, 'CA key');
  if (!key.publicKeySpki.equals(cert.publicKey.export({ type: 'spki', format: 'der' }))) {
    throw new PkiError('CA key does not match the CA certificate');
  }
  const fromCert = caTrustDomain(cert);
  const given = params.trustDomain === undefined ? undefined : validateTrustDomain(params.trustDomain);
  if (fromCert && given && fromCert !== given) {
    throw new PkiError(`CA certificate is for trust domain '${fromCert}', not '${given}'`);
  }
  const trustDomain = fromCert ?? given;
  if (!trustDomain) throw new PkiError('CA certificate has no spiffe:// URI SAN; give the trust domain');
  const ski = parsed.getExtension(x509.SubjectKeyIdentifierExtension);
  const authorityKeyId = ski?.keyId ?? keyIdentifier(key.publicKeySpki);
  return {
    certPem: cert.toString(),
    cert,
    issuerName: parsed.subjectName,
    authorityKeyId,
    signingKey: key.privateKey,
    trustDomain,
  };
}

export interface IssueWorkloadCertParams {
  readonly ca: CertificateAuthority;
  /** spiffe://<td>/ns/<namespace>/sa/<serviceAccount>, in the CA's trust domain. */
  readonly spiffeId: string;
  /** The workload's public key: a CryptoKey or SPKI PEM. Give this or `csrPem`. */
  readonly publicKey?: webcrypto.CryptoKey | string;
  /** A PKCS#10 CSR; its signature is verified and only its key is used. Give this or `publicKey`. */
  readonly csrPem?: string;
  readonly validityHours?: number;
  readonly dnsNames?: readonly string[];
  readonly now?: Date;
}

async function subjectPublicKey(params: IssueWorkloadCertParams): Promise<Uint8Array> {
  if ((params.publicKey === undefined) === (params.csrPem === undefined)) {
    throw new PkiError('give exactly one of publicKey and csrPem');
  }
  if (params.csrPem !== undefined) return (await verifyCsr(params.csrPem)).publicKeySpki;
  const key = params.publicKey!;
  if (typeof key === 'string') {
    let spki: ArrayBuffer;
    try {
      spki = new x509.PublicKey(key).rawData;
    } catch {
      throw new PkiError('public key: not a valid SPKI PEM');
    }
    return requireP256PublicKey(new Uint8Array(spki), 'public key');
  }
  if (key.type !== 'public') throw new PkiError('public key: a private key was given');
  const spki = new Uint8Array(await globalThis.crypto.subtle.exportKey('spki', key));
  return requireP256PublicKey(spki, 'public key');
}

/**
 * Issues a short-lived workload (X.509-SVID) certificate: empty subject, one critical URI SAN (the
 * SPIFFE ID) plus optional DNS names, CA:FALSE, keyUsage digitalSignature, EKU serverAuth + clientAuth.
 * The lifetime is cut to the CA's own expiry. Returns the leaf as PEM.
 */
export async function issueWorkloadCert(params: IssueWorkloadCertParams): Promise<string> {
  const { ca } = params;
  const workload = parseWorkloadSpiffeId(params.spiffeId);
  if (workload.trustDomain !== ca.trustDomain) {
    throw new PkiError(`SPIFFE ID ${params.spiffeId} is not in the CA's trust domain '${ca.trustDomain}'`);
  }
  const hours = checkRange(
    params.validityHours ?? DEFAULT_WORKLOAD_HOURS,
    MAX_WORKLOAD_HOURS,
    'certificate validity (hours)',
  );
  const dnsNames = params.dnsNames ?? [];
  for (const name of dnsNames) {
    if (name.length > 253 || !DNS_NAME.test(name))
      throw new PkiError(`invalid DNS name ${JSON.stringify(name)}`);
  }
  const now = params.now?.getTime() ?? Date.now();
  const caNotAfter = ca.cert.validToDate.getTime();
  if (caNotAfter <= now) throw new PkiError('the CA certificate has expired');
  const notAfter = Math.min(now + hours * HOUR_MS, caNotAfter);
  const spki = await subjectPublicKey(params);
  return issueCertificate({
    // An empty subject (RFC 5280 4.1.2.6) keeps the leaf from looking self-issued; the SAN carries the name.
    subject: '',
    issuer: { name: ca.issuerName, keyId: ca.authorityKeyId, signingKey: ca.signingKey },
    publicKey: spki,
    notBefore: new Date(Math.max(now - CLOCK_SKEW_MS, ca.cert.validFromDate.getTime())),
    notAfter: new Date(notAfter),
    extendedKeyUsages: ['serverAuth', 'clientAuth'],
    subjectAltNames: [
      { type: 'url', value: params.spiffeId },
      ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ],
    criticalSubjectAltNames: true,
  });
}
