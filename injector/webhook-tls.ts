// The webhook's TLS material, pure: what the Secret sluice-injector-tls holds and whether it needs renewing
// (planCertificate), issuing the webhook CA and the serving certificate (with pki/certificates.ts), and the
// caBundle patch of the MutatingWebhookConfiguration. The loop that applies it is webhook-certificate.ts.
import { X509Certificate } from 'node:crypto';
import { MANAGED_BY_LABEL, PART_OF_LABEL } from '../protocol/labels.ts';
import { issueCertificate, issuerOf, selfSignedCaCertificate } from '../pki/certificates.ts';
import { generateKeyPair, importPrivateKeyPem, privateKeyToPem, readPrivateKeyPem } from '../pki/keys.ts';
import { issuedBy, parseCertificates } from '../pki/pem.ts';
import { x509 } from '../pki/x509-lib.ts';
import { isRecord } from '../lib/is-record.ts';

export const WEBHOOK_SERVICE = 'sluice-injector';
export const WEBHOOK_TLS_SECRET = 'sluice-injector-tls';
export const WEBHOOK_CONFIGURATION = 'sluice-injector';
export const WEBHOOK_TLS_SECRET_TYPE = 'kubernetes.io/tls';
export const WEBHOOK_TLS_KEYS = {
  cert: 'tls.crt',
  key: 'tls.key',
  caBundle: 'ca.crt',
  caKey: 'ca.key',
} as const;
export const WEBHOOK_CA_COMMON_NAME = 'sluice-injector-ca';
export const DEFAULT_WEBHOOK_CA_DAYS = 3650;
export const DEFAULT_SERVING_CERT_DAYS = 365;

const DAY_MS = 24 * 3600 * 1000;
// Valid from a little before "now", so an API server whose clock lags still accepts the certificate.
const BACKDATE_MS = 5 * 60 * 1000;
// Unexpired CA certificates kept in ca.crt: two during a rotation; the cap only bounds odd input.
const MAX_BUNDLE = 4;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The certificate and key the HTTPS server serves (tls.createSecureContext's cert and key). */
export interface ServingCert {
  /** tls.crt: the serving certificate. */
  readonly certPem: string;
  /** tls.key: its private key. */
  readonly keyPem: string;
  /** ca.crt: what the caBundle holds. */
  readonly caBundlePem: string;
  readonly notAfter: Date;
}

export type CertificateAction = 'keep' | 'renew-serving' | 'rotate-ca' | 'create';

export interface CertificatePlan {
  readonly action: CertificateAction;
  /** One line: why (the problem found, or until when it is valid). */
  readonly reason: string;
}

/** The Secret as sent to the API server. */
export interface WebhookTlsSecret {
  readonly apiVersion: 'v1';
  readonly kind: 'Secret';
  readonly metadata: {
    readonly name: string;
    readonly namespace: string;
    readonly resourceVersion?: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly [field: string]: unknown;
  };
  readonly type: string;
  /** base64 values, as the API stores them. */
  readonly data: Readonly<Record<string, string>>;
}

export interface JsonPatchOperation {
  readonly op: 'test' | 'add';
  readonly path: string;
  readonly value: unknown;
}

export interface ServiceRef {
  readonly name: string;
  readonly namespace: string;
}

/** The names the API server may call the webhook Service by; the first is the serving certificate's CN. */
export function servingDnsNames(service: string, namespace: string): string[] {
  for (const label of [service, namespace]) {
    if (!DNS_LABEL.test(label)) throw new Error(`${JSON.stringify(label)} is not a valid DNS label`);
  }
  return [
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
    `${service}.${namespace}`,
  ];
}

export function message(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0] ?? text;
}

export function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

function decode(data: Record<string, unknown>, key: string): string {
  const value = Object.hasOwn(data, key) ? data[key] : undefined;
  if (value === undefined || value === '') throw new Error(`key ${key} is missing`);
  if (typeof value !== 'string' || !BASE64.test(value)) throw new Error(`key ${key} is not base64`);
  return Buffer.from(value, 'base64').toString('utf8');
}

function spki(cert: X509Certificate): Buffer {
  return cert.publicKey.export({ type: 'spki', format: 'der' });
}

function lifetimeLeft(cert: X509Certificate, now: Date): { expired: boolean; underAThird: boolean } {
  const notBefore = cert.validFromDate.getTime();
  const notAfter = cert.validToDate.getTime();
  const left = notAfter - now.getTime();
  return { expired: left <= 0, underAThird: left < (notAfter - notBefore) / 3 };
}

function allowsServerAuth(cert: X509Certificate): boolean {
  const eku = new x509.X509Certificate(cert.raw).getExtension(x509.ExtendedKeyUsageExtension);
  return !eku || eku.usages.some((usage) => usage === x509.ExtendedKeyUsage.serverAuth);
}

/** What examining the Secret found: the plan, plus what a write or a keep needs. */
export interface Examined {
  readonly plan: CertificatePlan;
  /** The CA certificates of ca.crt that parse (empty when ca.crt does not). */
  readonly bundle: readonly X509Certificate[];
  /** The current CA, when it is usable (keep, renew-serving). */
  readonly ca?: { readonly cert: X509Certificate; readonly keyPem: string };
  readonly serving?: ServingCert;
}

export function examine(secret: unknown, now: Date, names: readonly string[]): Examined {
  if (secret === undefined || secret === null) {
    return { plan: { action: 'create', reason: 'the Secret does not exist' }, bundle: [] };
  }
  const data = isRecord(secret) && isRecord(secret.data) ? secret.data : {};

  let bundle: X509Certificate[] = [];
  const rotate = (reason: string): Examined => ({ plan: { action: 'rotate-ca', reason }, bundle });
  let caBundlePem: string;
  let ca: { cert: X509Certificate; keyPem: string };
  try {
    caBundlePem = decode(data, WEBHOOK_TLS_KEYS.caBundle);
    bundle = parseCertificates(caBundlePem, WEBHOOK_TLS_KEYS.caBundle).filter((cert) => cert.ca);
    const caKey = readPrivateKeyPem(decode(data, WEBHOOK_TLS_KEYS.caKey), WEBHOOK_TLS_KEYS.caKey);
    const cert = bundle.find((c) => spki(c).equals(caKey.publicKeySpki));
    if (!cert)
      return rotate(`${WEBHOOK_TLS_KEYS.caKey} matches no CA certificate in ${WEBHOOK_TLS_KEYS.caBundle}`);
    const left = lifetimeLeft(cert, now);
    const until = cert.validToDate.toISOString();
    if (left.expired) return rotate(`the CA expired at ${until}`);
    if (left.underAThird) return rotate(`the CA expires at ${until}, less than a third of its lifetime left`);
    ca = { cert, keyPem: caKey.pkcs8Pem };
  } catch (error) {
    return rotate(`the CA is unusable: ${message(error)}`);
  }

  const renew = (reason: string): Examined => ({ plan: { action: 'renew-serving', reason }, bundle, ca });
  try {
    const certPem = decode(data, WEBHOOK_TLS_KEYS.cert);
    const keyPem = decode(data, WEBHOOK_TLS_KEYS.key);
    const cert = parseCertificates(certPem, WEBHOOK_TLS_KEYS.cert)[0]!;
    const key = readPrivateKeyPem(keyPem, WEBHOOK_TLS_KEYS.key);
    if (!key.publicKeySpki.equals(spki(cert))) {
      return renew(`${WEBHOOK_TLS_KEYS.key} does not match ${WEBHOOK_TLS_KEYS.cert}`);
    }
    if (!issuedBy(cert, ca.cert)) return renew(`${WEBHOOK_TLS_KEYS.cert} is not issued by the current CA`);
    const missing = names.filter((name) => cert.checkHost(name, { subject: 'never' }) === undefined);
    if (missing.length > 0) return renew(`${WEBHOOK_TLS_KEYS.cert} does not cover ${missing.join(', ')}`);
    if (!allowsServerAuth(cert)) return renew(`${WEBHOOK_TLS_KEYS.cert} does not allow serverAuth`);
    const left = lifetimeLeft(cert, now);
    const until = cert.validToDate.toISOString();
    if (left.expired) return renew(`${WEBHOOK_TLS_KEYS.cert} expired at ${until}`);
    if (left.underAThird) {
      return renew(`${WEBHOOK_TLS_KEYS.cert} expires at ${until}, less than a third of its lifetime left`);
    }
    return {
      plan: { action: 'keep', reason: `valid until ${until}` },
      bundle,
      ca,
      serving: { certPem, keyPem, caBundlePem, notAfter: cert.validToDate },
    };
  } catch (error) {
    return renew(`the serving certificate is unusable: ${message(error)}`);
  }
}

/**
 * What to do with the Secret as read (undefined: there is none) at `now` for a Service called by `names`.
 * Never throws: anything unreadable is a reason to issue again.
 */
export function planCertificate(secret: unknown, now: Date, names: readonly string[]): CertificatePlan {
  return examine(secret, now, names).plan;
}

/** A fresh self-signed webhook CA: CN sluice-injector-ca, CA:TRUE pathLen 0, keyCertSign. */
export async function createWebhookCa(params: {
  now?: Date;
  validityDays?: number;
}): Promise<{ certPem: string; keyPem: string }> {
  const now = params.now?.getTime() ?? Date.now();
  const keys = await generateKeyPair();
  const certPem = await selfSignedCaCertificate({
    name: `CN=${WEBHOOK_CA_COMMON_NAME}`,
    keys,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + (params.validityDays ?? DEFAULT_WEBHOOK_CA_DAYS) * DAY_MS),
    pathLength: 0,
  });
  return { certPem, keyPem: await privateKeyToPem(keys.privateKey) };
}

/**
 * A serving certificate from the webhook CA for `dnsNames` (the first is the CN): fresh P-256 key,
 * digitalSignature, serverAuth; cut to the CA's own expiry.
 */
export async function issueServingCert(params: {
  caCertPem: string;
  caKeyPem: string;
  dnsNames: readonly string[];
  now?: Date;
  validityDays?: number;
}): Promise<{ certPem: string; keyPem: string; notAfter: Date }> {
  const [first] = params.dnsNames;
  if (first === undefined) throw new Error('a serving certificate needs at least one DNS name');
  const now = params.now?.getTime() ?? Date.now();
  const caCert = new X509Certificate(params.caCertPem);
  const caKey = await importPrivateKeyPem(params.caKeyPem, WEBHOOK_TLS_KEYS.caKey);
  const caNotAfter = caCert.validToDate.getTime();
  if (caNotAfter <= now) throw new Error('the webhook CA has expired');
  const notAfter = new Date(
    Math.min(now + (params.validityDays ?? DEFAULT_SERVING_CERT_DAYS) * DAY_MS, caNotAfter),
  );
  const keys = await generateKeyPair();
  const certPem = await issueCertificate({
    subject: `CN=${first}`,
    issuer: issuerOf(params.caCertPem, caKey.privateKey),
    publicKey: keys.publicKey,
    notBefore: new Date(Math.max(now - BACKDATE_MS, caCert.validFromDate.getTime())),
    notAfter,
    extendedKeyUsages: ['serverAuth'],
    subjectAltNames: params.dnsNames.map((value) => ({ type: 'dns' as const, value })),
  });
  return { certPem, keyPem: await privateKeyToPem(keys.privateKey), notAfter };
}

/** The CA bundle to write: `first`, then the other unexpired CA certificates of the old bundle. */
export function bundlePem(firstPem: string, others: readonly X509Certificate[], now: Date): string {
  const first = new X509Certificate(firstPem);
  const kept = others.filter((c) => c.validToDate > now && !c.raw.equals(first.raw));
  return [firstPem, ...kept.slice(0, MAX_BUNDLE - 1).map((c) => c.toString())].join('');
}

/** The Secret to write, keeping what else the existing one holds (metadata, other keys, its type). */
export function secretBody(
  existing: unknown,
  ref: ServiceRef,
  data: Record<string, string>,
): WebhookTlsSecret {
  const old = isRecord(existing) ? existing : {};
  const { managedFields: _managed, ...metadata } = isRecord(old.metadata) ? old.metadata : {};
  const labels = isRecord(metadata.labels) ? metadata.labels : {};
  const oldData = isRecord(old.data) ? old.data : {};
  const keptData = Object.fromEntries(
    Object.entries(oldData).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
  );
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      ...metadata,
      name: ref.name,
      namespace: ref.namespace,
      labels: {
        ...(labels as Record<string, string>),
        [PART_OF_LABEL]: 'sluice',
        [MANAGED_BY_LABEL]: 'sluice-injector',
      },
    },
    // The type of an existing Secret cannot be changed.
    type: typeof old.type === 'string' ? old.type : WEBHOOK_TLS_SECRET_TYPE,
    data: { ...keptData, ...data },
  };
}

export function webhookEntries(configuration: unknown): unknown[] {
  return isRecord(configuration) && Array.isArray(configuration.webhooks) ? configuration.webhooks : [];
}

export function callsService(webhook: unknown, service: ServiceRef): boolean {
  if (!isRecord(webhook) || !isRecord(webhook.clientConfig)) return false;
  const target = webhook.clientConfig.service;
  return isRecord(target) && target.name === service.name && target.namespace === service.namespace;
}

/**
 * The JSON patch that makes every webhook of `configuration` that calls `service` trust `caBundlePem`
 * (empty when they all do). Each change is guarded by a test of the webhook's name at that index, so a
 * configuration edited in between is not patched in the wrong place.
 */
export function caBundlePatch(
  configuration: unknown,
  caBundlePem: string,
  service: ServiceRef,
): JsonPatchOperation[] {
  const wanted = base64(caBundlePem);
  const patch: JsonPatchOperation[] = [];
  for (const [i, webhook] of webhookEntries(configuration).entries()) {
    if (!callsService(webhook, service) || !isRecord(webhook) || !isRecord(webhook.clientConfig)) continue;
    if (webhook.clientConfig.caBundle === wanted) continue;
    patch.push({ op: 'test', path: `/webhooks/${i}/name`, value: webhook.name });
    patch.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: wanted });
  }
  return patch;
}

/** Whether every webhook of `configuration` that calls `service` has `caBundlePem` as its caBundle. */
export function caBundleMatches(configuration: unknown, caBundlePem: string, service: ServiceRef): boolean {
  return caBundlePatch(configuration, caBundlePem, service).length === 0;
}

/** The Secret and MutatingWebhookConfiguration through the core and admissionregistration.k8s.io/v1 APIs. */
