// Verifying certificate signing requests (the CA's side). Kept apart from keys.ts and create-csr.ts so that
// processes that only load identities and request certificates (the sidecar) do not load @peculiar/x509.
import { PkiError } from './errors.ts';
import { parsePemBlocks } from './pem.ts';
import { x509 } from './x509-lib.ts';
import { requireP256PublicKey } from './keys.ts';

const MAX_CSR_BYTES = 16 * 1024;
const SUBJECT_ALT_NAME_OID = '2.5.29.17';

export interface VerifiedCsr {
  /** DER SubjectPublicKeyInfo of the requester's (P-256) key. */
  readonly publicKeySpki: Uint8Array;
  /** URI SANs the requester asked for (informational). */
  readonly requestedUris: string[];
}

/** Parses a PEM CSR, checks its self-signature (proof of possession) and that its key is P-256. */
export async function verifyCsr(pem: string): Promise<VerifiedCsr> {
  if (pem.length > MAX_CSR_BYTES) throw new PkiError(`CSR is larger than ${MAX_CSR_BYTES} bytes`);
  const blocks = parsePemBlocks(pem, 'CSR');
  if (blocks.length !== 1 || blocks[0]!.label !== 'CERTIFICATE REQUEST') {
    throw new PkiError('CSR: expected exactly one CERTIFICATE REQUEST PEM block');
  }
  let csr: x509.Pkcs10CertificateRequest;
  let valid: boolean;
  let spki: Uint8Array;
  try {
    csr = new x509.Pkcs10CertificateRequest(blocks[0]!.der);
    spki = new Uint8Array(csr.publicKey.rawData);
    valid = await csr.verify();
  } catch (err) {
    throw new PkiError(`CSR cannot be parsed (${(err as Error).message})`);
  }
  if (!valid) throw new PkiError('CSR signature does not verify');
  requireP256PublicKey(spki, 'CSR');
  let requestedUris: string[] = [];
  try {
    const ext = csr.getExtension(SUBJECT_ALT_NAME_OID);
    if (ext) {
      const san = new x509.SubjectAlternativeNameExtension(ext.rawData);
      requestedUris = san.names.items.filter((n) => n.type === 'url').map((n) => n.value);
    }
  } catch {
    throw new PkiError('CSR: subjectAltName extension cannot be parsed');
  }
  return { publicKeySpki: spki, requestedUris };
}
