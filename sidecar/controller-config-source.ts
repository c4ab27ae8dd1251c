// The sidecar's controller ConfigSource (ADR 0005): one HTTP/2 stream over mutual TLS to the controller,
// GET /v1/config, NDJSON frames (snapshot, then deltas, pings). The objects are kept in a map and turned into
// a ProxyView with the same pure translation as the standalone mode. When the stream is lost the last good
// view stays in use while it reconnects (jittered exponential backoff).
import http2 from 'node:http2';
import type { SecureContext } from 'node:tls';
import {
  CONFIG_PATH,
  LineSplitter,
  MAX_FRAME_BYTES,
  controllerSpiffeId,
  parseFrame,
  type DeltaFrame,
  type SnapshotFrame,
  type TrustFrame,
} from '../protocol/config-protocol.ts';
import { resourceKey } from '../protocol/config-scope.ts';
import type { K8sObject } from '../mesh-model/k8s-objects.ts';
import type { ProxyView } from '../mesh-model/proxy-view.ts';
import type { Identity } from '../pki/identity.ts';
import { parseWorkloadSpiffeId, type WorkloadIdentity } from '../pki/spiffe-id.ts';
import { clientTlsOptions, createMeshSecureContext } from '../pki/tls-options.ts';
import { proxyViewBuilder, type ConfigSource, type ViewBuilder } from './config-source.ts';
import { controllerUrl } from './controller-identity.ts';
import { backoffDelay } from '../lib/backoff.ts';

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS } = http2.constants;
const MAX_ERROR_BODY = 512;

export interface ConfigStreamOptions {
  /** The controller: "host:port", "host" (port 15012) or "https://host:port". */
  address: string;
  /** The workload identity; a function is asked again for every connection (rotation). */
  identity: Identity | (() => Identity | undefined);
  /** SPIFFE ID the controller must present; default spiffe://<td>/ns/sluice-system/sa/sluice-controller. */
  controllerSpiffeId?: string;
  /** Reconnect backoff, doubled per failed attempt with jitter; default 500 ms to 30 s. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** A stream that delivers no frame for this long is treated as dead; default 45 s. */
  watchdogMs?: number;
  /** A stream that lasted this long resets the backoff when it ends; default backoffMaxMs. */
  stableMs?: number;
  maxFrameBytes?: number;
  /** For tests: the jitter source, 0 <= x < 1. */
  random?: () => number;
  /** The controller's trust frames (the mesh trust bundle and the signing CA), as they come. */
  onTrust?: (frame: TrustFrame) => void;
}

export interface ConfigStreamHandlers {
  /** A snapshot replaces everything; `peer` is the identity the stream was opened with. */
  onSnapshot(frame: SnapshotFrame, peer: WorkloadIdentity): void;
  /** A delta whose base matched the current version. */
  onDelta(frame: DeltaFrame, peer: WorkloadIdentity): void;
  /** The stream ended or could not be opened; a reconnect is scheduled. */
  onDisconnect?(reason: string): void;
}

/** What the admin endpoint shows about the controller connection. */
export interface ConfigStreamState {
  address: string;
  /** A stream is open and its snapshot applied. */
  connected: boolean;
  /** Version of the last applied frame (kept while disconnected). */
  version: string | undefined;
  /** When the last snapshot or delta was applied. */
  lastUpdate: Date | undefined;
  lastError: string | undefined;
  snapshots: number;
  deltas: number;
  /** Streams lost or refused since start. */
  disconnects: number;
}

/** The state of a stream that has not connected yet. */
function disconnectedState(address: string): ConfigStreamState {
  return {
    address,
    connected: false,
    version: undefined,
    lastUpdate: undefined,
    lastError: undefined,
    snapshots: 0,
    deltas: 0,
    disconnects: 0,
  };
}

/**
 * The connection part: opens the stream, splits and checks frames, enforces the version chain, watches for
 * silence and reconnects. Frames are handed to the handlers; nothing is stored here.
 */
export class ConfigStream {
  readonly #o: ConfigStreamOptions;
  readonly #handlers: ConfigStreamHandlers;
  readonly #authority: string;
  readonly #state: ConfigStreamState;
  #context: { identity: Identity; context: SecureContext } | undefined;
  #session: http2.ClientHttp2Session | undefined;
  #attempt = 0;
  #retry: NodeJS.Timeout | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #stopped = true;

  constructor(options: ConfigStreamOptions, handlers: ConfigStreamHandlers) {
    this.#o = options;
    this.#handlers = handlers;
    this.#authority = controllerUrl(options.address);
    this.#state = disconnectedState(this.#authority);
  }

  get state(): Readonly<ConfigStreamState> {
    return { ...this.#state };
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
    clearTimeout(this.#watchdog);
    const session = this.#session;
    this.#session = undefined;
    this.#state.connected = false;
    session?.destroy();
  }

  #identity(): Identity | undefined {
    const id = this.#o.identity;
    return typeof id === 'function' ? id() : id;
  }

  #connect(): void {
    if (this.#stopped) return;
    const identity = this.#identity();
    if (!identity) return this.#scheduleRetry('no workload identity loaded yet');
    let peer: WorkloadIdentity;
    try {
      peer = parseWorkloadSpiffeId(identity.spiffeId);
    } catch (err) {
      return this.#scheduleRetry(`workload identity unusable: ${(err as Error).message}`);
    }
    if (this.#context?.identity !== identity) {
      this.#context = { identity, context: createMeshSecureContext(identity) };
    }
    const tls = clientTlsOptions({
      secureContext: this.#context.context,
      expectedSpiffeId: this.#o.controllerSpiffeId ?? controllerSpiffeId(identity.trustDomain),
      alpnProtocols: ['h2'],
    });
    // The default HTTP/2 flow-control window (64 KiB) is kept on purpose: it bounds what the controller
    // encrypts ahead for each stream (the rest waits as a reference to the Buffer shared by all subscribers).
    // A 1 MiB window doubled the controller's RSS with 200 sidecars fetching snapshots at once.
    const session = http2.connect(this.#authority, tls);
    this.#session = session;
    const openedAt = Date.now();
    let snapshotSeen = false;
    let version: string | undefined;
    const splitter = new LineSplitter(this.#o.maxFrameBytes ?? MAX_FRAME_BYTES);
    const current = (): boolean => this.#session === session;

    const fail = (reason: string): void => {
      if (!current()) return;
      this.#session = undefined;
      clearTimeout(this.#watchdog);
      session.destroy();
      const lasted = Date.now() - openedAt;
      if (snapshotSeen && lasted >= (this.#o.stableMs ?? this.#o.backoffMaxMs ?? 30_000)) this.#attempt = 0;
      this.#state.connected = false;
      this.#state.disconnects++;
      this.#handlers.onDisconnect?.(reason);
      this.#scheduleRetry(reason);
    };
    const armWatchdog = (): void => {
      clearTimeout(this.#watchdog);
      const ms = this.#o.watchdogMs ?? 45_000;
      this.#watchdog = setTimeout(() => fail(`no frame from the controller for ${ms / 1000} s`), ms);
      this.#watchdog.unref();
    };

    const onFrame = (line: Buffer): void => {
      const frame = parseFrame(line);
      if (typeof frame === 'string') return fail(`malformed frame: ${frame}`);
      if (frame.type === 'snapshot') {
        this.#handlers.onSnapshot(frame, peer);
        snapshotSeen = true;
        version = frame.version;
        this.#state.snapshots++;
        this.#state.connected = true;
      } else if (frame.type === 'delta') {
        if (!snapshotSeen || frame.base !== version) {
          return fail(`delta based on ${frame.base} but the current version is ${version ?? 'none'}`);
        }
        this.#handlers.onDelta(frame, peer);
        version = frame.version;
        this.#state.deltas++;
      } else if (frame.type === 'trust') {
        this.#o.onTrust?.(frame);
        return;
      } else {
        return; // ping, or a frame type from a newer controller
      }
      this.#state.version = version;
      this.#state.lastUpdate = new Date();
      this.#state.lastError = undefined;
    };

    session.on('error', (err: Error) => fail(`connection to ${this.#authority} failed: ${err.message}`));
    session.on('close', () => fail('connection closed'));
    session.on('goaway', () => fail('controller closed the connection'));
    armWatchdog();

    const req = session.request(
      { [HTTP2_HEADER_METHOD]: 'GET', [HTTP2_HEADER_PATH]: CONFIG_PATH },
      { endStream: true },
    );
    let status = 0;
    let errorBody = '';
    req.on('response', (headers) => {
      status = Number(headers[HTTP2_HEADER_STATUS]);
    });
    req.on('data', (chunk: Buffer) => {
      if (!current()) return;
      if (status !== 200) {
        if (errorBody.length < MAX_ERROR_BODY) errorBody += chunk.toString('utf8', 0, MAX_ERROR_BODY);
        return;
      }
      let lines: Buffer[];
      try {
        lines = splitter.push(chunk);
      } catch (err) {
        return fail(`malformed frame: ${(err as Error).message}`);
      }
      for (const line of lines) {
        try {
          onFrame(line);
        } catch (err) {
          fail(`frame not applied: ${(err as Error).message}`);
        }
        if (!current()) return;
        armWatchdog();
      }
    });
    // A controller that refuses the client certificate closes the TLS connection without an alert the
    // client can see, so a stream that ends before any answer says so.
    const unanswered = 'connection closed before the controller answered (does it trust this workload?)';
    req.on('end', () => {
      if (status === 0) return fail(unanswered);
      if (status === 200) return fail('controller ended the stream');
      const reason = errorBody.trim().split('\n')[0]!.slice(0, MAX_ERROR_BODY);
      fail(`controller answered ${status}${reason ? `: ${reason}` : ''}`);
    });
    req.on('error', (err: Error) => {
      const cause = err.cause instanceof Error ? err.cause : undefined;
      fail(
        cause ? `connection to ${this.#authority} failed: ${cause.message}` : `stream failed: ${err.message}`,
      );
    });
    req.on('close', () => fail(status === 0 ? unanswered : `stream closed (code ${req.rstCode})`));
  }

  #scheduleRetry(reason: string): void {
    this.#state.lastError = reason;
    if (this.#stopped) return;
    // Half fixed, half random: reconnects after a controller restart spread out, none comes too soon.
    const delay = backoffDelay(
      this.#attempt++,
      { initialMs: this.#o.backoffMinMs ?? 500, maxMs: this.#o.backoffMaxMs ?? 30_000, jitter: 0.5 },
      this.#o.random,
    );
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => this.#connect(), delay);
  }
}

export interface ControllerConfigSourceOptions<V = ProxyView> extends ConfigStreamOptions {
  /** Default: buildProxyView. */
  build?: ViewBuilder<V>;
  /** Quiet time before a changed object set is rebuilt into a view; default 10 ms. */
  rebuildDelayMs?: number;
}

export interface ControllerSourceState extends ConfigStreamState {
  objects: number;
}

/** ConfigSource fed by the controller's stream (see ConfigStream). */
export class ControllerConfigSource<V = ProxyView> implements ConfigSource<V> {
  readonly name = 'controller';
  readonly #o: ControllerConfigSourceOptions<V>;
  #objects = new Map<string, K8sObject>();
  #stream: ConfigStream | undefined;
  #rebuild: NodeJS.Timeout | undefined;
  #peer: WorkloadIdentity | undefined;

  constructor(options: ControllerConfigSourceOptions<V>) {
    this.#o = options;
    controllerUrl(options.address); // a bad address is a usage error, reported at construction
  }

  /** For the admin endpoint. */
  get state(): ControllerSourceState {
    return {
      ...(this.#stream?.state ?? disconnectedState(this.#o.address)),
      objects: this.#objects.size,
    };
  }

  start(onView: (view: V) => void, onError: (err: Error) => void): void {
    if (this.#stream) return;
    const build = this.#o.build ?? (proxyViewBuilder as unknown as ViewBuilder<V>);
    const schedule = (peer: WorkloadIdentity): void => {
      this.#peer = peer;
      if (this.#rebuild) return;
      this.#rebuild = setTimeout(() => {
        this.#rebuild = undefined;
        const p = this.#peer!;
        try {
          onView(build([...this.#objects.values()], p.namespace, p.trustDomain));
        } catch (err) {
          onError(err instanceof Error ? err : new Error(String(err)));
        }
      }, this.#o.rebuildDelayMs ?? 10);
    };
    this.#stream = new ConfigStream(this.#o, {
      onSnapshot: (frame, peer) => {
        this.#objects = new Map(frame.objects.map((o) => [resourceKey(o), o]));
        schedule(peer);
      },
      onDelta: (frame, peer) => {
        for (const key of frame.removals) this.#objects.delete(key);
        for (const o of frame.upserts) this.#objects.set(resourceKey(o), o);
        schedule(peer);
      },
      onDisconnect: (reason) => onError(new Error(`controller stream: ${reason}`)),
    });
    this.#stream.start();
  }

  stop(): void {
    this.#stream?.stop();
    this.#stream = undefined;
    clearTimeout(this.#rebuild);
    this.#rebuild = undefined;
  }
}
