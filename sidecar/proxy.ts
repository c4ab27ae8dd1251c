import type net from 'node:net';
import type http from 'node:http';
import type { ProxyView } from '../mesh-model/proxy-view.ts';
import { loadIdentityDir, watchIdentityDir, type IdentityWatcher } from '../pki/identity-dir.ts';
import { MeshTlsCredentials } from '../pki/tls-options.ts';
import type { Identity } from '../pki/identity.ts';
import type { ConfigSource } from './config-source.ts';
import { createOutboundListener } from './outbound-listener.ts';
import { createInboundListener, type MtlsMode } from './inbound-listener.ts';
import { createAdminServer } from './admin-server.ts';
import { startIdleMemoryRelease } from './idle-memory.ts';
import { LoadBalancer } from './load-balancer.ts';
import { NodeUnreachableNotice } from './node-unreachable-notice.ts';
import { poolOptionsFor, UpstreamPools } from './upstream-pools.ts';
import { handOffSource } from './inbound-listener.ts';
import { ProxyMetrics } from './metrics.ts';
import type { HttpServers } from './http-servers.ts';
import type { HeaderLimits } from './header-limits.ts';
import { DEFAULT_LIMITS, type ProxyLimits } from './limits.ts';
import { listen } from './listen.ts';
import type { NormalizeOptions } from '../mesh-model/request-target.ts';
import type { Logger } from '../lib/json-log.ts';
import type { RequestTracing } from './tracing/request-tracing.ts';
import { MeshTracing, type WorkloadTracingOptions } from './tracing/mesh-tracing.ts';

/** Where the workload identity comes from: an identity directory or the controller's CA. */
export interface IdentitySource {
  readonly name: string;
  /** Resolves with the first identity; rotated ones go to onRotated. */
  start(onRotated: (identity: Identity) => void): Promise<Identity>;
  stop(): void;
  /** For /config_dump. */
  readonly state?: unknown;
}

/** An identity directory, watched for rotation (the previous identity stays when the files are unusable). */
export function identityDirSource(dir: string, log: Logger): IdentitySource {
  let watcher: IdentityWatcher | undefined;
  return {
    name: 'directory',
    async start(onRotated) {
      const identity = await loadIdentityDir(dir);
      watcher = watchIdentityDir(dir, {
        initial: identity,
        onChange: onRotated,
        onError: (err) =>
          log.warn('identity directory unusable, keeping the current certificate', { dir, error: err }),
      });
      return identity;
    },
    stop: () => watcher?.close(),
  };
}

export interface ProxyOptions {
  source: ConfigSource;
  identity: IdentitySource;
  mode: MtlsMode;
  outboundPort: number;
  inboundPort: number;
  adminPort: number;
  /** Address the listeners bind: "::" (dual stack) by default. */
  bind: string;
  /** Where inbound traffic goes; undefined: the address it was sent to (the pod IP), see inbound-listener.ts. */
  appAddress: string | undefined;
  detectTimeoutMs: number;
  /** Request header count and size limits on both listeners (default 100 headers, 60 KiB). */
  headerLimits?: HeaderLimits;
  drainMs: number;
  /**
   * On SIGTERM, how long the listeners keep accepting after /ready turned 503, before the drain proper: the
   * time peers need to drop this endpoint, and (classic sidecars) for the app shutting down beside it to
   * finish its own calls. Default 0 (native sidecars get SIGTERM only after the app exited).
   */
  drainDelayMs?: number;
  log: Logger;
  /** Timeouts and connection caps (DEFAULT_LIMITS when absent). */
  limits?: ProxyLimits;
  /** Path normalisation options (docs/security.md); the defaults when absent. */
  normalize?: NormalizeOptions;
  /** Tracing (sidecar/tracing/); settings come with the config (the mesh ConfigMap), these add the pod's own. */
  tracing?: WorkloadTracingOptions;
}

/** The sidecar: outbound + inbound listeners, admin port, config and identity kept current. */
export class SidecarProxy {
  readonly metrics = new ProxyMetrics();
  readonly lb = new LoadBalancer();
  readonly #o: ProxyOptions;
  #view: ProxyView | undefined;
  #credentials: MeshTlsCredentials | undefined;
  #draining = false;
  readonly #pools: UpstreamPools;
  /** Connections to the app: bound to the hand-off source address, which the capture rules let through. */
  readonly #appPools: UpstreamPools;
  readonly #servers: net.Server[] = [];
  readonly #httpServers: HttpServers[] = [];
  #admin: http.Server | undefined;
  #idleMemory: { stop(): void } | undefined;
  readonly #meshTracing: MeshTracing | undefined;
  readonly #nodeUnreachable: NodeUnreachableNotice;

  constructor(options: ProxyOptions) {
    this.#o = options;
    this.#nodeUnreachable = new NodeUnreachableNotice(options.log);
    this.#meshTracing = options.tracing
      ? new MeshTracing(options.tracing, {
          identity: () => this.#credentials?.identity.spiffeId,
          metrics: this.metrics,
          log: options.log,
        })
      : undefined;
    const limits = options.limits ?? DEFAULT_LIMITS;
    // Both pool sets share poolLimits.held: one bound on the requests this sidecar holds upstream.
    const poolLimits = poolOptionsFor(limits, options.headerLimits);
    this.#pools = new UpstreamPools(() => this.#credentials, poolLimits);
    this.#appPools = new UpstreamPools(() => this.#credentials, {
      ...poolLimits,
      localAddress: (address) => (options.appAddress === undefined ? handOffSource(address) : undefined),
    });
    this.metrics.upstreamInFlight = () => this.#pools.inFlight(); // shared with #appPools
  }

  get tracing(): RequestTracing | undefined {
    return this.#meshTracing?.tracing;
  }

  get view(): ProxyView | undefined {
    return this.#view;
  }

  get identity(): Identity | undefined {
    return this.#credentials?.identity;
  }

  async start(): Promise<void> {
    const o = this.#o;
    this.#admin = createAdminServer({
      metrics: this.metrics,
      view: () => this.#view,
      identity: () => this.#credentials?.identity,
      sources: () => ({
        config: { name: o.source.name, ...stateOf(o.source.state) },
        identity: { name: o.identity.name, ...stateOf(o.identity.state) },
      }),
      ready: () => {
        if (this.#draining) return { ok: false, reason: 'draining' };
        if (!this.#credentials) return { ok: false, reason: 'no workload certificate loaded' };
        if (this.#credentials.identity.notAfter.getTime() <= Date.now()) {
          return { ok: false, reason: 'workload certificate expired' };
        }
        if (!this.#view) return { ok: false, reason: `no configuration loaded from ${o.source.name}` };
        return { ok: true, reason: `ready (config version ${this.#view.version})` };
      },
    });
    await listen(this.#admin, o.adminPort, o.bind);

    const identity = await o.identity.start((next) => {
      this.#credentials?.update(next);
      this.#pools.reset();
      this.#appPools.reset();
      o.log.info('identity rotated', { spiffeId: next.spiffeId, notAfter: next.notAfter.toISOString() });
    });
    this.#credentials = new MeshTlsCredentials(identity);
    o.log.info('identity loaded', {
      spiffeId: identity.spiffeId,
      notAfter: identity.notAfter.toISOString(),
    });

    o.source.start(
      (view) => {
        this.#view = view;
        const endpoints = [...view.endpoints.values()].flat();
        this.lb.retain(endpoints);
        this.#pools.retain(endpoints);
        this.#nodeUnreachable.update(view.endpoints);
        this.metrics.reloads.inc([o.source.name]);
        this.#meshTracing?.follow(view.namespace, view.meshConfig);
        o.log.info('config applied', {
          version: view.version,
          source: o.source.name,
          destinations: view.byDestination.size,
          routes: view.model.routes.length,
        });
        for (const w of view.model.warnings)
          o.log.warn('config warning', { version: view.version, warning: w });
      },
      (err) =>
        o.log.warn('config not applied, keeping the previous one', { source: o.source.name, error: err }),
    );

    const deps = {
      pools: this.#pools,
      lb: this.lb,
      metrics: this.metrics,
      log: o.log,
      normalize: o.normalize ?? {},
      ...(this.tracing ? { tracing: this.tracing } : {}),
    };
    const ownPorts = new Set([o.outboundPort, o.inboundPort, o.adminPort]);
    const limits = o.limits ?? DEFAULT_LIMITS;
    const outbound = createOutboundListener({
      deps,
      view: () => this.#view,
      detectTimeoutMs: o.detectTimeoutMs,
      ownPorts,
      ...(o.headerLimits ? { headerLimits: o.headerLimits } : {}),
      limits,
    });
    const inbound = createInboundListener({
      deps: { ...deps, pools: this.#appPools },
      credentials: () => this.#credentials,
      trustDomain: () => this.#credentials?.identity.trustDomain,
      mode: o.mode,
      detectTimeoutMs: o.detectTimeoutMs,
      appAddress: o.appAddress,
      ownPorts,
      view: () => this.#view,
      ...(o.headerLimits ? { headerLimits: o.headerLimits } : {}),
      limits,
    });
    this.#servers.push(outbound.server, inbound.server);
    this.#httpServers.push(outbound.http, inbound.http);
    await listen(outbound.server, o.outboundPort, o.bind);
    await listen(inbound.server, o.inboundPort, o.bind);
    o.log.info('listening', {
      outboundPort: o.outboundPort,
      inboundPort: o.inboundPort,
      mode: o.mode,
      adminPort: o.adminPort,
    });
    this.#idleMemory = startIdleMemoryRelease(o.log);
  }

  /**
   * Graceful drain: not ready at once; new connections still accepted for drainDelayMs; then no new
   * connections, and open ones get up to drainMs to finish.
   */
  async drain(): Promise<void> {
    this.#draining = true;
    const delay = this.#o.drainDelayMs ?? 0;
    if (delay > 0) {
      this.#o.log.info('not ready, still accepting', { ms: delay });
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
    const closed = Promise.all(this.#servers.map((s) => new Promise((resolve) => s.close(resolve))));
    for (const h of this.#httpServers) h.drain();
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, this.#o.drainMs).unref())]);
    // The last requests' spans go out too, for at most a second (a dead collector does not hold the exit).
    await this.#meshTracing?.drain();
    this.stop();
  }

  stop(): void {
    this.#idleMemory?.stop();
    this.#o.source.stop();
    this.#o.identity.stop();
    this.#pools.destroy();
    this.#appPools.destroy();
    void this.tracing?.shutdown();
    for (const s of this.#servers) s.close();
    for (const h of this.#httpServers) {
      h.http1.closeAllConnections();
      h.h2.close();
    }
    this.#admin?.closeAllConnections();
    this.#admin?.close();
  }
}

function stateOf(state: unknown): Record<string, unknown> {
  return typeof state === 'object' && state !== null ? { ...state } : {};
}
