// The controller's config endpoint (ADR 0005): GET /v1/config over HTTP/2 with mutual TLS, answered with the
// NDJSON stream of the caller's namespace scope. The namespace comes only from the client certificate's
// SPIFFE ID (spiffe://<trust domain>/ns/<namespace>/sa/<service account>).
import http2 from 'node:http2';
import { HttpServerDuration } from '../lib/prometheus-text.ts';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { authenticatePeer } from '../pki/peer-identity.ts';
import type { WorkloadIdentity } from '../pki/spiffe-id.ts';
import type { MeshTlsCredentials } from '../pki/tls-options.ts';
import type { ConfigHub, ConfigSubscriber } from './config-hub.ts';
import {
  CONFIG_CONTENT_TYPE,
  CONFIG_PATH,
  CONFIG_PORT,
  PING_LINE,
  trustFrameLine,
} from '../protocol/config-protocol.ts';

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS, NGHTTP2_CANCEL } = http2.constants;

export interface ConfigServerOptions {
  hub: ConfigHub;
  /** The controller's identity; its bundle is the trust bundle client certificates must chain to. */
  credentials: MeshTlsCredentials;
  /** Clients must be workloads of this trust domain; default: the controller's own. */
  trustDomain?: string;
  /** Default 15012; 0 picks a free port. */
  port?: number;
  /** Default "::". */
  host?: string;
  /** A ping frame goes to every stream this often; default 15 s. */
  pingIntervalMs?: number;
  /** How long close() lets streams end cleanly before cutting sessions; default 2 s. */
  closeTimeoutMs?: number;
  log?: (message: string) => void;
  /**
   * More endpoints on the same server, by path (the CA's POST /v1/certificate). They authenticate their
   * callers themselves, so with any of them TLS also admits clients without a trusted certificate (a
   * workload asking for its first one has none); GET /v1/config still requires one (authenticatePeer
   * checks that the chain was verified).
   */
  routes?: ReadonlyMap<string, RouteHandler>;
  /**
   * A Gateway's proxies get that Gateway's config (gateway-feed.ts) instead of their namespace's: returns
   * the subscribe function for a peer that runs as a Gateway's service account, undefined for the others.
   */
  gatewayFeed?: (peer: WorkloadIdentity) => ((sub: ConfigSubscriber) => () => void) | undefined;
  /**
   * The mesh trust bundle and the signing CA's certificate (PEM), sent first on every stream and again by
   * publishTrust() (CA rotation: proxies swap their TLS trust without waiting for the mounted ConfigMap).
   */
  trust?: () => { bundle: string; signer: string };
}

export type RouteHandler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;

interface OpenStream {
  stream: http2.ServerHttp2Stream;
  writer: PacedWriter;
  unsubscribe: () => void;
}

/**
 * Most bytes handed to a stream at once (see PacedWriter): about one TLS record. 32 KiB pieces kept 15-30 MiB
 * more per 1,000 streams and cost as much CPU.
 */
const PIECE_BYTES = 16 * 1024;

/**
 * Hands a stream's frames to HTTP/2 at most PIECE_BYTES at a time, the next piece once the previous one
 * has been written to the socket. Node's TLS layer keeps memory for the largest burst of ciphertext it
 * ever buffered for a connection until the connection closes; written whole, a snapshot bursts as far as
 * the peer's flow-control window (64 KiB), which cost 1,000 streams 60-100 MiB of RSS in
 * bench/config-fanout.ts. The price is CPU when much is sent (1,000 snapshots or a delta of every route:
 * 20-60 % more); small deltas cost the same. The queue holds the hub's shared Buffers (and views of them),
 * not copies.
 */
class PacedWriter {
  readonly #stream: http2.ServerHttp2Stream;
  readonly #queue: Buffer[] = [];
  /** Bytes of #queue[0] already handed to the stream. */
  #offset = 0;
  /** Bytes queued here, not yet handed to the stream. */
  #queued = 0;
  #writing = false;
  #ending = false;

  constructor(stream: http2.ServerHttp2Stream) {
    this.#stream = stream;
  }

  /** Frames queued here or in the stream, not yet taken by the socket. */
  get bufferedBytes(): number {
    return this.#queued + this.#stream.writableLength;
  }

  write(frame: Buffer): void {
    if (this.#ending || frame.length === 0 || this.#gone()) return;
    this.#queue.push(frame);
    this.#queued += frame.length;
    this.#pump();
  }

  /** Ends the stream once everything queued is written. */
  end(): void {
    this.#ending = true;
    this.#pump();
  }

  /** Forgets what is queued (the stream is being reset or has closed). */
  discard(): void {
    this.#queue.length = 0;
    this.#offset = 0;
    this.#queued = 0;
  }

  #gone(): boolean {
    return this.#stream.destroyed || this.#stream.closed;
  }

  readonly #pump = (): void => {
    if (this.#writing) return;
    if (this.#gone()) return this.discard();
    let budget = PIECE_BYTES;
    let last: Buffer | undefined;
    while (budget > 0 && this.#queue.length > 0) {
      const head = this.#queue[0]!;
      const end = Math.min(head.length, this.#offset + budget);
      if (last) this.#stream.write(last);
      last = this.#offset === 0 && end === head.length ? head : head.subarray(this.#offset, end);
      budget -= end - this.#offset;
      this.#queued -= end - this.#offset;
      if (end === head.length) {
        this.#queue.shift();
        this.#offset = 0;
      } else {
        this.#offset = end;
      }
    }
    if (last) {
      this.#writing = true;
      this.#stream.write(last, this.#written);
    } else if (this.#ending && !this.#gone() && !this.#stream.writableEnded) {
      this.#stream.end();
    }
  };

  readonly #written = (err?: Error | null): void => {
    this.#writing = false;
    if (err) return this.discard();
    this.#pump();
  };
}

function reply(stream: http2.ServerHttp2Stream, status: number, text: string, extra = {}): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond({ [HTTP2_HEADER_STATUS]: status, 'content-type': 'text/plain', ...extra });
  stream.end(`${text}\n`);
}

export class ConfigServer {
  readonly #o: ConfigServerOptions;
  readonly #server: http2.Http2SecureServer;
  readonly #open = new Set<OpenStream>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  #ping: NodeJS.Timeout | undefined;
  #trustLine: Buffer | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: ConfigServerOptions) {
    this.#o = options;
    this.#server = http2.createSecureServer({
      ...options.credentials.serverOptions({ alpnProtocols: ['h2'] }),
      ...(options.routes?.size ? { rejectUnauthorized: false } : {}),
      allowHTTP1: false,
      // A sidecar needs one stream; more from one connection only multiply snapshots.
      settings: { maxConcurrentStreams: 8 },
    });
    options.credentials.track(this.#server);
    this.#server.on('session', (session) => {
      this.#sessions.add(session);
      session.on('error', () => undefined);
      session.once('close', () => this.#sessions.delete(session));
    });
    this.#server.on('stream', (stream, headers) => this.#onStream(stream, headers));
    // Failed handshakes (unknown CA, no client certificate) are the client's problem; nothing to do here.
    this.#server.on('tlsClientError', () => undefined);
  }

  async listen(): Promise<number> {
    const server = this.#server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#o.port ?? CONFIG_PORT, this.#o.host ?? '::', () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err: Error) => this.#o.log?.(`config server: ${err.message}`));
    const interval = this.#o.pingIntervalMs ?? 15_000;
    this.#ping = setInterval(() => {
      for (const s of this.#open) s.writer.write(PING_LINE);
    }, interval);
    this.#ping.unref();
    return this.port;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /**
   * OTel http.server.request.duration of every stream, by route template: a config stream lasts as long as
   * its subscriber stays (hours, in the +Inf bucket); certificate requests take milliseconds.
   */
  readonly durations = new HttpServerDuration();

  #timed(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const started = performance.now();
    const rawPath = headers[HTTP2_HEADER_PATH];
    const path = typeof rawPath === 'string' ? rawPath.split('?')[0] : '';
    const route = path === CONFIG_PATH || this.#o.routes?.has(path!) ? path! : 'other';
    const method = headers[HTTP2_HEADER_METHOD];
    stream.once('close', () => {
      const sent = stream.sentHeaders as http2.OutgoingHttpHeaders | undefined;
      const status = Number(sent?.[HTTP2_HEADER_STATUS] ?? 0);
      this.durations.observe(
        typeof method === 'string' ? method : undefined,
        route,
        status,
        (performance.now() - started) / 1000,
      );
    });
  }

  /** Sends the current trust (options.trust) to every open stream, if it changed since the last time. */
  publishTrust(): void {
    const before = this.#trustLine;
    const line = this.#currentTrustLine();
    if (!line || (before && line.equals(before))) return;
    for (const s of this.#open) s.writer.write(line);
  }

  #currentTrustLine(): Buffer | undefined {
    const trust = this.#o.trust?.();
    if (!trust) return undefined;
    const line = trustFrameLine(trust.bundle, trust.signer);
    if (!this.#trustLine?.equals(line)) this.#trustLine = line;
    return this.#trustLine;
  }

  /** Streams open now. */
  get streams(): number {
    return this.#open.size;
  }

  #onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    this.#timed(stream, headers);
    if (this.#closing) return reply(stream, 503, 'controller shutting down');
    const rawPath = headers[HTTP2_HEADER_PATH];
    const path = typeof rawPath === 'string' ? rawPath.split('?')[0] : undefined;
    const route = path === undefined ? undefined : this.#o.routes?.get(path);
    if (route) return route(stream, headers);
    if (path !== CONFIG_PATH) return reply(stream, 404, `not found: the config stream is GET ${CONFIG_PATH}`);
    if (headers[HTTP2_HEADER_METHOD] !== 'GET') {
      return reply(stream, 405, 'method not allowed: use GET', { allow: 'GET' });
    }
    let peer: WorkloadIdentity;
    try {
      const trustDomain = this.#o.trustDomain ?? this.#o.credentials.identity.trustDomain;
      peer = authenticatePeer(stream.session!.socket as TLSSocket, trustDomain);
    } catch (err) {
      return reply(stream, 403, `forbidden: ${(err as Error).message.replace(/[\r\n]+/g, ' ')}`);
    }
    const namespace = peer.namespace;
    const hub = this.#o.hub;
    if (!hub.synced) return reply(stream, 503, 'controller has not synced yet', { 'retry-after': '1' });
    stream.respond({
      [HTTP2_HEADER_STATUS]: 200,
      'content-type': CONFIG_CONTENT_TYPE,
      'cache-control': 'no-store',
    });
    const writer = new PacedWriter(stream);
    const trust = this.#currentTrustLine();
    if (trust) writer.write(trust);
    const subscriber: ConfigSubscriber = {
      namespace,
      write: (frame) => writer.write(frame),
      bufferedBytes: () => writer.bufferedBytes,
      drop: (reason) => {
        this.#o.log?.(`config stream for namespace ${namespace} dropped: ${reason}`);
        writer.discard();
        stream.close(NGHTTP2_CANCEL);
      },
    };
    let unsubscribe: () => void;
    try {
      const gateway = this.#o.gatewayFeed?.(peer);
      unsubscribe = gateway ? gateway(subscriber) : hub.subscribe(subscriber);
    } catch (err) {
      stream.close(NGHTTP2_CANCEL);
      this.#o.log?.(`config stream for namespace ${namespace} refused: ${(err as Error).message}`);
      return;
    }
    const open: OpenStream = { stream, writer, unsubscribe };
    this.#open.add(open);
    stream.once('close', () => {
      this.#open.delete(open);
      writer.discard();
      unsubscribe();
    });
  }

  /**
   * Graceful close: no new connections, every open stream is ended (the sidecars keep their views and
   * reconnect, to another replica or to this one after a restart), sessions get closeTimeoutMs to finish.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#ping);
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      for (const { writer, unsubscribe } of this.#open) {
        unsubscribe();
        writer.end();
      }
      for (const session of this.#sessions) session.close();
      const timeout = new Promise<void>((resolve) =>
        setTimeout(resolve, this.#o.closeTimeoutMs ?? 2000).unref(),
      );
      await Promise.race([closed, timeout]);
      for (const session of this.#sessions) session.destroy();
      await closed;
    })();
    return this.#closing;
  }
}
