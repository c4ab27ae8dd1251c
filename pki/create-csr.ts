// Creating a PKCS#10 CSR (RFC 2986) takes a few DER structures and one WebCrypto signature, so it is written
// here rather than with @peculiar/x509: the sidecar creates CSRs and must not load that library (ADR 0001).
// Parsing and verifying CSRs (the CA's side) stays in csr.ts.
import type { webcrypto } from 'node:crypto';
import { SIGNING_ALGORITHM } from './keys.ts';
import { toPem } from './pem.ts';

const OID_ORGANIZATION = '2.5.4.10';
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

function der(tag: number, ...content: Uint8Array[]): Uint8Array {
  const length = content.reduce((sum, part) => sum + part.length, 0);
  const lengthBytes: number[] = [];
  if (length < 0x80) lengthBytes.push(length);
  else {
    for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) lengthBytes.unshift(rest % 256);
    lengthBytes.unshift(0x80 | lengthBytes.length);
  }
  return Buffer.concat([Uint8Array.of(tag, ...lengthBytes), ...content]);
}

const sequence = (...content: Uint8Array[]): Uint8Array => der(0x30, ...content);
const set = (...content: Uint8Array[]): Uint8Array => der(0x31, ...content);

function oid(dotted: string): Uint8Array {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number);
  const bytes = [40 * first + second];
  for (const arc of rest) {
    const base128 = [arc & 0x7f];
    for (let value = Math.floor(arc / 128); value > 0; value = Math.floor(value / 128)) {
      base128.unshift(0x80 | (value & 0x7f));
    }
    bytes.push(...base128);
  }
  return der(0x06, Uint8Array.from(bytes));
}

/** A DER INTEGER from big-endian unsigned bytes. */
function unsignedInteger(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  return der(0x02, (trimmed[0] ?? 0) & 0x80 ? Uint8Array.of(0, ...trimmed) : trimmed);
}

/**
 * A PKCS#10 CSR signed with `keys` (ECDSA P-256, SHA-256). The SPIFFE ID, if given, is carried as a requested
 * URI SAN for information only: the CA decides the identity it certifies, never the requester.
 */
export async function createCsr(params: {
  keys: webcrypto.CryptoKeyPair;
  spiffeId?: string;
}): Promise<string> {
  const subtle = globalThis.crypto.subtle;
  const spki = new Uint8Array(await subtle.exportKey('spki', params.keys.publicKey));
  const subject = sequence(set(sequence(oid(OID_ORGANIZATION), der(0x0c, Buffer.from('sluice')))));
  const attributes = params.spiffeId
    ? [
        sequence(
          oid(OID_EXTENSION_REQUEST),
          set(
            sequence(
              sequence(
                oid(OID_SUBJECT_ALT_NAME),
                der(0x04, sequence(der(0x86, Buffer.from(params.spiffeId, 'ascii')))),
              ),
            ),
          ),
        ),
      ]
    : [];
  const info = sequence(der(0x02, Uint8Array.of(0)), subject, spki, der(0xa0, ...attributes));
  // WebCrypto gives r‖s (32 bytes each); X.509 wants SEQUENCE { INTEGER r, INTEGER s }.
  const raw = new Uint8Array(await subtle.sign(SIGNING_ALGORITHM, params.keys.privateKey, info));
  const half = raw.length / 2;
  const signature = sequence(unsignedInteger(raw.subarray(0, half)), unsignedInteger(raw.subarray(half)));
  const csr = sequence(info, sequence(oid(OID_ECDSA_WITH_SHA256)), der(0x03, Uint8Array.of(0), signature));
  return toPem('CERTIFICATE REQUEST', csr);
}
