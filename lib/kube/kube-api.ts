// Requests to the Kubernetes API server over node:http(s): JSON in and out, one keep-alive connection pool,
// credentials asked for on every request (a rotated token is used by the next one), and every request
// the caller's to abort, before or after the response headers.
//
// Decision (ADR 0007): the controller and the injector talk to the API server through this module, not
// @kubernetes/client-node. Loading client-node costs a Node process about 67 MiB of RSS (24 MiB of JS
// heap for its thousands of generated modules, measured on Node 24) before a request is made, and its
// typed clients open a new TLS connection for every request. What the daemons need is small: GET,
// list+watch, create, replace, merge-patch and status of a handful of kinds, with a kubeconfig or the
// pod's service account (kube-config.ts).
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { asStatus, describeStatus, type ApiStatus } from './watch-protocol.ts';
import type { CredentialSource } from './kube-credentials.ts';

/** A failed API request; the message is one line. `status.code` is the HTTP status when there was one. */
export class KubeApiError extends Error {
  override name = 'KubeApiError';
  readonly status: ApiStatus;

  constructor(message: string, status: ApiStatus = {}) {
    super(message);
    this.status = status;
  }
}

/** The HTTP status of a failed API request; undefined when it never got an answer. */
export function apiStatus(error: unknown): number | undefined {
  return error instanceof KubeApiError ? error.status.code : undefined;
}

export type Query = Readonly<Record<string, string | number | boolean | undefined>>;

/** What one request authenticates with: headers (a bearer token), or a client certificate. */
export interface Credentials {
  readonly authorization?: string;
  readonly certPem?: string;
  readonly keyPem?: string;
}

export interface KubeApiOptions {
  /** https://host:port, possibly with a path prefix (API proxies). */
  readonly server: string;
  readonly caPem?: string;
  readonly tlsServerName?: string;
  readonly insecureSkipTlsVerify?: boolean;
  /**
   * Asked for every request; may cache (a token file) or run a plugin (exec credentials). When the API
   * server answers 401 and the source's `rejected` says fresh credentials may differ, the request is sent
   * once more with them.
   */
  readonly credentials: CredentialSource;
  readonly userAgent?: string;
}

export interface RequestOptions {
  readonly query?: Query;
  /** Sent as JSON. */
  readonly body?: unknown;
  /** Content-Type of the body (application/json, or a patch type). */
  readonly contentType?: string;
  readonly signal?: AbortSignal;
  /** The whole request, response body included. */
  readonly timeoutMs?: number;
  /** Largest response body accepted (default 64 MiB). */
  readonly maxBytes?: number;
}

export const MERGE_PATCH = 'application/merge-patch+json';
export const JSON_PATCH = 'application/json-patch+json';

const ERROR_BODY_LIMIT = 64 * 1024;
const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
const KEEPALIVE_MS = 30_000;
/** An Agent replaced by a client certificate rotation is destroyed this much later (watches end by then). */
const RETIRED_AGENT_MS = 10 * 60_000;

/** The first line of an error's message, with its system error code ("aborted (ECONNRESET)"). */
export function errorLine(error: unknown): string {
  const text = (error instanceof Error ? error.message : String(error)).split('\n', 1)[0]!.trim();
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && !text.includes(code) ? `${text} (${code})` : text;
}

/** The server URL may carry a path prefix (API proxies): the request path is appended to it. */
export function requestUrl(server: string, path: string, query: Query = {}): URL {
  const url = new URL(server.replace(/\/+$/, '') + path);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) url.searchParams.set(key, String(value));
  }
  return url;
}

/** The whole body as text; fails beyond `maxBytes`. */
export async function readBody(res: IncomingMessage, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      res.destroy();
      throw new KubeApiError(`response larger than ${maxBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The error for a non-2xx response, from the Status the API server puts in the body. */
export async function responseError(res: IncomingMessage, what: string): Promise<KubeApiError> {
  const code = res.statusCode ?? 0;
  let status: ApiStatus = {};
  try {
    status = asStatus(JSON.parse(await readBody(res, ERROR_BODY_LIMIT)));
  } catch {
    // Not a Status (a proxy's HTML page, a cut-off body): the HTTP status line is all there is.
  }
  const merged: ApiStatus = {
    ...status,
    code,
    ...(status.reason ? {} : { reason: res.statusMessage ?? '' }),
  };
  return new KubeApiError(`${what}: ${describeStatus(merged, `HTTP ${code}`)}`, merged);
}

function combinedSignal(
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
): AbortSignal | undefined {
  if (timeoutMs === undefined) return signal;
  const timeout = AbortSignal.timeout(timeoutMs);
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}

export class KubeApi {
  readonly server: string;
  readonly #o: KubeApiOptions;
  readonly #plain: boolean;
  #agent: http.Agent | undefined;
  /** The credentials the Agent's TLS context was built with (their client certificate, if any). */
  #agentCredentials: Credentials | undefined;

  constructor(options: KubeApiOptions) {
    this.#o = options;
    this.server = options.server;
    this.#plain = new URL(options.server).protocol === 'http:';
  }

  /** Sends a request and resolves with the response (any status) once its headers arrive. */
  async open(method: string, path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    const signal = combinedSignal(options.signal, options.timeoutMs);
    const credentials = await this.#credentials();
    const res = await this.#send(method, path, options, signal, credentials);
    if (res.statusCode !== 401 || this.#o.credentials.rejected?.(credentials) !== true) return res;
    res.resume();
    return this.#send(method, path, options, signal, await this.#credentials());
  }

  async #credentials(): Promise<Credentials> {
    try {
      return await this.#o.credentials();
    } catch (error) {
      throw new KubeApiError(`credentials for ${this.server}: ${errorLine(error)}`);
    }
  }

  #send(
    method: string,
    path: string,
    options: RequestOptions,
    signal: AbortSignal | undefined,
    credentials: Credentials,
  ): Promise<IncomingMessage> {
    const what = `${method} ${path}`;
    signal?.throwIfAborted();
    const url = requestUrl(this.server, path, options.query);
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const headers: OutgoingHttpHeaders = {
      Accept: 'application/json',
      'User-Agent': this.#o.userAgent ?? 'sluice',
      ...(credentials.authorization ? { Authorization: credentials.authorization } : {}),
      ...(body === undefined
        ? {}
        : {
            'Content-Type': options.contentType ?? 'application/json',
            'Content-Length': Buffer.byteLength(body),
          }),
    };
    const agent = this.#agentFor(credentials);
    const client = this.#plain ? http : https;
    return new Promise((resolve, reject) => {
      const req = client.request(url, { method, headers, agent, ...(signal ? { signal } : {}) });
      // TCP keepalive keeps NAT and load-balancer mappings of a quiet watch from expiring, and lets the
      // kernel notice a peer that vanished.
      req.once('socket', (socket) => socket.setKeepAlive(true, KEEPALIVE_MS));
      req.once('response', resolve);
      // Stays attached for the request's life: errors after the response (a reset mid-stream) surface on
      // the response stream, and this keeps them from ever being unhandled here.
      req.on('error', (error) => reject(new KubeApiError(`${what}: ${describeCause(error, signal)}`)));
      req.end(body);
    });
  }

  /** A JSON request; non-2xx responses and unreadable bodies are KubeApiErrors. */
  async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const what = `${method} ${path}`;
    const res = await this.open(method, path, options);
    const code = res.statusCode ?? 0;
    if (code < 200 || code > 299) throw await responseError(res, what);
    let text: string;
    try {
      text = await readBody(res, options.maxBytes ?? DEFAULT_MAX_BYTES);
    } catch (error) {
      throw error instanceof KubeApiError ? error : new KubeApiError(`${what}: ${errorLine(error)}`);
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new KubeApiError(`${what}: the response is not JSON`);
    }
  }

  /** What the next request authenticates with. */
  credentials(): Promise<Credentials> {
    return this.#o.credentials();
  }

  /** The same credentials and TLS settings against another address (a relay, a proxy in tests). */
  withServer(server: string): KubeApi {
    return new KubeApi({ ...this.#o, server });
  }

  /** Closes every connection; requests still in flight fail. */
  close(): void {
    this.#agent?.destroy();
    this.#agent = undefined;
  }

  #agentFor(credentials: Credentials): http.Agent {
    const built = this.#agentCredentials;
    if (this.#agent && built?.certPem === credentials.certPem && built?.keyPem === credentials.keyPem) {
      return this.#agent;
    }
    const retired = this.#agent;
    if (retired) setTimeout(() => retired.destroy(), RETIRED_AGENT_MS).unref();
    this.#agentCredentials = credentials;
    if (this.#plain) {
      this.#agent = new http.Agent({ keepAlive: true });
    } else {
      // One TLS context for every connection (an Agent given ca/cert/key builds one per connection).
      const secureContext = tls.createSecureContext({
        ...(this.#o.caPem === undefined ? {} : { ca: this.#o.caPem }),
        ...(credentials.certPem === undefined ? {} : { cert: credentials.certPem, key: credentials.keyPem }),
      });
      this.#agent = new https.Agent({
        keepAlive: true,
        secureContext,
        rejectUnauthorized: this.#o.insecureSkipTlsVerify !== true,
        ...(this.#o.tlsServerName === undefined ? {} : { servername: this.#o.tlsServerName }),
      });
    }
    return this.#agent;
  }
}

function describeCause(error: Error, signal: AbortSignal | undefined): string {
  if (signal?.aborted && signal.reason instanceof Error && signal.reason.name === 'TimeoutError') {
    return 'request timed out';
  }
  return errorLine(error);
}

/** One line saying why an API call failed (HTTP status and the API server's message, or the local cause). */
export function describeApiError(error: unknown): string {
  if (error instanceof KubeApiError) return error.message;
  if (error instanceof Error) {
    if (error.name === 'TimeoutError') return 'request timed out';
    if (error.name === 'AbortError') return 'request aborted';
    return errorLine(error);
  }
  return String(error);
}

/** The call's result, or `otherwise` when it failed with one of `statuses` (404 on a get, 409 on a create). */
export async function unlessStatus<T>(
  call: Promise<T>,
  statuses: readonly number[],
  otherwise: T,
): Promise<T> {
  try {
    return await call;
  } catch (error) {
    const status = apiStatus(error);
    if (status !== undefined && statuses.includes(status)) return otherwise;
    throw error;
  }
}
