// The sidecar's workload identity from the controller's CA: a fresh P-256 key and CSR, POST /v1/certificate
// with the pod's projected service-account token, over TLS that checks the controller against the mounted
// trust bundle (ConfigMap sluice-ca-root) and its SPIFFE ID. Renewed at renewAt(); a failed request is
// retried with jittered exponential backoff while the current certificate stays in use until it expires.
// The token and bundle files are read again for every request: the kubelet rotates both. Without a usable
// token (file missing or empty, refused with 401/403, or not reviewable now: 503) a still valid certificate renews itself: the
// request goes without a token over a connection that presents it. The bundle file is
// also checked every bundleCheckMs: when it changed (a CA rotation step, docs/operations.md) the
// certificate is renewed soon, and with it the trust bundle the sidecar checks peers against.
// Faster: the controller's config stream carries the trust bundle and the signing CA (trust frames, fed to
// trust()): a new bundle is swapped in at once (same certificate, new roots), it is used to reach the
// controller, and a certificate the current signer did not issue is renewed within a second. The mounted
// file stays the bootstrap (first certificate, and while no stream has said anything).
import { X509Certificate } from 'node:crypto';
import http2 from 'node:http2';
import { open } from 'node:fs/promises';
import { CONFIG_PORT } from '../protocol/config-protocol.ts';
import { CERTIFICATE_PATH, renewAt } from '../protocol/certificate-protocol.ts';
import { createCsr } from '../pki/create-csr.ts';
import type { Logger } from '../lib/json-log.ts';
import { parseIdentity, type Identity } from '../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../pki/keys.ts';
import { parseSpiffeId } from '../pki/spiffe-id.ts';
import { checkServerSpiffeId } from '../pki/tls-options.ts';
import type { IdentitySource } from './proxy.ts';
import { backoffDelay } from '../lib/backoff.ts';

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS, HTTP2_HEADER_AUTHORIZATION } =
  http2.constants;
const MAX_FILE_BYTES = 64 * 1024;
const MAX_ANSWER_BYTES = 256 * 1024;
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface ControllerIdentityOptions {
  /** The controller: "host:port" or "host" (port 15012). */
  readonly address: string;
  /** The projected service-account token (audience sluice.dev/mesh). */
  readonly tokenFile: string;
  /** PEM trust bundle the controller's certificate must chain to. */
  readonly caBundleFile: string;
  /** SPIFFE ID the controller must present. */
  readonly controllerSpiffeId: string;
  readonly log: Logger;
  /** Retry backoff, doubled per failure with jitter; default 1 s to 30 s. */
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /** Deadline of one certificate request; default 15 s. */
  readonly requestTimeoutMs?: number;
  readonly random?: () => number;
  /** How often the bundle file is compared with the one last used; default 30 s. */
  readonly bundleCheckMs?: number;
}

/** What the admin endpoint shows about the identity source. */
export interface ControllerIdentityState {
  readonly address: string;
  readonly spiffeId: string | undefined;
  readonly notAfter: string | undefined;
  readonly nextRequest: string | undefined;
  readonly issued: number;
  /** Of those, renewed by presenting the current certificate (no usable token). */
  readonly renewedByCertificate: number;
  readonly failures: number;
  readonly lastError: string | undefined;
}

/**
 * When to renew a certificate asked for at `requestedAt`: at about 70 % of its life (renewAt). The CA
 * backdates notBefore by 5 minutes for clock skew; counted from there, a certificate living a few minutes
 * would be due before it arrived and be renewed again and again. Its life starts when it was asked for.
 */
export function renewalDelayMs(
  identity: { notBefore: Date; notAfter: Date },
  requestedAt: number,
  now: number,
  random?: () => number,
): number {
  const start = new Date(Math.max(identity.notBefore.getTime(), requestedAt));
  return renewAt(start, identity.notAfter, undefined, undefined, random).getTime() - now;
}

/** The authority to connect to: "https://host:port", with the default port filled in. */
export function controllerUrl(address: string): string {
  const bad = new Error(`controller address ${JSON.stringify(address)} is not host[:port]`);
  // A non-special scheme keeps an explicit :443 (https:// would drop it as the default port). Only
  // "https://" is stripped: "host.ns.svc:15012" alone would parse as a URL of scheme "host.ns.svc".
  let url: URL;
  try {
    url = new URL(`sluice://${address.replace(/^https:\/\//i, '')}`);
  } catch {
    throw bad;
  }
  if (url.protocol !== 'sluice:' || url.hostname === '' || url.username !== '') throw bad;
  if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') throw bad;
  return `https://${url.hostname}:${url.port === '' ? CONFIG_PORT : url.port}`;
}

/** Delay before retry number `attempt` (0-based): half fixed, half random, so sidecars spread out. */
export function retryDelayMs(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  // random() = 0 gives the shortest delay.
  return backoffDelay(attempt, { initialMs: minMs, maxMs, jitter: 0.5 }, () => 1 - random());
}

/**
 * A retry delay for a certificate that expires in `leftMs` (undefined: none yet): at most a tenth of the time
 * left (not below `minMs`), so that a control plane back after a long outage is asked again within seconds
 * while the certificate is still valid, not after a 30 s backoff that outlives it.
 */
export function capToLifeLeft(delayMs: number, leftMs: number | undefined, minMs: number): number {
  return leftMs === undefined ? delayMs : Math.min(delayMs, Math.max(minMs, leftMs / 10));
}

/**
 * Turns the controller's answer into an identity with our key, or a one-line reason it is not one. The
 * certificate must chain to the bundle in the answer, match the key, and be in the controller's trust domain.
 */
export function identityFromAnswer(
  status: number,
  body: string,
  keyPem: string,
  trustDomain: string,
  now = new Date(),
): Identity | string {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return `controller answered ${status} with a body that is not JSON`;
  }
  const answer = typeof value === 'object' && value !== null && !Array.isArray(value) ? value : {};
  const field = (name: string): string | undefined => {
    const v = (answer as Record<string, unknown>)[name];
    return typeof v === 'string' ? v : undefined;
  };
  if (status !== 200) {
    const why = [field('error'), field('message')].filter((s) => s).join(': ');
    return `controller answered ${status}${why ? `: ${why.split('\n', 1)[0]!.slice(0, 300)}` : ''}`;
  }
  const certPem = field('certChain');
  const bundlePem = field('trustBundle');
  if (!certPem || !bundlePem) return 'controller answer has no certChain or trustBundle';
  let identity: Identity;
  try {
    identity = parseIdentity({ certPem, keyPem, bundlePem }, now);
  } catch (err) {
    return `controller answer unusable: ${(err as Error).message}`;
  }
  if (identity.trustDomain !== trustDomain) {
    return `certificate is for trust domain ${identity.trustDomain}, expected ${trustDomain}`;
  }
  return identity;
}

/** Whether the leaf of `certPem` was signed by the CA certificate `signerPem` (false when unreadable). */
export function issuedBySigner(certPem: string, signerPem: string): boolean {
  try {
    const leaf = new X509Certificate(certPem);
    const signer = new X509Certificate(signerPem);
    return leaf.checkIssued(signer) && leaf.verify(signer.publicKey);
  } catch {
    return false;
  }
}

async function readSmallFile(path: string, what: string): Promise<string> {
  let file;
  try {
    file = await open(path, 'r');
  } catch (err) {
    throw new Error(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, {
      cause: err,
    });
  }
  try {
    if ((await file.stat()).size > MAX_FILE_BYTES) throw new Error(`${what} ${path} is too large`);
    return await file.readFile('utf8');
  } finally {
    await file.close();
  }
}

/** Keeps a workload certificate from the controller's CA current. */
export class ControllerIdentity implements IdentitySource {
  readonly name = 'controller';
  readonly #o: ControllerIdentityOptions;
  readonly #url: string;
  readonly #trustDomain: string;
  #current: Identity | undefined;
  #timer: NodeJS.Timeout | undefined;
  #nextAt: Date | undefined;
  #session: http2.ClientHttp2Session | undefined;
  #attempt = 0;
  #issued = 0;
  #renewedByCertificate = 0;
  /** The token file's text when the controller last refused it, and why. */
  #refusedToken: { token: string; why: string } | undefined;
  #failures = 0;
  #lastError: string | undefined;
  #stopped = false;
  #onRotated: ((identity: Identity) => void) | undefined;
  readonly #first: Promise<Identity>;
  #bundleTimer: NodeJS.Timeout | undefined;
  /** The bundle file's text as the last certificate request read it. */
  #bundleUsed: string | undefined;
  /** The trust bundle of the controller's last trust frame; preferred to the file once known. */
  #streamedBundle: string | undefined;
  #resolveFirst: ((identity: Identity) => void) | undefined;
  #rejectFirst: ((error: Error) => void) | undefined;

  constructor(options: ControllerIdentityOptions) {
    this.#o = options;
    this.#url = controllerUrl(options.address);
    this.#trustDomain = parseSpiffeId(options.controllerSpiffeId).trustDomain;
    this.#first = new Promise((resolve, reject) => {
      this.#resolveFirst = resolve;
      this.#rejectFirst = reject;
    });
    this.#first.catch(() => undefined); // a stop before the first certificate is not an unhandled rejection
  }

  get current(): Identity | undefined {
    return this.#current;
  }

  get state(): ControllerIdentityState {
    return {
      address: this.#url,
      spiffeId: this.#current?.spiffeId,
      notAfter: this.#current?.notAfter.toISOString(),
      nextRequest: this.#nextAt?.toISOString(),
      issued: this.#issued,
      renewedByCertificate: this.#renewedByCertificate,
      failures: this.#failures,
      lastError: this.#lastError,
    };
  }

  /**
   * Requests the first certificate (retrying until it gets one); resolves with it, rejects on stop().
   * Renewed certificates go to onRotated.
   */
  start(onRotated?: (identity: Identity) => void): Promise<Identity> {
    this.#onRotated = onRotated;
    if (this.#nextAt === undefined && !this.#stopped) this.#schedule(0);
    if (!this.#bundleTimer) {
      this.#bundleTimer = setInterval(() => void this.#checkBundle(), this.#o.bundleCheckMs ?? 30_000);
      this.#bundleTimer.unref();
    }
    return this.#first;
  }

  /** A bundle file that differs from the one of the last request: renew within a second (spread). */
  async #checkBundle(): Promise<void> {
    if (!this.#current || this.#stopped || this.#bundleUsed === undefined) return;
    let text: string;
    try {
      text = await readSmallFile(this.#o.caBundleFile, 'trust bundle file');
    } catch {
      return; // the next request reports it
    }
    if (text === this.#bundleUsed) return;
    this.#bundleUsed = text;
    const delay = Math.round((this.#o.random ?? Math.random)() * 1000);
    this.#o.log.info('trust bundle file changed; renewing the workload certificate', { inMs: delay });
    this.#schedule(delay);
  }

  /**
   * A trust frame from the config stream: the new bundle replaces the current identity's at once (the
   * proxy's servers and new client connections trust every root in it), and a certificate that the
   * signing CA did not issue is renewed within a second (spread).
   */
  trust(frame: { bundle: string; signer: string }): void {
    if (this.#stopped) return;
    this.#streamedBundle = frame.bundle;
    const current = this.#current;
    if (!current) return;
    if (current.bundlePem !== frame.bundle) {
      const next: Identity = { ...current, bundlePem: frame.bundle };
      this.#current = next;
      this.#o.log.info('trust bundle from the controller applied', { spiffeId: next.spiffeId });
      this.#onRotated?.(next);
    }
    if (!issuedBySigner(current.certPem, frame.signer)) {
      const delay = Math.round((this.#o.random ?? Math.random)() * 1000);
      this.#o.log.info('signing CA changed; renewing the workload certificate', { inMs: delay });
      this.#schedule(delay);
    }
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#bundleTimer);
    clearTimeout(this.#timer);
    this.#session?.destroy();
    this.#rejectFirst?.(new Error('stopped before a workload certificate was issued'));
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    const delay = Math.min(Math.max(0, delayMs), MAX_TIMER_MS);
    this.#nextAt = new Date(Date.now() + delay);
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#renew(), delay);
    // Before the first certificate the timer keeps the process alive; after it, the listeners do.
    if (this.#current) this.#timer.unref();
  }

  async #renew(): Promise<void> {
    const requestedAt = Date.now();
    let identity: Identity;
    try {
      identity = await this.#request();
    } catch (err) {
      if (this.#stopped) return;
      this.#failures++;
      this.#lastError = (err as Error).message;
      const minMs = this.#o.backoffMinMs ?? 1000;
      const current = this.#current;
      const delay = capToLifeLeft(
        retryDelayMs(this.#attempt++, minMs, this.#o.backoffMaxMs ?? 30_000, this.#o.random ?? Math.random),
        current && current.notAfter.getTime() - Date.now(),
        minMs,
      );
      this.#o.log.warn('workload certificate request failed', {
        error: this.#lastError,
        current: current ? (current.notAfter.getTime() > Date.now() ? 'kept' : 'expired') : 'none',
        currentNotAfter: current?.notAfter.toISOString(),
        retryMs: Math.round(delay),
      });
      this.#schedule(delay);
      return;
    }
    if (this.#stopped) return;
    this.#attempt = 0;
    this.#issued++;
    this.#lastError = undefined;
    const first = this.#current === undefined;
    this.#current = identity;
    this.#o.log.info(first ? 'workload certificate issued' : 'workload certificate renewed', {
      spiffeId: identity.spiffeId,
      notAfter: identity.notAfter.toISOString(),
    });
    this.#schedule(renewalDelayMs(identity, requestedAt, Date.now()));
    if (first) this.#resolveFirst?.(identity);
    else this.#onRotated?.(identity);
  }

  /**
   * One certificate request: with the token; without it, when the token file is missing or empty, the
   * controller refused the token (401/403) or cannot review it now (503), by presenting the current
   * certificate, if it is still valid
   * (docs/security.md, renewal by certificate).
   */
  async #request(): Promise<Identity> {
    const [token, bundlePem] = await Promise.all([
      readSmallFile(this.#o.tokenFile, 'token file').then(
        (text) => (text.trim() === '' ? new Error(`token file ${this.#o.tokenFile} is empty`) : text.trim()),
        (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
      ),
      readSmallFile(this.#o.caBundleFile, 'trust bundle file'),
    ]);
    this.#bundleUsed = bundlePem;
    const trusted = this.#streamedBundle ?? bundlePem;
    const keys = await generateKeyPair();
    const keyPem = await privateKeyToPem(keys.privateKey);
    const payload = JSON.stringify({ csr: await createCsr({ keys }) });
    const current =
      this.#current && this.#current.notAfter.getTime() > Date.now() ? this.#current : undefined;
    let refused: string | undefined;
    if (typeof token === 'string' && !(current && token === this.#refusedToken?.token)) {
      const { status, body } = await this.#post({ token }, trusted, payload);
      const result = identityFromAnswer(status, body, keyPem, this.#trustDomain);
      if (typeof result !== 'string') {
        this.#refusedToken = undefined;
        return result;
      }
      // 503: the controller cannot review tokens now (API server down); a renewal by certificate needs no
      // review, so a short-lived certificate does not run out during the outage. The token is not refused.
      if (!current || (status !== 401 && status !== 403 && status !== 503)) throw new Error(result);
      // The same token is not sent again: each refusal costs this pod's address rate-limit tokens.
      if (status !== 503) this.#refusedToken = { token, why: result };
      refused = result;
    }
    if (!current) throw typeof token === 'string' ? new Error('no current certificate') : token;
    const why =
      refused ?? (typeof token === 'string' ? (this.#refusedToken?.why ?? 'token refused') : token.message);
    this.#o.log.info('renewing the workload certificate with the current certificate', { why });
    const { status, body } = await this.#post({ certificate: current }, trusted, payload);
    const result = identityFromAnswer(status, body, keyPem, this.#trustDomain);
    if (typeof result === 'string') throw new Error(`${result} (renewal by certificate; token: ${why})`);
    this.#renewedByCertificate++;
    return result;
  }

  #post(
    auth: { token: string } | { certificate: Identity },
    bundlePem: string,
    payload: string,
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      let session: http2.ClientHttp2Session;
      try {
        session = http2.connect(this.#url, {
          ca: bundlePem,
          minVersion: 'TLSv1.3',
          checkServerIdentity: checkServerSpiffeId(this.#o.controllerSpiffeId),
          ALPNProtocols: ['h2'],
          ...('certificate' in auth ? { cert: auth.certificate.certPem, key: auth.certificate.keyPem } : {}),
        });
      } catch (err) {
        reject(new Error(`cannot connect to ${this.#url}: ${(err as Error).message}`));
        return;
      }
      this.#session = session;
      let settled = false;
      let timer: NodeJS.Timeout | undefined = undefined;
      const finish = (error: Error | undefined, answer?: { status: number; body: string }): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        session.destroy();
        if (this.#session === session) this.#session = undefined;
        if (error) reject(error);
        else resolve(answer!);
      };
      const timeoutMs = this.#o.requestTimeoutMs ?? 15_000;
      timer = setTimeout(
        () => finish(new Error(`no answer from ${this.#url} in ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
      session.on('error', (err: Error) =>
        finish(new Error(`connection to ${this.#url} failed: ${err.message}`)),
      );
      session.on('close', () => finish(new Error(`connection to ${this.#url} closed before an answer`)));
      const req = session.request({
        [HTTP2_HEADER_METHOD]: 'POST',
        [HTTP2_HEADER_PATH]: CERTIFICATE_PATH,
        ...('token' in auth ? { [HTTP2_HEADER_AUTHORIZATION]: `Bearer ${auth.token}` } : {}),
        'content-type': 'application/json',
      });
      let status = 0;
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('response', (headers) => (status = Number(headers[HTTP2_HEADER_STATUS])));
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) finish(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
        else chunks.push(chunk);
      });
      req.on('end', () => finish(undefined, { status, body: Buffer.concat(chunks).toString('utf8') }));
      req.on('error', (err: Error) => {
        const cause = err.cause instanceof Error ? err.cause : err;
        finish(new Error(`request to ${this.#url} failed: ${cause.message}`));
      });
      req.on('close', () => finish(new Error(`stream to ${this.#url} closed before an answer`)));
      req.end(payload);
    });
  }
}
