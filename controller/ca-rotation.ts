// The three Secret edits of a CA root rotation (docs/operations.md), as pure functions of the Secret the
// API holds: `sluice ca rotate` reads it (kubectl get -o json), prints the next version (kubectl apply).
// Each step checks the one before it happened; `finish` refuses while a certificate signed by the old
// root can still be valid.
import { X509Certificate } from 'node:crypto';
import { isRecord } from '../lib/is-record.ts';
import { parseCertificates } from '../pki/pem.ts';
import { CA_SECRET_KEYS, CaSecretError } from './ca-root-secret.ts';

export type RotationStep = 'introduce' | 'sign' | 'finish';

/** When the new CA started signing (ISO 8601), set by `sign`, read by `finish`. */
export const SIGNED_AT_ANNOTATION = 'sluice.dev/ca-rotation-signed-at';

export interface RotationInput {
  /** The Secret as `kubectl get secret sluice-ca -o json` prints it. */
  readonly secret: unknown;
  /** The new CA (introduce, sign): PEM certificate and key. */
  readonly newCa?: { readonly certPem: string; readonly keyPem: string };
  readonly now: Date;
  /** The longest certificate lifetime the old CA gave out (workloads and the controller), in hours. */
  readonly maxCertHours: number;
  /** finish even before maxCertHours have passed (certificates from the old root stop being trusted). */
  readonly force?: boolean;
}

function fail(message: string): never {
  throw new CaSecretError(`ca rotate: ${message}`);
}

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

function decoded(data: Record<string, unknown>, key: string): string | undefined {
  const value = data[key];
  return typeof value === 'string' && value !== ''
    ? Buffer.from(value, 'base64').toString('utf8')
    : undefined;
}

function same(a: X509Certificate, b: X509Certificate): boolean {
  return a.raw.equals(b.raw);
}

function chainsTo(cert: X509Certificate, root: X509Certificate): boolean {
  return same(cert, root) || (root.ca && cert.checkIssued(root) && cert.verify(root.publicKey));
}

/**
 * The Secret after `step`: introduce adds the new root to ca.crt; sign makes the new CA the signer (its
 * root must be in ca.crt already) and records when; finish keeps in ca.crt only the roots the signer chains
 * to, once maxCertHours have passed since sign.
 */
export function rotateCaSecret(step: RotationStep, input: RotationInput): Record<string, unknown> {
  const secret = input.secret;
  if (!isRecord(secret) || !isRecord(secret.data)) fail('input is not a Secret with data');
  const data = secret.data;
  const signerText = decoded(data, CA_SECRET_KEYS.cert) ?? fail(`the Secret has no ${CA_SECRET_KEYS.cert}`);
  const signer = parseCertificates(signerText, CA_SECRET_KEYS.cert);
  const bundleText = decoded(data, CA_SECRET_KEYS.bundle) ?? signer[signer.length - 1]!.toString();
  const bundle = parseCertificates(bundleText, CA_SECRET_KEYS.bundle);
  const metadata = isRecord(secret.metadata) ? { ...secret.metadata } : {};
  delete metadata.managedFields;
  const annotations = isRecord(metadata.annotations) ? { ...metadata.annotations } : {};
  const out = (nextData: Record<string, unknown>): Record<string, unknown> => ({
    ...secret,
    metadata: { ...metadata, annotations },
    data: nextData,
  });
  const newRoot = (): X509Certificate => {
    if (!input.newCa) fail(`${step} needs the new CA (--new-ca DIR)`);
    const [cert] = parseCertificates(input.newCa.certPem, 'the new CA');
    if (!cert!.ca) fail('the new CA certificate is not a CA');
    return cert!;
  };
  switch (step) {
    case 'introduce': {
      const root = newRoot();
      if (bundle.some((c) => same(c, root))) fail(`the new root is already in ${CA_SECRET_KEYS.bundle}`);
      delete annotations[SIGNED_AT_ANNOTATION];
      return out({
        ...data,
        [CA_SECRET_KEYS.bundle]: b64([...bundle, root].map((c) => c.toString()).join('')),
      });
    }
    case 'sign': {
      const root = newRoot();
      if (!bundle.some((c) => same(c, root))) {
        fail(
          `the new root is not in ${CA_SECRET_KEYS.bundle}: run 'introduce' first and wait until sidecars trust it`,
        );
      }
      if (signer.some((c) => same(c, root))) fail('the new CA signs already');
      annotations[SIGNED_AT_ANNOTATION] = input.now.toISOString();
      return out({
        ...data,
        [CA_SECRET_KEYS.cert]: b64(input.newCa!.certPem),
        [CA_SECRET_KEYS.key]: b64(input.newCa!.keyPem),
      });
    }
    case 'finish': {
      const signedAtText = annotations[SIGNED_AT_ANNOTATION];
      const signedAt = typeof signedAtText === 'string' ? Date.parse(signedAtText) : NaN;
      if (Number.isNaN(signedAt)) fail(`no ${SIGNED_AT_ANNOTATION} annotation: run 'sign' first`);
      const safeAt = new Date(signedAt + input.maxCertHours * 3600_000);
      if (!input.force && input.now < safeAt) {
        fail(`certificates from the old root may be valid until ${safeAt.toISOString()}; finish after that`);
      }
      const last = signer[signer.length - 1]!;
      const kept = bundle.filter((root) => chainsTo(last, root));
      if (kept.length === bundle.length) fail(`${CA_SECRET_KEYS.bundle} holds no root but the signer's`);
      delete annotations[SIGNED_AT_ANNOTATION];
      return out({ ...data, [CA_SECRET_KEYS.bundle]: b64(kept.map((c) => c.toString()).join('')) });
    }
  }
}
