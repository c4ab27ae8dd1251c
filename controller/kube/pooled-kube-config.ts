// A KubeConfig whose typed API clients share one connection pool.
//
// client-node 2.0.1 gives every request of a typed API client (makeApiClient) a new undici Agent
// (KubeConfig.applySecurityAuthentication → createDispatcher), so every call opens a new TLS connection
// with a new OpenSSL context, and the idle connection lingers until undici's keep-alive timeout. At the
// status writer's 50 writes a second (a GET and a PATCH each) the controller's RSS grew by about 100 MiB
// (measured with 1,001 routes), almost all of it native memory V8 never sees, and the API server paid a
// handshake per call. Here every request after the first gets the Agent of the first; it is replaced by a
// fresh one every few minutes, so rotated TLS material (a new CA bundle or client certificate) is picked
// up. Credentials in headers (tokens) are still read for every request.
import { KubeConfig, type RequestContext } from '@kubernetes/client-node';

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/** How long one Agent serves requests before the next fresh one takes over. */
export const POOL_REFRESH_MS = 5 * 60_000;
/** A replaced Agent is closed this much later: a request may hold it between auth and dispatch. */
const CLOSE_DELAY_MS = 60_000;

export class PooledKubeConfig extends KubeConfig {
  readonly #refreshMs: number;
  #pool: Dispatcher | undefined;
  #since = 0;

  constructor(refreshMs = POOL_REFRESH_MS) {
    super();
    this.#refreshMs = refreshMs;
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const fresh = context.getDispatcher();
    // None for plain http: fetch's global dispatcher pools connections already.
    if (fresh === undefined) return;
    const now = performance.now();
    if (this.#pool !== undefined && now - this.#since < this.#refreshMs) {
      context.setDispatcher(this.#pool);
      return;
    }
    const replaced = this.#pool;
    this.#pool = fresh;
    this.#since = now;
    if (replaced !== undefined) {
      // close() lets requests in flight finish; failures of a connection being closed do not matter.
      setTimeout(() => void replaced.close().catch(() => undefined), CLOSE_DELAY_MS).unref();
    }
  }
}
