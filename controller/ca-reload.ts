// CA rotation without restarts (docs/operations.md, "Rotating the mesh CA"): the controller reads the CA
// Secret again on a timer and, when it changed, signs with what it now holds and hands out its trust
// bundle. A Secret that does not load keeps the CA in use (and is reported), so a typo never stops issuing.
import { isRecord } from '../lib/is-record.ts';
import { CA_SECRET_KEYS, CA_SECRET_NAME, loadCaSecret, type CaSecretStore } from './ca-root-secret.ts';
import type { IssuingCa } from './workload-ca.ts';

export const CA_RELOAD_INTERVAL_MS = 30_000;

/** What of a Secret decides the CA: its three keys, as stored. */
function fingerprint(secret: unknown): string {
  const data = isRecord(secret) && isRecord(secret.data) ? secret.data : {};
  return JSON.stringify([CA_SECRET_KEYS.cert, CA_SECRET_KEYS.key, CA_SECRET_KEYS.bundle].map((k) => data[k]));
}

export type ReloadResult =
  | { readonly outcome: 'unchanged' }
  | { readonly outcome: 'reloaded'; readonly signerChanged: boolean; readonly bundleChanged: boolean }
  | { readonly outcome: 'kept'; readonly error: string };

/**
 * The mesh CA as the Secret says now. Its fields always come from one loaded Secret (they are swapped
 * together), so a reader sees the signer, chain and bundle of the same version.
 */
export class ReloadableCa implements IssuingCa {
  #current: IssuingCa;
  #fingerprint: string;
  readonly #store: CaSecretStore;
  readonly #params: { namespace: string; name: string; trustDomain: string; now?: () => Date };

  constructor(
    initial: { issuer: IssuingCa; secret: unknown },
    store: CaSecretStore,
    params: { namespace: string; name?: string; trustDomain: string; now?: () => Date },
  ) {
    this.#current = initial.issuer;
    this.#fingerprint = fingerprint(initial.secret);
    this.#store = store;
    this.#params = { ...params, name: params.name ?? CA_SECRET_NAME };
  }

  get ca(): IssuingCa['ca'] {
    return this.#current.ca;
  }
  get chainPem(): string {
    return this.#current.chainPem;
  }
  get trustBundlePem(): string {
    return this.#current.trustBundlePem;
  }
  /** The issuer of this moment, for a caller that reads several fields across an await. */
  snapshot(): IssuingCa {
    return this.#current;
  }

  /** Reads the Secret; swaps the CA when its keys changed and load. API errors reject. */
  async reload(): Promise<ReloadResult> {
    const { namespace, name, trustDomain, now } = this.#params;
    const secret = await this.#store.get(namespace, name);
    if (secret === undefined) return { outcome: 'kept', error: `Secret ${namespace}/${name} is gone` };
    const print = fingerprint(secret);
    if (print === this.#fingerprint) return { outcome: 'unchanged' };
    let next: IssuingCa;
    try {
      next = await loadCaSecret(secret, { trustDomain, ...(now ? { now: now() } : {}) });
    } catch (err) {
      return { outcome: 'kept', error: (err as Error).message };
    }
    const before = this.#current;
    this.#current = next;
    this.#fingerprint = print;
    return {
      outcome: 'reloaded',
      signerChanged: !before.ca.cert.raw.equals(next.ca.cert.raw),
      bundleChanged: before.trustBundlePem !== next.trustBundlePem,
    };
  }
}
