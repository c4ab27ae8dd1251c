// GET requests to the API server with @kubernetes/client-node's KubeConfig supplying the address, TLS
// material and credentials (KubeConfig.applyToHTTPSOptions runs its authenticators on every call, so a
// rotated service-account token or a refreshed exec/OIDC credential is picked up by the next request).
// The transport is node:http(s), so the caller owns each request: it can abort it at any time, before or
// after the response headers, and nothing of it outlives the abort.

import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { asStatus, describeStatus, type ApiStatus } from './watch-protocol.ts';

/** A failed API request; the message is one line. `status.code` is the HTTP status when there was one. */
export class KubeApiError extends Error {
  override name = 'KubeApiError';
  readonly status: ApiStatus;

  constructor(message: string, status: ApiStatus = {}) {
    super(message);
    this.status = status;
  }
}

export type Query = Readonly<Record<string, string | number | boolean | undefined>>;

const USER_AGENT = 'sluice-controller';
const ERROR_BODY_LIMIT = 64 * 1024;
const KEEPALIVE_MS = 30_000;

/** The first line of an error's message, with its system error code ("aborted (ECONNRESET)"). */
export function errorLine(error: unknown): string {
  const text = (error instanceof Error ? error.message : String(error)).split('\n', 1)[0]!.trim();
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && !text.includes(code) ? `${text} (${code})` : text;
}

/** The server URL may carry a path prefix (API proxies): the request path is appended to it. */
export function requestUrl(server: string, path: string, query: Query): URL {
  const url = new URL(server.replace(/\/+$/, '') + path);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) url.searchParams.set(key, String(value));
  }
  return url;
}

/** Sends a GET and resolves with the response (any status) once its headers arrive. */
export async function openGet(
  kubeConfig: KubeConfig,
  path: string,
  query: Query,
  signal: AbortSignal,
): Promise<IncomingMessage> {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new KubeApiError('the kubeconfig has no current cluster');
  const url = requestUrl(cluster.server, path, query);
  const options: https.RequestOptions = {};
  try {
    await kubeConfig.applyToHTTPSOptions(options);
  } catch (error) {
    throw new KubeApiError(`credentials for ${cluster.server}: ${errorLine(error)}`);
  }
  signal.throwIfAborted();
  const headers: OutgoingHttpHeaders = {
    ...(options.headers as OutgoingHttpHeaders | undefined),
    Accept: 'application/json',
    'User-Agent': USER_AGENT,
  };
  const client = url.protocol === 'http:' ? http : https;
  return new Promise((resolve, reject) => {
    const req = client.request(url, { ...options, method: 'GET', headers, signal });
    // TCP keepalive keeps NAT and load-balancer mappings of a quiet watch from expiring, and lets the
    // kernel notice a peer that vanished.
    req.once('socket', (socket) => socket.setKeepAlive(true, KEEPALIVE_MS));
    req.once('response', resolve);
    // Stays attached for the request's life: errors after the response (a reset mid-stream) surface on
    // the response stream, and this keeps them from ever being unhandled here.
    req.on('error', (error) => reject(new KubeApiError(`GET ${path}: ${errorLine(error)}`)));
    req.end();
  });
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

/** GET a JSON document; non-2xx responses and unreadable bodies are KubeApiErrors. */
export async function getJson(
  kubeConfig: KubeConfig,
  path: string,
  query: Query,
  options: { readonly signal: AbortSignal; readonly maxBytes: number },
): Promise<unknown> {
  const res = await openGet(kubeConfig, path, query, options.signal);
  const code = res.statusCode ?? 0;
  if (code < 200 || code > 299) throw await responseError(res, `GET ${path}`);
  let text: string;
  try {
    text = await readBody(res, options.maxBytes);
  } catch (error) {
    throw new KubeApiError(`GET ${path}: ${errorLine(error)}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new KubeApiError(`GET ${path}: the response is not JSON`);
  }
}
