// The mesh CA as the controller gets it (loaded from, or created in, the Secret sluice-ca, retried with
// backoff until the API answers) and the controller's own certificate from it, renewed like a sidecar's.
import type { Logger } from '../lib/json-log.ts';
import { Backoff } from '../lib/backoff.ts';
import { describeApiError, type KubeApi } from '../lib/kube/kube-api.ts';
import { issueWorkloadCert } from '../pki/ca.ts';
import { parseIdentity, type Identity } from '../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../pki/keys.ts';
import { workloadSpiffeId } from '../pki/spiffe-id.ts';
import { MeshTlsCredentials } from '../pki/tls-options.ts';
import { renewAt } from '../protocol/certificate-protocol.ts';
import { CONTROLLER_SERVICE_ACCOUNT } from '../protocol/config-protocol.ts';
import { CA_SECRET_NAME, loadOrCreateCaSecret } from './ca-root-secret.ts';
import { apiCaSecretStore } from './kube-adapters.ts';
import type { IssuingCa } from './workload-ca.ts';
import { CA_RELOAD_INTERVAL_MS, ReloadableCa } from './ca-reload.ts';
import { errorText } from '../lib/error-text.ts';

const CONTROLLER_CERT_HOURS = 24;

export interface MeshCaOptions {
  readonly api: KubeApi;
  readonly log: Logger;
  readonly namespace: string;
  readonly trustDomain: string;
}

/** The mesh CA; retries (1 s doubling to 30 s) until it is loaded or `signal` aborts (then undefined). */
export async function loadMeshCa(
  options: MeshCaOptions,
  signal: AbortSignal,
): Promise<ReloadableCa | undefined> {
  const backoff = new Backoff({ initialMs: 1000, maxMs: 30_000, jitter: 0 });
  while (!signal.aborted) {
    try {
      const store = apiCaSecretStore(options.api);
      const result = await loadOrCreateCaSecret(store, {
        namespace: options.namespace,
        trustDomain: options.trustDomain,
      });
      options.log.info(result.created ? 'mesh CA created' : 'mesh CA loaded', {
        secret: `${options.namespace}/${CA_SECRET_NAME}`,
        notAfter: result.issuer.ca.cert.validToDate.toISOString(),
      });
      return new ReloadableCa(result, store, {
        namespace: options.namespace,
        trustDomain: options.trustDomain,
      });
    } catch (error) {
      const delay = backoff.next();
      options.log.error('mesh CA unavailable; retrying', { error: describeApiError(error), retryMs: delay });
      await new Promise((resolve) => setTimeout(resolve, delay).unref());
    }
  }
  return undefined;
}

/**
 * Reads the CA Secret again when told (`reloadNow`: the controller's Secret informer saw it change) and
 * every intervalMs in case an event was missed, until `signal` aborts; `changed` runs after each reload that
 * swapped the CA (a rotation step: docs/operations.md). A Secret that does not load is reported and the CA
 * in use kept; an API error is retried at the next tick. A reload asked for while one runs follows it.
 */
export function watchMeshCa(
  ca: ReloadableCa,
  options: {
    log: Logger;
    signal: AbortSignal;
    changed: () => void;
    intervalMs?: number;
  },
): { reloadNow(): void } {
  const { log, signal } = options;
  let busy = false;
  let again = false;
  const reloadNow = (): void => {
    if (signal.aborted) return;
    if (busy) return void (again = true);
    busy = true;
    void ca
      .reload()
      .then(
        (r) => {
          if (r.outcome === 'kept')
            log.error('mesh CA Secret not loaded; keeping the CA in use', { error: r.error });
          if (r.outcome !== 'reloaded') return;
          log.info('mesh CA reloaded', {
            signerChanged: r.signerChanged,
            bundleChanged: r.bundleChanged,
            notAfter: ca.ca.cert.validToDate.toISOString(),
          });
          options.changed();
        },
        (error: unknown) => log.warn('mesh CA Secret not read', { error: describeApiError(error) }),
      )
      .finally(() => {
        busy = false;
        if (again) {
          again = false;
          reloadNow();
        }
      });
  };
  const timer = setInterval(reloadNow, options.intervalMs ?? CA_RELOAD_INTERVAL_MS);
  timer.unref();
  signal.addEventListener('abort', () => clearInterval(timer), { once: true });
  return { reloadNow };
}

/** The controller's own SPIFFE identity (its service account), for the config port's TLS. */
export class ControllerIdentity {
  readonly #issuer: IssuingCa;
  readonly #namespace: string;
  readonly #log: Logger;
  #renewTimer: NodeJS.Timeout | undefined;
  #credentials: MeshTlsCredentials | undefined;
  #identity: Identity | undefined;

  constructor(issuer: IssuingCa, namespace: string, log: Logger) {
    this.#issuer = issuer;
    this.#namespace = namespace;
    this.#log = log;
  }

  /** Issues the first certificate and keeps the returned credentials renewed until stop(). */
  async start(): Promise<{ identity: Identity; credentials: MeshTlsCredentials }> {
    const identity = await this.#issue();
    const credentials = new MeshTlsCredentials(identity);
    this.#credentials = credentials;
    this.#scheduleRenewal(credentials, identity);
    return { identity, credentials };
  }

  stop(): void {
    clearTimeout(this.#renewTimer);
  }

  /** The CA changed: a certificate from it and its bundle now, instead of at the usual renewal time. */
  renewNow(): void {
    if (!this.#credentials || !this.#identity) return;
    clearTimeout(this.#renewTimer);
    this.#scheduleRenewal(this.#credentials, this.#identity, 0);
  }

  async #issue(): Promise<Identity> {
    const issuer = this.#issuer.snapshot?.() ?? this.#issuer;
    const keys = await generateKeyPair();
    const spiffeId = workloadSpiffeId({
      trustDomain: issuer.ca.trustDomain,
      namespace: this.#namespace,
      serviceAccount: CONTROLLER_SERVICE_ACCOUNT,
    });
    const leaf = await issueWorkloadCert({
      ca: issuer.ca,
      spiffeId,
      publicKey: keys.publicKey,
      dnsNames: [`${CONTROLLER_SERVICE_ACCOUNT}.${this.#namespace}.svc`],
      validityHours: CONTROLLER_CERT_HOURS,
    });
    return parseIdentity({
      certPem: leaf + issuer.chainPem,
      keyPem: await privateKeyToPem(keys.privateKey),
      bundlePem: issuer.trustBundlePem,
    });
  }

  #scheduleRenewal(credentials: MeshTlsCredentials, identity: Identity, now?: 0): void {
    this.#identity = identity;
    const delay =
      now ?? Math.max(1000, renewAt(identity.notBefore, identity.notAfter).getTime() - Date.now());
    this.#renewTimer = setTimeout(
      () => {
        void this.#issue().then(
          (next) => {
            credentials.update(next);
            this.#log.info('controller certificate renewed', { notAfter: next.notAfter.toISOString() });
            this.#scheduleRenewal(credentials, next);
          },
          (error: unknown) => {
            this.#log.error('controller certificate renewal failed', { error: errorText(error) });
            this.#scheduleRenewal(credentials, identity);
          },
        );
      },
      Math.min(delay, 2 ** 31 - 1),
    );
    this.#renewTimer.unref();
  }
}
