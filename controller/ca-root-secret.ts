// The mesh CA's root of trust, kept in a Secret in the control-plane namespace. The format is the one
// `kubectl create secret tls` and cert-manager (a Certificate with isCA: true) produce, so a user can
// bring their own CA:
//   tls.crt  the signing CA certificate, optionally followed by its issuers (up to, not needing, the root)
//   tls.key  the signing CA's private key (ECDSA P-256, PKCS#8 or SEC1 PEM)
//   ca.crt   optional: the trust bundle sidecars get (the root(s)); defaults to tls.crt's last certificate
//            when that is a self-signed root. During a CA rotation it holds the old and the new root.
// With no Secret on first start, the controller creates one holding a fresh self-signed root.
import type { X509Certificate } from 'node:crypto';
import { createCa, loadCa } from '../pki/ca.ts';
import { PkiError } from '../pki/errors.ts';
import { issuedBy, parseCertificates } from '../pki/pem.ts';
import { MANAGED_BY_LABEL, PART_OF_LABEL } from '../protocol/labels.ts';
import type { IssuingCa } from './workload-ca.ts';
import { isRecord } from '../lib/is-record.ts';

export const CA_SECRET_NAME = 'sluice-ca';
export const CA_SECRET_TYPE = 'kubernetes.io/tls';
export const CA_SECRET_KEYS = { cert: 'tls.crt', key: 'tls.key', bundle: 'ca.crt' } as const;
const ACCEPTED_TYPES: readonly string[] = [CA_SECRET_TYPE, 'Opaque'];
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const MAX_CHAIN = 8;

/** A Secret as sent to the API server. */
export interface CaSecret {
  readonly apiVersion: 'v1';
  readonly kind: 'Secret';
  readonly metadata: {
    readonly name: string;
    readonly namespace: string;
    readonly labels: Readonly<Record<string, string>>;
  };
  readonly type: typeof CA_SECRET_TYPE;
  /** base64 values, as the API stores them. */
  readonly data: Readonly<Record<string, string>>;
}

/** The CA Secret is missing a key, malformed, or holds an unusable CA. The message is one line. */
export class CaSecretError extends PkiError {
  override name = 'CaSecretError';
}

function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

/** The Secret to create on first start, for a CA made with createCa (tls.crt and ca.crt both the root). */
export function buildCaSecret(params: {
  namespace: string;
  name?: string;
  certPem: string;
  keyPem: string;
}): CaSecret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: params.name ?? CA_SECRET_NAME,
      namespace: params.namespace,
      labels: { [PART_OF_LABEL]: 'sluice', [MANAGED_BY_LABEL]: 'sluice-controller' },
    },
    type: CA_SECRET_TYPE,
    data: {
      [CA_SECRET_KEYS.cert]: base64(params.certPem),
      [CA_SECRET_KEYS.key]: base64(params.keyPem),
      [CA_SECRET_KEYS.bundle]: base64(params.certPem),
    },
  };
}

function sameCert(a: X509Certificate, b: X509Certificate): boolean {
  return a.raw.equals(b.raw);
}

/**
 * Loads the CA from a Secret object as read from the API (base64 `data`). Checks the key matches, the
 * CA is not expired, tls.crt is a chain, and it ends at a certificate in the trust bundle. Throws
 * CaSecretError with a one-line message naming the Secret and the problem.
 */
export async function loadCaSecret(
  secret: unknown,
  params: { trustDomain: string; now?: Date },
): Promise<IssuingCa> {
  const meta = isRecord(secret) && isRecord(secret.metadata) ? secret.metadata : {};
  const where =
    typeof meta.namespace === 'string' && typeof meta.name === 'string'
      ? `Secret ${meta.namespace}/${meta.name}`
      : 'CA Secret';
  const fail = (message: string): never => {
    throw new CaSecretError(`${where}: ${message}`);
  };
  if (!isRecord(secret)) return fail('not an object');
  const type = secret.type ?? 'Opaque';
  if (typeof type !== 'string' || !ACCEPTED_TYPES.includes(type)) {
    return fail(`has type ${JSON.stringify(type)}; expected ${CA_SECRET_TYPE} (or Opaque)`);
  }
  const data = isRecord(secret.data) ? secret.data : {};
  const read = (key: string, required: boolean): string | undefined => {
    const value = Object.hasOwn(data, key) ? data[key] : undefined;
    if (value === undefined || value === '') {
      if (!required) return undefined;
      return fail(
        `key ${key} is missing (a mesh CA Secret holds ${CA_SECRET_KEYS.cert}, ${CA_SECRET_KEYS.key} and optionally ${CA_SECRET_KEYS.bundle})`,
      );
    }
    if (typeof value !== 'string' || !BASE64.test(value)) return fail(`key ${key} is not base64`);
    return Buffer.from(value, 'base64').toString('utf8');
  };
  const certText = read(CA_SECRET_KEYS.cert, true)!;
  const keyText = read(CA_SECRET_KEYS.key, true)!;
  const bundleText = read(CA_SECRET_KEYS.bundle, false);

  try {
    const chain = parseCertificates(certText, CA_SECRET_KEYS.cert);
    if (chain.length > MAX_CHAIN) fail(`${CA_SECRET_KEYS.cert} holds more than ${MAX_CHAIN} certificates`);
    const signer = chain[0]!;
    const ca = await loadCa({ certPem: signer.toString(), keyPem: keyText, trustDomain: params.trustDomain });
    const now = params.now ?? new Date();
    if (ca.cert.validToDate <= now) {
      fail(`the CA certificate in ${CA_SECRET_KEYS.cert} expired at ${ca.cert.validToDate.toISOString()}`);
    }
    for (let i = 1; i < chain.length; i++) {
      if (!issuedBy(chain[i - 1]!, chain[i]!)) {
        fail(`${CA_SECRET_KEYS.cert}: certificate ${i + 1} is not the CA that issued certificate ${i}`);
      }
    }
    const last = chain[chain.length - 1]!;
    let bundle: X509Certificate[];
    if (bundleText !== undefined) {
      bundle = parseCertificates(bundleText, CA_SECRET_KEYS.bundle);
      for (const [i, cert] of bundle.entries()) {
        if (!cert.ca) fail(`${CA_SECRET_KEYS.bundle}: certificate ${i + 1} is not a CA`);
      }
    } else if (issuedBy(last, last)) {
      bundle = [last];
    } else {
      return fail(
        `key ${CA_SECRET_KEYS.bundle} is missing and ${CA_SECRET_KEYS.cert} does not end with a self-signed root`,
      );
    }
    const anchored = bundle.some((root) => sameCert(root, last) || issuedBy(last, root));
    if (!anchored) fail(`${CA_SECRET_KEYS.cert} does not chain to a certificate in ${CA_SECRET_KEYS.bundle}`);
    return {
      ca,
      chainPem: chain
        .filter((cert) => !bundle.some((root) => sameCert(root, cert)))
        .map((cert) => cert.toString())
        .join(''),
      trustBundlePem: bundle.map((cert) => cert.toString()).join(''),
    };
  } catch (err) {
    if (err instanceof CaSecretError) throw err;
    if (err instanceof PkiError) return fail(err.message);
    throw err;
  }
}

/** The Kubernetes calls load-or-create needs; the real one wraps CoreV1Api. */
export interface CaSecretStore {
  /** The Secret, or undefined if there is none (404). Other errors reject. */
  get(namespace: string, name: string): Promise<unknown>;
  /** Creates the Secret; resolves false if one of that name already exists (409). */
  create(secret: CaSecret): Promise<boolean>;
}

/**
 * Uses the CA Secret if there is one (a user's, or ours from an earlier start); otherwise creates a fresh
 * root and stores it. When another controller replica creates it first, that one is used.
 */
export async function loadOrCreateCaSecret(
  store: CaSecretStore,
  params: { namespace: string; name?: string; trustDomain: string; caValidityDays?: number; now?: Date },
): Promise<{ issuer: IssuingCa; created: boolean; secret: unknown }> {
  const name = params.name ?? CA_SECRET_NAME;
  const load = { trustDomain: params.trustDomain, ...(params.now ? { now: params.now } : {}) };
  const existing = await store.get(params.namespace, name);
  if (existing !== undefined) {
    return { issuer: await loadCaSecret(existing, load), created: false, secret: existing };
  }

  const pem = await createCa({
    trustDomain: params.trustDomain,
    ...(params.caValidityDays === undefined ? {} : { validityDays: params.caValidityDays }),
    ...(params.now ? { now: params.now } : {}),
  });
  const secret = buildCaSecret({ namespace: params.namespace, name, ...pem });
  if (await store.create(secret)) {
    return { issuer: await loadCaSecret(secret, load), created: true, secret };
  }
  const winner = await store.get(params.namespace, name);
  if (winner === undefined) {
    throw new CaSecretError(
      `Secret ${params.namespace}/${name}: create said it exists, but it cannot be read`,
    );
  }
  return { issuer: await loadCaSecret(winner, load), created: false, secret: winner };
}
