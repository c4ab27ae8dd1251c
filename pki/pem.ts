import { X509Certificate } from 'node:crypto';
import { PkiError } from './errors.ts';

export interface PemBlock {
  readonly label: string;
  /** The block re-encoded canonically (64-column base64, trailing newline). */
  readonly pem: string;
  readonly der: Buffer;
}

const MAX_PEM_TEXT = 1024 * 1024;
const MAX_BLOCKS = 100;
const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\s]*?)-----END ([A-Z0-9 ]+)-----/g;

export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Every PEM block in `text` (text between blocks is ignored, as OpenSSL does). */
export function parsePemBlocks(text: string, what: string): PemBlock[] {
  if (text.length > MAX_PEM_TEXT) throw new PkiError(`${what}: larger than ${MAX_PEM_TEXT} bytes`);
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(BLOCK)) {
    const [, label = '', body = '', endLabel] = match;
    if (label !== endLabel) throw new PkiError(`${what}: PEM block BEGIN ${label} ends with END ${endLabel}`);
    const der = Buffer.from(body.replace(/\s+/g, ''), 'base64');
    if (der.length === 0) throw new PkiError(`${what}: empty PEM block ${label}`);
    blocks.push({ label, der, pem: toPem(label, der) });
    if (blocks.length > MAX_BLOCKS) throw new PkiError(`${what}: more than ${MAX_BLOCKS} PEM blocks`);
  }
  if (blocks.length === 0) throw new PkiError(`${what}: no PEM data found`);
  return blocks;
}

/** Parses one or more CERTIFICATE blocks; any other block, or an unparsable certificate, is an error. */
export function parseCertificates(text: string, what: string): X509Certificate[] {
  return parsePemBlocks(text, what).map((block, i) => {
    if (block.label !== 'CERTIFICATE') {
      throw new PkiError(`${what}: block ${i + 1} is ${block.label}, expected CERTIFICATE`);
    }
    try {
      return new X509Certificate(block.der);
    } catch (err) {
      throw new PkiError(`${what}: certificate ${i + 1} cannot be parsed (${(err as Error).message})`);
    }
  });
}

/** Whether `issuer` is a CA certificate that issued `cert` and whose key signed it. */
export function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return issuer.ca && cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}
