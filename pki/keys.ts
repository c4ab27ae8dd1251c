import type { webcrypto } from 'node:crypto';
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { PkiError } from './errors.ts';
import { parsePemBlocks, toPem } from './pem.ts';

/** Every key in the mesh is ECDSA P-256; every signature is ECDSA with SHA-256. */
export const KEY_ALGORITHM: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
export const SIGNING_ALGORITHM: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

/** A fresh, extractable P-256 key pair (extractable so that it can be written as key.pem). */
export async function generateKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return globalThis.crypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
}

export async function privateKeyToPem(key: webcrypto.CryptoKey): Promise<string> {
  return toPem('PRIVATE KEY', new Uint8Array(await globalThis.crypto.subtle.exportKey('pkcs8', key)));
}

export async function publicKeyToPem(key: webcrypto.CryptoKey): Promise<string> {
  return toPem('PUBLIC KEY', new Uint8Array(await globalThis.crypto.subtle.exportKey('spki', key)));
}

function requireP256(key: KeyObject, what: string): void {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const type = key.asymmetricKeyType ?? 'unknown';
    throw new PkiError(`${what}: expected an ECDSA P-256 key, got ${type}${curve ? ` ${curve}` : ''}`);
  }
}

/** Checks that a DER SubjectPublicKeyInfo is a P-256 key and returns it unchanged. */
export function requireP256PublicKey(spkiDer: Uint8Array, what: string): Uint8Array {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' });
  } catch {
    throw new PkiError(`${what}: not a valid public key`);
  }
  requireP256(key, what);
  return spkiDer;
}

export interface PrivateKeyInfo {
  readonly key: KeyObject;
  /** DER SubjectPublicKeyInfo of the matching public key. */
  readonly publicKeySpki: Buffer;
  /** The key re-encoded as PKCS#8 PEM. */
  readonly pkcs8Pem: string;
}

/** Reads a P-256 private key from PEM, PKCS#8 ('PRIVATE KEY') or SEC1 ('EC PRIVATE KEY'). */
export function readPrivateKeyPem(pem: string, what: string): PrivateKeyInfo {
  const blocks = parsePemBlocks(pem, what).filter((b) => b.label.endsWith('PRIVATE KEY'));
  if (blocks.length !== 1) throw new PkiError(`${what}: expected exactly one private key PEM block`);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: blocks[0]!.pem, format: 'pem' });
  } catch (err) {
    throw new PkiError(`${what}: private key cannot be read (${(err as Error).message})`);
  }
  requireP256(key, what);
  return {
    key,
    publicKeySpki: createPublicKey(key).export({ type: 'spki', format: 'der' }),
    pkcs8Pem: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** Like readPrivateKeyPem, plus a non-extractable WebCrypto signing key. */
export async function importPrivateKeyPem(
  pem: string,
  what: string,
): Promise<PrivateKeyInfo & { readonly privateKey: webcrypto.CryptoKey }> {
  const info = readPrivateKeyPem(pem, what);
  const pkcs8 = info.key.export({ type: 'pkcs8', format: 'der' });
  const privateKey = await globalThis.crypto.subtle.importKey('pkcs8', pkcs8, KEY_ALGORITHM, false, ['sign']);
  return { ...info, privateKey };
}
