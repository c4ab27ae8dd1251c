// The injector's HTTPS serving certificate. The API server calls the webhook at https://<service>.<ns>.svc
// and checks the certificate against the caBundle of the MutatingWebhookConfiguration. The injector runs
// its own small CA for this, independent of the mesh CA: that one issues SPIFFE-only certificates, and
// the webhook must keep working while the controller is down. Every replica keeps one Secret up to date:
//   tls.crt, tls.key  the serving certificate (ECDSA P-256, the Service's DNS names) and its key
//   ca.crt            the webhook CA bundle: the current CA, plus the previous one while rotating
//   ca.key            the current CA's key
// and copies ca.crt into the caBundle of each webhook that calls our Service. Secret writes are
// conditional on the resourceVersion, so two replicas racing to renew settle on one result.
import { describeApiError, JSON_PATCH, unlessStatus, type KubeApi } from '../lib/kube/kube-api.ts';
import type { Logger } from '../lib/json-log.ts';
import { backoffDelay } from '../lib/backoff.ts';

import {
  type CertificateAction,
  type Examined,
  type ServiceRef,
  type JsonPatchOperation,
  type ServingCert,
  WEBHOOK_CONFIGURATION,
  WEBHOOK_SERVICE,
  WEBHOOK_TLS_KEYS,
  WEBHOOK_TLS_SECRET,
  type WebhookTlsSecret,
  base64,
  bundlePem,
  caBundlePatch,
  callsService,
  createWebhookCa,
  examine,
  issueServingCert,
  message,
  secretBody,
  servingDnsNames,
  webhookEntries,
} from './webhook-tls.ts';

const REQUEST_TIMEOUT_MS = 10_000;
// Writes that lose to another replica's write before giving up until the next check.
const MAX_WRITE_ATTEMPTS = 4;
const FIRST_RETRY_MS = 5_000;
const JITTER = 0.1;
export const DEFAULT_CHECK_INTERVAL_MS = 60_000;

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
