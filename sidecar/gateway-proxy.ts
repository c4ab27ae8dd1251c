// `sluice proxy --mode gateway`: the data plane of one Gateway. Same parts as the sidecar (identity from
// the mesh CA, config from the controller's stream, upstream pools with mTLS to meshed endpoints, metrics,
// admin port), but no capture: it listens on the Gateway's listener ports, opened and closed as the
// GatewayView changes.
import type http from 'node:http';
import { MeshTlsCredentials } from '../pki/tls-options.ts';
import type { Identity } from '../pki/identity.ts';
import type { ConfigSource } from './config-source.ts';
import type { GatewayConfig } from './gateway-config.ts';
import type { GatewayPortView } from '../mesh-model/gateway-view.ts';
import { GatewayCertificates } from './gateway-tls.ts';
import { createGatewayListener, type GatewayListener } from './gateway-listeners.ts';
import { createAdminServer } from './admin-server.ts';
import { LoadBalancer } from './load-balancer.ts';
import { NodeUnreachableNotice } from './node-unreachable-notice.ts';
import { poolOptionsFor, UpstreamPools } from './upstream-pools.ts';
import { ProxyMetrics } from './metrics.ts';
import { DEFAULT_LIMITS } from './limits.ts';
import type { ProxyOptions } from './proxy.ts';
import { listen } from './listen.ts';
import { startIdleMemoryRelease } from './idle-memory.ts';
import { MeshTracing } from './tracing/mesh-tracing.ts';
import type { RequestTracing } from './tracing/request-tracing.ts';

/** The sidecar's options that apply to a gateway (no capture ports, no app address), with its own source. */
export type GatewayProxyOptions = Pick<
  ProxyOptions,
  | 'identity'
  | 'adminPort'
  | 'bind'
  | 'detectTimeoutMs'
  | 'headerLimits'
  | 'drainMs'
  | 'log'
  | 'limits'
  | 'normalize'
  | 'tracing'
> & { source: ConfigSource<GatewayConfig> };

interface OpenPort {
  readonly protocol: 'HTTP' | 'HTTPS';
  readonly listener: GatewayListener;
  readonly ready: Promise<void>;
}

/** Bound: until then the port is not ready (/ready may ask while listen() is still pending). */
function bound(open: OpenPort | undefined): boolean {
  return open?.listener.server.listening === true;
}

export class GatewayProxy {
  readonly metrics = new ProxyMetrics();
  readonly lb = new LoadBalancer();
  readonly certificates = new GatewayCertificates();
  readonly #o: GatewayProxyOptions;
  readonly #pools: UpstreamPools;
  readonly #ports = new Map<number, OpenPort>();
  #config: GatewayConfig | undefined;
  #credentials: MeshTlsCredentials | undefined;
  #admin: http.Server | undefined;
  #draining = false;
  #stopped = false;
  /** Ports that could not be opened, with why (shown by /ready). */
  readonly #failedPorts = new Map<number, string>();
  readonly #meshTracing: MeshTracing | undefined;
  readonly #nodeUnreachable: NodeUnreachableNotice;
  /** Memory given back once idle after load, as the sidecar does (ADR 0016). */
  #idleMemory: { stop(): void } | undefined;

  constructor(options: GatewayProxyOptions) {
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
    this.#pools = new UpstreamPools(() => this.#credentials, poolOptionsFor(limits, options.headerLimits));
  }

  get config(): GatewayConfig | undefined {
    return this.#config;
  }

  get tracing(): RequestTracing | undefined {
    return this.#meshTracing?.tracing;
  }

  get identity(): Identity | undefined {
    return this.#credentials?.identity;
  }

  /** Ports listening now. */
  get ports(): number[] {
    return [...this.#ports].flatMap(([port, open]) => (bound(open) ? [port] : [])).sort((a, b) => a - b);
  }

  async start(): Promise<void> {
    const o = this.#o;
    this.#admin = createAdminServer({
      metrics: this.metrics,
      view: () => undefined,
      configDump: () => this.#dump(),
      identity: () => this.#credentials?.identity,
      sources: () => ({
        config: { name: o.source.name, ...stateOf(o.source.state) },
        identity: { name: o.identity.name, ...stateOf(o.identity.state) },
      }),
      ready: () => this.#ready(),
    });
    await listen(this.#admin, o.adminPort, o.bind);
    const identity = await o.identity.start((next) => {
      this.#credentials?.update(next);
      this.#pools.reset();
      o.log.info('identity rotated', { spiffeId: next.spiffeId, notAfter: next.notAfter.toISOString() });
    });
    this.#credentials = new MeshTlsCredentials(identity);
    o.log.info('identity loaded', { spiffeId: identity.spiffeId, notAfter: identity.notAfter.toISOString() });
    o.source.start(
      (config) => this.#apply(config),
      (err) =>
        o.log.warn('config not applied, keeping the previous one', { source: o.source.name, error: err }),
    );
    this.#idleMemory = startIdleMemoryRelease(o.log);
  }

  #apply(config: GatewayConfig): void {
    const o = this.#o;
    this.#config = config;
    for (const problem of this.certificates.update(config)) o.log.warn('certificate not loaded', { problem });
    this.lb.retain([...(config.view?.endpoints.values() ?? [])].flat());
    if (config.view) this.#nodeUnreachable.update(config.view.endpoints);
    this.metrics.reloads.inc([o.source.name]);
    this.#meshTracing?.follow(config.gateway.split('/')[0]!, config.meshConfig);
    const view = config.view;
    o.log.info('config applied', {
      version: config.version,
      gateway: config.gateway,
      accepted: view !== undefined,
      ports: view ? [...view.ports.keys()] : [],
      routes: view?.model.routes.length ?? 0,
      certificates: this.certificates.size,
    });
    for (const w of view?.model.warnings ?? []) o.log.warn('config warning', { warning: w });
    for (const open of this.#ports.values()) open.listener.refresh();
    void this.#reconcilePorts();
  }

  /** Opens listeners for new ports, closes those of ports gone (or whose protocol changed). */
  async #reconcilePorts(): Promise<void> {
    if (this.#stopped || this.#draining) return;
    const wanted: ReadonlyMap<number, GatewayPortView> = this.#config?.view?.ports ?? new Map();
    for (const [port, open] of this.#ports) {
      if (wanted.get(port)?.protocol === open.protocol) continue;
      this.#ports.delete(port);
      await open.ready.catch(() => undefined);
      closeListener(open.listener);
      this.#o.log.info('listener closed', { port });
    }
    for (const [port, portView] of wanted) {
      if (this.#ports.has(port)) continue;
      const listener = createGatewayListener({
        deps: {
          pools: this.#pools,
          lb: this.lb,
          metrics: this.metrics,
          log: this.#o.log,
          normalize: this.#o.normalize ?? {},
          ...(this.tracing ? { tracing: this.tracing } : {}),
        },
        port,
        protocol: portView.protocol,
        config: () => this.#config,
        certificates: this.certificates,
        detectTimeoutMs: this.#o.detectTimeoutMs,
        ...(this.#o.headerLimits ? { headerLimits: this.#o.headerLimits } : {}),
        limits: this.#o.limits ?? DEFAULT_LIMITS,
      });
      const open: OpenPort = {
        protocol: portView.protocol,
        listener,
        ready: listen(listener.server, port, this.#o.bind),
      };
      this.#ports.set(port, open);
      try {
        await open.ready;
        this.#failedPorts.delete(port);
        this.#o.log.info('listening', { port, protocol: portView.protocol });
      } catch (err) {
        this.#ports.delete(port);
        this.#failedPorts.set(port, (err as Error).message);
        this.#o.log.error('cannot listen', { port, error: (err as Error).message });
      }
    }
  }

  #ready(): { ok: boolean; reason: string } {
    if (this.#draining) return { ok: false, reason: 'draining' };
    if (!this.#credentials) return { ok: false, reason: 'no workload certificate loaded' };
    if (!this.#config) return { ok: false, reason: `no configuration loaded from ${this.#o.source.name}` };
    if (!this.#config.view) return { ok: false, reason: `gateway ${this.#config.gateway} is not accepted` };
    if (this.#failedPorts.size > 0) {
      const ports = [...this.#failedPorts].map(([p, why]) => `${p} (${why})`).join(', ');
      return { ok: false, reason: `cannot listen on ${ports}` };
    }
    const missing = [...this.#config.view.ports.keys()].filter((p) => !bound(this.#ports.get(p)));
    if (missing.length > 0) return { ok: false, reason: `opening ports ${missing.join(', ')}` };
    return { ok: true, reason: `ready (config version ${this.#config.version})` };
  }

  #dump(): unknown {
    const config = this.#config;
    const view = config?.view;
    return {
      gateway: config?.gateway ?? null,
      version: config?.version ?? null,
      ports: view
        ? [...view.ports.values()].map((p) => ({
            port: p.port,
            protocol: p.protocol,
            listening: bound(this.#ports.get(p.port)),
            listeners: p.listeners.map((l) => ({
              name: l.name,
              hostname: l.hostname ?? null,
              certificates: l.certificates.map((c) => `${c.namespace}/${c.name}`),
            })),
          }))
        : null,
      routes: view?.model.routes.map((r) => `${r.kind} ${r.namespace}/${r.name}`) ?? [],
      endpoints: view
        ? Object.fromEntries([...view.endpoints].map(([k, eps]) => [k, eps.map((e) => ({ ...e }))]))
        : {},
      // Never the keys: only which Secrets are loaded.
      certificates: config ? [...config.certificates.keys()] : [],
    };
  }

  async drain(): Promise<void> {
    this.#draining = true;
    const servers = [...this.#ports.values()].map((p) => p.listener);
    const closed = Promise.all(servers.map((l) => new Promise((resolve) => l.server.close(resolve))));
    for (const l of servers) l.http.drain();
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, this.#o.drainMs).unref())]);
    await this.#meshTracing?.drain();
    this.stop();
  }

  stop(): void {
    this.#stopped = true;
    this.#idleMemory?.stop();
    this.#o.source.stop();
    this.#o.identity.stop();
    this.#pools.destroy();
    void this.tracing?.shutdown();
    for (const open of this.#ports.values()) closeListener(open.listener);
    this.#ports.clear();
    this.#admin?.closeAllConnections();
    this.#admin?.close();
  }
}

function closeListener(listener: GatewayListener): void {
  listener.server.close();
  listener.http.http1.closeAllConnections();
  listener.http.h2.close();
}

function stateOf(state: unknown): Record<string, unknown> {
  return typeof state === 'object' && state !== null ? { ...state } : {};
}
