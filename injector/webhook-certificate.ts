// The injector's HTTPS serving certificate. The API server calls the webhook at https://<service>.<ns>.svc
// and checks the certificate against the caBundle of the MutatingWebhookConfiguration. The injector runs
// its own small CA for this, independent of the mesh CA: that one issues SPIFFE-only certificates, and
// the webhook must keep working while the controller is down. Every replica keeps one Secret up to date:
//   tls.crt, tls.key  the serving certificate (ECDSA P-256, the Service's DNS names) and its key
//   ca.crt            the webhook CA bundle: the current CA, plus the previous one while rotating
//   ca.key            the current CA's key
// and copies ca.crt into the caBundle of each webhook that calls our Service. Secret writes are
// conditional on the resourceVersion, so two replicas racing to renew settle on one result.
import { X509Certificate } from 'node:crypto';
import { describeApiError, JSON_PATCH, unlessStatus, type KubeApi } from '../lib/kube/kube-api.ts';
import { MANAGED_BY_LABEL, PART_OF_LABEL } from '../protocol/labels.ts';
import type { Logger } from '../lib/json-log.ts';
import { issueCertificate, issuerOf, selfSignedCaCertificate } from '../pki/certificates.ts';
import { generateKeyPair, importPrivateKeyPem, privateKeyToPem, readPrivateKeyPem } from '../pki/keys.ts';
import { parseCertificates } from '../pki/pem.ts';
import { x509 } from '../pki/x509-lib.ts';
import { backoffDelay } from '../lib/backoff.ts';
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
export const DEFAULT_CHECK_INTERVAL_MS = 60_000;

const DAY_MS = 24 * 3600 * 1000;
// Valid from a little before "now", so an API server whose clock lags still accepts the certificate.
const BACKDATE_MS = 5 * 60 * 1000;
const REQUEST_TIMEOUT_MS = 10_000;
// Writes that lose to another replica's write before giving up until the next check.
const MAX_WRITE_ATTEMPTS = 4;
// Unexpired CA certificates kept in ca.crt: two during a rotation; the cap only bounds odd input.
const MAX_BUNDLE = 4;
const FIRST_RETRY_MS = 5_000;
const JITTER = 0.1;
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

/** The Kubernetes calls the certificate needs; the real one is apiWebhookTlsStore. */
export interface WebhookTlsStore {
  /** The Secret as read (with metadata.resourceVersion), or undefined when there is none (404). */
  getSecret(namespace: string, name: string): Promise<unknown>;
  /** false when a Secret of that name exists already (409). */
  createSecret(secret: WebhookTlsSecret): Promise<boolean>;
  /** Replaces it if metadata.resourceVersion is still current; false on a conflict (409) or when gone (404). */
  replaceSecret(secret: WebhookTlsSecret): Promise<boolean>;
  /** The MutatingWebhookConfiguration, or undefined when there is none (404). */
  getWebhookConfiguration(name: string): Promise<unknown>;
  /** Applies a JSON patch; false when it no longer applies (gone, or a failed test operation). */
  patchWebhookConfiguration(name: string, patch: readonly JsonPatchOperation[]): Promise<boolean>;
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

function message(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0] ?? text;
}

function base64(text: string): string {
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

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return issuer.ca && cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
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
interface Examined {
  readonly plan: CertificatePlan;
  /** The CA certificates of ca.crt that parse (empty when ca.crt does not). */
  readonly bundle: readonly X509Certificate[];
  /** The current CA, when it is usable (keep, renew-serving). */
  readonly ca?: { readonly cert: X509Certificate; readonly keyPem: string };
  readonly serving?: ServingCert;
}

function examine(secret: unknown, now: Date, names: readonly string[]): Examined {
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
function bundlePem(firstPem: string, others: readonly X509Certificate[], now: Date): string {
  const first = new X509Certificate(firstPem);
  const kept = others.filter((c) => c.validToDate > now && !c.raw.equals(first.raw));
  return [firstPem, ...kept.slice(0, MAX_BUNDLE - 1).map((c) => c.toString())].join('');
}

/** The Secret to write, keeping what else the existing one holds (metadata, other keys, its type). */
function secretBody(existing: unknown, ref: ServiceRef, data: Record<string, string>): WebhookTlsSecret {
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

function webhookEntries(configuration: unknown): unknown[] {
  return isRecord(configuration) && Array.isArray(configuration.webhooks) ? configuration.webhooks : [];
}

function callsService(webhook: unknown, service: ServiceRef): boolean {
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
export function apiWebhookTlsStore(api: KubeApi): WebhookTlsStore {
  const options = { timeoutMs: REQUEST_TIMEOUT_MS };
  const secrets = (namespace: string): string => `/api/v1/namespaces/${namespace}/secrets`;
  const webhooks = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';
  return {
    getSecret: (namespace, name) =>
      unlessStatus(api.request('GET', `${secrets(namespace)}/${name}`, options), [404], undefined),
    createSecret: (secret) =>
      unlessStatus(
        api
          .request('POST', secrets(secret.metadata.namespace), { ...options, body: secret })
          .then(() => true),
        [409],
        false,
      ),
    replaceSecret: (secret) =>
      unlessStatus(
        api
          .request('PUT', `${secrets(secret.metadata.namespace)}/${secret.metadata.name}`, {
            ...options,
            body: secret,
          })
          .then(() => true),
        [404, 409],
        false,
      ),
    getWebhookConfiguration: (name) =>
      unlessStatus(api.request('GET', `${webhooks}/${name}`, options), [404], undefined),
    patchWebhookConfiguration: (name, patch) =>
      unlessStatus(
        api
          .request('PATCH', `${webhooks}/${name}`, {
            ...options,
            query: { fieldManager: 'sluice-injector' },
            body: patch,
            contentType: JSON_PATCH,
          })
          .then(() => true),
        // 422: a test operation failed (the webhooks changed since they were read).
        [404, 409, 422],
        false,
      ),
  };
}

/** Where the Secret and the MutatingWebhookConfiguration live: the API server, or a store (tests). */
export type WebhookTlsSource =
  | { readonly api: KubeApi; readonly store?: undefined }
  | { readonly store: WebhookTlsStore; readonly api?: undefined };

export type WebhookCertificateOptions = WebhookTlsSource & {
  /** The injector's namespace (the Secret's and the Service's). */
  readonly namespace: string;
  readonly serviceName?: string;
  readonly secretName?: string;
  readonly webhookConfigurationName?: string;
  readonly log: Logger;
  /** How often to check again (60 s, ±10 %); failures are retried sooner. */
  readonly checkIntervalMs?: number;
  readonly caValidityDays?: number;
  readonly servingValidityDays?: number;
  /** The clock (tests move it). */
  readonly now?: () => Date;
};

type WebhookSync = 'in-sync' | 'patched' | 'missing' | 'not-ours' | 'failed';

/**
 * Keeps the serving certificate valid and the caBundle in step with it, in every injector replica.
 * start() gets the first certificate; after that it checks every minute and on checkNow(), and hands
 * a changed certificate (renewed here or by the other replica) to the onChange listeners.
 */
export class WebhookCertificate {
  readonly #store: WebhookTlsStore;
  readonly #log: Logger;
  readonly #secret: ServiceRef;
  readonly #service: ServiceRef;
  readonly #configuration: string;
  readonly #names: readonly string[];
  readonly #intervalMs: number;
  readonly #caDays: number | undefined;
  readonly #servingDays: number | undefined;
  readonly #now: () => Date;
  readonly #listeners = new Set<(cert: ServingCert) => void>();
  #current: ServingCert | undefined;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  #queued: Promise<void> | undefined;
  #failures = 0;
  #stopped = true;
  #lastSync: WebhookSync | undefined;

  constructor(options: WebhookCertificateOptions) {
    this.#store = options.store ?? apiWebhookTlsStore(options.api);
    this.#log = options.log;
    const service = options.serviceName ?? WEBHOOK_SERVICE;
    this.#names = servingDnsNames(service, options.namespace);
    this.#secret = { name: options.secretName ?? WEBHOOK_TLS_SECRET, namespace: options.namespace };
    this.#service = { name: service, namespace: options.namespace };
    this.#configuration = options.webhookConfigurationName ?? WEBHOOK_CONFIGURATION;
    this.#intervalMs = options.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS;
    this.#caDays = options.caValidityDays;
    this.#servingDays = options.servingValidityDays;
    this.#now = options.now ?? (() => new Date());
  }

  /** The certificate being served; undefined before start() resolves. */
  get current(): ServingCert | undefined {
    return this.#current;
  }

  /** DNS names the serving certificate covers. */
  get dnsNames(): readonly string[] {
    return this.#names;
  }

  /** Calls `listener` with each new certificate after the first (for server.setSecureContext). */
  onChange(listener: (cert: ServingCert) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Gets a valid certificate (creating or renewing the Secret if need be), then keeps it so. Rejects
   * with a one-line error when the Secret cannot be read or written; the caBundle is only tried.
   */
  async start(): Promise<ServingCert> {
    this.#stopped = false;
    const run = this.#chain.then(() => this.#pass(true));
    this.#chain = run.catch(() => undefined);
    let cert: ServingCert | undefined;
    try {
      cert = await run;
    } catch (error) {
      this.stop();
      throw error;
    }
    if (!cert) throw new Error('webhook serving certificate: stopped before it was ready');
    return cert;
  }

  /** Checks now (after a check under way); never rejects, failures are logged and retried. */
  checkNow(): Promise<void> {
    this.#queued ??= this.#chain.then(async () => {
      this.#queued = undefined;
      try {
        await this.#pass(false);
      } catch (error) {
        this.#log.warn('webhook serving certificate check failed', { error: message(error) });
      }
    });
    this.#chain = this.#queued;
    return this.#queued;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(delayMs: number): void {
    clearTimeout(this.#timer);
    if (this.#stopped) return;
    const jittered = delayMs * (1 - JITTER + 2 * JITTER * Math.random());
    this.#timer = setTimeout(() => void this.checkNow(), jittered);
    this.#timer.unref();
  }

  #retryDelay(): number {
    this.#failures++;
    return Math.min(
      this.#intervalMs,
      backoffDelay(this.#failures - 1, { initialMs: FIRST_RETRY_MS, maxMs: Infinity, jitter: 0 }),
    );
  }

  /** One check; with `strict`, a failure to get a certificate rejects, otherwise it is logged. */
  async #pass(strict: boolean): Promise<ServingCert | undefined> {
    if (this.#stopped) return undefined;
    let cert: ServingCert;
    try {
      cert = await this.#ensureSecret();
    } catch (error) {
      if (strict) throw error;
      this.#log.warn('webhook serving certificate check failed; keeping the current one', {
        error: message(error),
      });
      this.#schedule(this.#retryDelay());
      return undefined;
    }
    const sync = await this.#syncCaBundle(cert.caBundlePem);
    this.#use(cert, sync);
    if (sync === 'failed' || sync === 'missing') {
      this.#schedule(this.#retryDelay());
    } else {
      this.#failures = 0;
      this.#schedule(this.#intervalMs);
    }
    return this.#current;
  }

  /** A valid certificate from the Secret, after creating or renewing it if need be. */
  async #ensureSecret(): Promise<ServingCert> {
    const where = `Secret ${this.#secret.namespace}/${this.#secret.name}`;
    for (let attempt = 1; attempt <= MAX_WRITE_ATTEMPTS; attempt++) {
      const existing = await this.#call(`reading ${where}`, () =>
        this.#store.getSecret(this.#secret.namespace, this.#secret.name),
      );
      const now = this.#now();
      const found = examine(existing, now, this.#names);
      const { action, reason } = found.plan;
      if (action === 'keep') return found.serving!;
      const { body, cert } = await this.#issue(existing, found, action, now);
      const written =
        action === 'create'
          ? await this.#call(`creating ${where}`, () => this.#store.createSecret(body))
          : await this.#call(`updating ${where}`, () => this.#store.replaceSecret(body));
      const fields = { secret: `${this.#secret.namespace}/${this.#secret.name}`, reason };
      if (written) {
        const done = {
          create: 'created the webhook CA and serving certificate',
          'renew-serving': 'issued a new webhook serving certificate',
          'rotate-ca': 'rotated the webhook CA and issued a new serving certificate',
        }[action];
        this.#log.info(done, { ...fields, notAfter: cert.notAfter.toISOString() });
        return cert;
      }
      this.#log.info('the Secret changed meanwhile (another replica wrote it); reading it again', {
        ...fields,
        action,
      });
    }
    throw new Error(
      `webhook serving certificate: ${where}: still conflicting after ${MAX_WRITE_ATTEMPTS} writes`,
    );
  }

  async #call<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      // The message carries the cause as one line; a `cause` would make describeApiError repeat it.
      // eslint-disable-next-line preserve-caught-error
      throw new Error(`webhook serving certificate: ${what}: ${describeApiError(error)}`);
    }
  }

  async #issue(
    existing: unknown,
    found: Examined,
    action: Exclude<CertificateAction, 'keep'>,
    now: Date,
  ): Promise<{ body: WebhookTlsSecret; cert: ServingCert }> {
    let ca: { certPem: string; keyPem: string };
    if (action === 'renew-serving' && found.ca) {
      ca = { certPem: found.ca.cert.toString(), keyPem: found.ca.keyPem };
    } else {
      ca = await createWebhookCa({
        now,
        ...(this.#caDays === undefined ? {} : { validityDays: this.#caDays }),
      });
    }
    const serving = await issueServingCert({
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      dnsNames: this.#names,
      now,
      ...(this.#servingDays === undefined ? {} : { validityDays: this.#servingDays }),
    });
    const caBundlePem = bundlePem(ca.certPem, found.bundle, now);
    const body = secretBody(action === 'create' ? undefined : existing, this.#secret, {
      [WEBHOOK_TLS_KEYS.cert]: base64(serving.certPem),
      [WEBHOOK_TLS_KEYS.key]: base64(serving.keyPem),
      [WEBHOOK_TLS_KEYS.caBundle]: base64(caBundlePem),
      [WEBHOOK_TLS_KEYS.caKey]: base64(ca.keyPem),
    });
    return {
      body,
      cert: { certPem: serving.certPem, keyPem: serving.keyPem, caBundlePem, notAfter: serving.notAfter },
    };
  }

  /** Makes the webhooks that call our Service trust `caBundlePem`; never throws. */
  async #syncCaBundle(caBundlePem: string): Promise<WebhookSync> {
    const fields = { webhookConfiguration: this.#configuration };
    try {
      for (let attempt = 1; attempt <= 3; attempt++) {
        const configuration = await this.#store.getWebhookConfiguration(this.#configuration);
        // These two are logged when they start, not on every check.
        if (configuration === undefined) {
          if (this.#lastSync !== 'missing') {
            this.#log.info('the MutatingWebhookConfiguration does not exist yet; will retry', fields);
          }
          return (this.#lastSync = 'missing');
        }
        if (!webhookEntries(configuration).some((webhook) => callsService(webhook, this.#service))) {
          if (this.#lastSync !== 'not-ours') {
            this.#log.warn('no webhook of the MutatingWebhookConfiguration calls the injector Service', {
              ...fields,
              service: `${this.#service.namespace}/${this.#service.name}`,
            });
          }
          return (this.#lastSync = 'not-ours');
        }
        const patch = caBundlePatch(configuration, caBundlePem, this.#service);
        if (patch.length === 0) return (this.#lastSync = 'in-sync');
        if (await this.#store.patchWebhookConfiguration(this.#configuration, patch)) {
          this.#log.info('updated the caBundle of the MutatingWebhookConfiguration', {
            ...fields,
            webhooks: patch.length / 2,
          });
          return (this.#lastSync = 'patched');
        }
      }
      this.#log.warn('the MutatingWebhookConfiguration kept changing while patching its caBundle', fields);
    } catch (error) {
      this.#log.warn('could not update the caBundle of the MutatingWebhookConfiguration', {
        ...fields,
        error: describeApiError(error),
      });
    }
    return (this.#lastSync = 'failed');
  }

  /**
   * Serves `cert` from now on, unless it comes with a new CA bundle the API server may not trust yet
   * (the caBundle update failed) while the certificate in use is still valid: then it waits.
   */
  #use(cert: ServingCert, sync: WebhookSync): void {
    const current = this.#current;
    if (current && current.certPem === cert.certPem && current.keyPem === cert.keyPem) return;
    if (current && this.#stopped) return;
    if (
      current &&
      sync === 'failed' &&
      current.caBundlePem !== cert.caBundlePem &&
      current.notAfter > this.#now()
    ) {
      this.#log.warn('keeping the current serving certificate until the caBundle holds the new CA', {
        webhookConfiguration: this.#configuration,
      });
      return;
    }
    this.#current = cert;
    if (!current) return;
    this.#log.info('serving a new webhook certificate', { notAfter: cert.notAfter.toISOString() });
    for (const listener of this.#listeners) {
      try {
        listener(cert);
      } catch (error) {
        this.#log.warn('a webhook certificate listener failed', { error: message(error) });
      }
    }
  }
}
