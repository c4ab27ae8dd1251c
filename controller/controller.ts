// The controller process (`sluice controller`), wiring its parts: informers feed the config hub (streamed
// to sidecars, config-distribution.ts) and the route status loop (written by the leader only,
// route-status-loop.ts); the mesh CA issues workload certificates on the config port (mesh-identity.ts);
// an admin port serves /ready, /live and /metrics (admin-server.ts, controller-metrics.ts).
//
// The model is rebuilt only for kinds it reads (Services, routes); Pods and EndpointSlices change far more
// often and only matter to the sidecars, which get them through the hub.
import type http from 'node:http';
import type { Logger } from '../lib/json-log.ts';
import type { KubeApi } from '../lib/kube/kube-api.ts';
import type { ChangeEvent, KubeObject } from '../lib/kube/object-cache.ts';
import { RESOURCES, type ResourceType } from '../lib/kube/resources.ts';
import { SupervisedInformer } from '../lib/kube/supervised-informer.ts';
import { Histogram } from '../lib/prometheus-text.ts';
import type { K8sObject } from '../mesh-model/k8s-objects.ts';
import { ADMIN_PORT, closeAdminServer, startAdminServer } from './admin-server.ts';
import { countedHub, createConfigServer } from './config-distribution.ts';
import type { ConfigHub } from './config-hub.ts';
import type { ConfigServer } from './config-server.ts';
import { controllerMetricsText, newCounters, PUSH_LATENCY_BUCKETS } from './controller-metrics.ts';
import { CA_SECRET_NAME } from './ca-root-secret.ts';
import { apiConfigMapStore } from './kube-adapters.ts';
import { electionIdentity, LeaderElector } from './leader-election.ts';
import { ControllerIdentity, loadMeshCa, watchMeshCa } from './mesh-identity.ts';
import { RouteStatusLoop } from './route-status-loop.ts';
import { StatusWriter } from './status-writer.ts';
import { TrustBundlePublisher } from './trust-bundle-publisher.ts';
import type { WorkloadIdentity } from '../pki/spiffe-id.ts';
import type { ConfigSubscriber } from './config-hub.ts';
import { GatewayFeed, type GatewayFeedInputs } from './gateway-feed.ts';
import { GatewayProvisioner, ourGateways } from './gateway-provisioner.ts';
import { gatewayOfServiceAccount, type ProvisioningSettings } from './gateway-provisioning.ts';
import { GatewayStatusCache, GatewayStatusLoop } from './gateway-status-loop.ts';
import { GatewayAddressProbes } from './gateway-address-probe.ts';
import { errorText } from '../lib/error-text.ts';

export { ADMIN_PORT };
export { routeStatusUpdate } from './route-status-loop.ts';

export const LEASE_NAME = 'sluice-controller';

/** What the controller watches, by the name used in logs and metrics. */
const WATCHED = {
  namespaces: RESOURCES.namespaces,
  services: RESOURCES.services,
  endpointslices: RESOURCES.endpointSlices,
  pods: RESOURCES.pods,
  httproutes: RESOURCES.httpRoutes,
  grpcroutes: RESOURCES.grpcRoutes,
  referencegrants: RESOURCES.referenceGrants,
  gateways: RESOURCES.gateways,
  gatewayclasses: RESOURCES.gatewayClasses,
  // Only kubernetes.io/tls Secrets (a field selector): what Gateway listeners may reference.
  secrets: RESOURCES.secrets,
  // CA bundles for Gateway client-certificate validation (frontendValidation caCertificateRefs), and the
  // mesh-wide settings sluice-system/sluice-mesh-config (ADR 0011), which the config stream passes on alone.
  configmaps: RESOURCES.configMaps,
} as const satisfies Record<string, ResourceType>;
/** Informers that watch a selection only. */
const SELECTED: Partial<Record<Watched, { fieldSelector: string }>> = {
  secrets: { fieldSelector: 'type=kubernetes.io/tls' },
};
type Watched = keyof typeof WATCHED;
const MODEL_INPUTS: ReadonlySet<Watched> = new Set(['services', 'httproutes', 'grpcroutes']);
/** Inputs of the gateway statuses (and of the gateway parents in route status). */
const GATEWAY_INPUTS: ReadonlySet<Watched> = new Set([
  'services',
  'httproutes',
  'grpcroutes',
  'gateways',
  'gatewayclasses',
  'referencegrants',
  'namespaces',
  'secrets',
  'configmaps',
]);
/** Which gateway feed input each informer fills. */
const GATEWAY_FEED_INPUT: Record<Watched, keyof GatewayFeedInputs> = {
  namespaces: 'namespaces',
  services: 'mesh',
  endpointslices: 'mesh',
  pods: 'mesh',
  httproutes: 'routes',
  grpcroutes: 'routes',
  referencegrants: 'referenceGrants',
  gateways: 'gateways',
  gatewayclasses: 'gatewayClasses',
  secrets: 'secrets',
  configmaps: 'configMaps',
};
/** The Gateway API CRDs (standard channel) whose bundle version the GatewayClass status reports. */
const GATEWAY_API_CRDS = ['gatewayclasses', 'gateways', 'httproutes', 'grpcroutes', 'referencegrants'];

export interface ControllerOptions {
  readonly api: KubeApi;
  readonly log: Logger;
  /** The control-plane namespace: the Lease, the CA Secret, the controller's own identity. */
  readonly namespace: string;
  readonly trustDomain: string;
  /** Leader election identity prefix; default $POD_NAME or the host name. */
  readonly podName?: string;
  readonly configPort?: number;
  readonly adminPort?: number;
  /** Quiet time before the model is rebuilt after a change (100 ms); at most 10 x that after the first. */
  readonly debounceMs?: number;
  /** All routes' status is re-checked this often while leading (5 min). */
  readonly statusResyncMs?: number;
  /** Informers relist this often (10 min). */
  readonly relistMs?: number;
  /** The audience of workload tokens (sluice.dev/mesh). */
  readonly audience?: string;
  /** Lifetime of workload certificates (24 h). */
  readonly workloadCertHours?: number;
  /** Lease timings, for tests. */
  readonly leaseDurationMs?: number;
  readonly renewDeadlineMs?: number;
  readonly retryPeriodMs?: number;
  /** Gateway provisioning (the proxy image and what gateway proxies dial); absent: Gateways are not provisioned. */
  readonly gateways?: Omit<ProvisioningSettings, 'trustDomain'>;
}

export class Controller {
  readonly #o: ControllerOptions;
  readonly #log: Logger;
  readonly #informers: Record<Watched, SupervisedInformer>;
  #caWatch: { reloadNow(): void } | undefined;
  readonly #hub: ConfigHub;
  readonly #writer: StatusWriter;
  readonly #statusLoop: RouteStatusLoop;
  readonly #gatewayStatus: GatewayStatusLoop;
  readonly #gatewayFeed: GatewayFeed;
  readonly #provisioner: GatewayProvisioner | undefined;
  readonly #elector: LeaderElector;
  readonly #bundles: TrustBundlePublisher;
  readonly #pushLatency = new Histogram(PUSH_LATENCY_BUCKETS);
  readonly #counters = newCounters();
  readonly #certificates = new Map<string, number>();
  /** Gateway API CRDs, metadata only: GatewayClass SupportedVersion reads their bundle-version. */
  #crds: K8sObject[] = [];
  /** The gateway statuses of the current objects; invalidated when one of their inputs changes. */
  readonly #gatewayStatuses = new GatewayStatusCache(() => this.#gatewayObjects());
  readonly #stopping = new AbortController();
  #synced = false;
  #listening = false;
  #configServer: ConfigServer | undefined;
  #identity: ControllerIdentity | undefined;
  #admin: http.Server | undefined;
  #timers: NodeJS.Timeout[] = [];
  #stopped: Promise<void> | undefined;

  constructor(options: ControllerOptions) {
    this.#o = options;
    this.#log = options.log;
    const informerLog = (line: string): void => this.#log.warn(line, { component: 'informer' });
    this.#informers = Object.fromEntries(
      Object.entries(WATCHED).map(([name, resource]) => [
        name,
        new SupervisedInformer({
          api: options.api,
          resource,
          ...SELECTED[name as Watched],
          ...(options.relistMs === undefined ? {} : { resyncIntervalMs: options.relistMs }),
          log: informerLog,
        }),
      ]),
    ) as Record<Watched, SupervisedInformer>;
    this.#hub = countedHub(this.#log, this.#counters, this.#pushLatency);
    this.#writer = new StatusWriter({
      api: options.api,
      log: (message) => this.#log.warn(message, { component: 'status' }),
    });
    this.#statusLoop = new RouteStatusLoop({
      writer: this.#writer,
      log: this.#log,
      services: () => this.#informers.services.list(),
      routes: () =>
        [...this.#informers.httproutes.list(), ...this.#informers.grpcroutes.list()] as K8sObject[],
      active: () => this.#synced && !this.#stopping.signal.aborted,
      ...(options.debounceMs === undefined ? {} : { debounceMs: options.debounceMs }),
      counters: this.#counters,
      gatewayParents: () => this.#gatewayStatuses.get().routeParents,
    });
    const list = (name: Watched) => (): K8sObject[] => this.#informers[name].list();
    this.#provisioner = options.gateways
      ? new GatewayProvisioner({
          api: options.api,
          settings: { ...options.gateways, trustDomain: options.trustDomain },
          gateways: list('gateways'),
          classes: list('gatewayclasses'),
          log: (message, fields) => this.#log.info(message, { component: 'gateway-provisioner', ...fields }),
          ...(options.debounceMs === undefined ? {} : { debounceMs: options.debounceMs }),
        })
      : undefined;
    this.#gatewayStatus = new GatewayStatusLoop({
      writer: this.#writer,
      log: this.#log,
      statuses: () => this.#gatewayStatuses.get(),
      gatewayClasses: list('gatewayclasses'),
      gateways: list('gateways'),
      pods: list('pods'),
      services: list('services'),
      problems: () => this.#provisioner?.problems ?? new Map(),
      active: () => this.#synced && !this.#stopping.signal.aborted,
      ...(options.debounceMs === undefined ? {} : { debounceMs: options.debounceMs }),
      probes: new GatewayAddressProbes({ onChange: () => this.#gatewayStatus.schedule() }),
    });
    this.#gatewayFeed = new GatewayFeed({
      trustDomain: options.trustDomain,
      inputs: {
        namespaces: list('namespaces'),
        mesh: () => [...list('services')(), ...list('endpointslices')(), ...list('pods')()],
        gatewayClasses: list('gatewayclasses'),
        gateways: list('gateways'),
        routes: () => [...list('httproutes')(), ...list('grpcroutes')()],
        referenceGrants: list('referencegrants'),
        secrets: list('secrets'),
        configMaps: list('configmaps'),
      },
      log: (message, fields) => this.#log.info(message, { component: 'gateway-feed', ...fields }),
    });
    this.#bundles = new TrustBundlePublisher({
      store: apiConfigMapStore(options.api),
      controlPlane: options.namespace,
      namespaces: () => this.#informers.namespaces.list().flatMap((ns) => ns.metadata?.name ?? []),
      log: (message, fields) => this.#log.info(message, { component: 'trust-bundle', ...fields }),
    });
    this.#elector = new LeaderElector({
      api: options.api,
      namespace: options.namespace,
      leaseName: LEASE_NAME,
      identity: electionIdentity(options.podName),
      ...(options.leaseDurationMs === undefined ? {} : { leaseDurationMs: options.leaseDurationMs }),
      ...(options.renewDeadlineMs === undefined ? {} : { renewDeadlineMs: options.renewDeadlineMs }),
      ...(options.retryPeriodMs === undefined ? {} : { retryPeriodMs: options.retryPeriodMs }),
      onStartedLeading: (signal) => {
        this.#writer.start(signal);
        this.#bundles.start(signal);
        this.#provisioner?.start(signal);
        this.#statusLoop.rebuild('became leader');
        this.#gatewayStatus.rebuild();
      },
      onStoppedLeading: () => {
        void this.#writer.stop();
        this.#bundles.stop();
        this.#provisioner?.stop();
      },
      log: (message) => this.#log.info(message, { component: 'leader-election' }),
    });
  }

  /** Informers listed, config server listening. */
  get ready(): boolean {
    return this.#synced && this.#listening && !this.#stopping.signal.aborted;
  }

  get adminPort(): number | undefined {
    const address = this.#admin?.address();
    return address && typeof address === 'object' ? address.port : undefined;
  }

  get configPort(): number | undefined {
    return this.#listening ? this.#configServer?.port : undefined;
  }

  /** Starts everything; resolves once the admin server listens (the rest comes up in the background). */
  async start(): Promise<void> {
    this.#admin = await startAdminServer({
      port: this.#o.adminPort ?? ADMIN_PORT,
      log: this.#log,
      notReady: () => this.#notReady(),
      metricsText: () => this.metricsText(),
    });
    for (const [name, informer] of Object.entries(this.#informers) as [Watched, SupervisedInformer][]) {
      informer.on((change) => this.#onChange(name, change));
      informer.start();
    }
    const resync = setInterval(() => {
      this.#gatewayStatuses.invalidate();
      this.#statusLoop.rebuild('status resync');
      this.#gatewayStatus.rebuild();
      this.#provisioner?.schedule();
    }, this.#o.statusResyncMs ?? 300_000);
    this.#timers.push(resync);
    void this.#waitForSync();
    void this.#startConfigServer();
  }

  async #waitForSync(): Promise<void> {
    const startedAt = performance.now();
    try {
      await Promise.all(Object.values(this.#informers).map((informer) => informer.synced));
    } catch {
      return; // stopped before the first lists
    }
    if (this.#stopping.signal.aborted) return;
    this.#synced = true;
    this.#hub.markSynced();
    this.#statusLoop.rebuild('initial sync');
    this.#log.info('informers synced', {
      ms: Math.round(performance.now() - startedAt),
      objects: Object.fromEntries(Object.entries(this.#informers).map(([n, i]) => [n, i.list().length])),
    });
    this.#elector.start();
    void this.#refreshCrds();
  }

  /** Reads the Gateway API CRDs we use (by name: RBAC allows no others) and keeps their metadata. */
  async #refreshCrds(): Promise<void> {
    const found: K8sObject[] = [];
    for (const plural of GATEWAY_API_CRDS) {
      try {
        const crd = await this.#o.api.request<K8sObject>(
          'GET',
          `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${plural}.gateway.networking.k8s.io`,
          { signal: this.#stopping.signal, timeoutMs: 10_000 },
        );
        const meta = crd.metadata ?? {};
        found.push({
          kind: 'CustomResourceDefinition',
          metadata: { name: meta.name, ...(meta.annotations ? { annotations: meta.annotations } : {}) },
        });
      } catch {
        // not installed (or not readable): the class's SupportedVersion says what was seen
      }
    }
    if (this.#stopping.signal.aborted) return;
    this.#crds = found;
    this.#gatewayStatuses.invalidate();
    this.#gatewayStatus.schedule();
  }

  #onChange(name: Watched, change: ChangeEvent<KubeObject>): void {
    const { type, object } = change;
    const meta = object.metadata;
    if (name === 'secrets' && meta?.namespace === this.#o.namespace && meta.name === CA_SECRET_NAME)
      this.#caWatch?.reloadNow(); // a rotation step applies in seconds, not at the next 30 s poll
    if (type === 'delete') this.#hub.remove(object);
    else this.#hub.upsert(object);
    if (name === 'namespaces' && type === 'add' && object.metadata?.name)
      this.#bundles.namespaceAdded(object.metadata.name);
    if (GATEWAY_INPUTS.has(name)) this.#gatewayStatuses.invalidate();
    if (MODEL_INPUTS.has(name) || GATEWAY_INPUTS.has(name)) this.#statusLoop.schedule();
    this.#gatewayFeed.changed({
      input: GATEWAY_FEED_INPUT[name],
      type,
      object,
      ...(change.type === 'update' ? { old: change.old } : {}),
    });
    if (GATEWAY_INPUTS.has(name) || name === 'pods') this.#gatewayStatus.schedule();
    if (name === 'gateways' || name === 'gatewayclasses') this.#provisioner?.schedule();
  }

  /** Everything the gateway statuses are computed from. */
  #gatewayObjects(): K8sObject[] {
    const names: Watched[] = [
      'namespaces',
      'services',
      'httproutes',
      'grpcroutes',
      'referencegrants',
      'gateways',
      'gatewayclasses',
      'secrets',
      'configmaps',
    ];
    return [...this.#crds, ...names.flatMap((n) => this.#informers[n].list() as K8sObject[])];
  }

  /** The subscribe function of the Gateway whose service account `peer` runs as, if any. */
  #gatewayFeedFor(peer: WorkloadIdentity): ((sub: ConfigSubscriber) => () => void) | undefined {
    const refs = ourGateways(
      this.#informers.gateways.list() as K8sObject[],
      this.#informers.gatewayclasses.list() as K8sObject[],
    ).map((g) => ({ namespace: g.metadata?.namespace ?? 'default', name: g.metadata?.name ?? '' }));
    const gateway = gatewayOfServiceAccount(refs, peer.namespace, peer.serviceAccount);
    return gateway && ((sub) => this.#gatewayFeed.subscribe(sub, gateway));
  }

  async #startConfigServer(): Promise<void> {
    const signal = this.#stopping.signal;
    const { api, namespace, trustDomain } = this.#o;
    const log = this.#log;
    const issuer = await loadMeshCa({ api, log, namespace, trustDomain }, signal);
    if (!issuer || signal.aborted) return;
    this.#bundles.setBundle(issuer.trustBundlePem);
    try {
      this.#identity = new ControllerIdentity(issuer, namespace, log);
      const { identity, credentials } = await this.#identity.start();
      // CA rotation by Secret edits (docs/operations.md): the new bundle published, our certificate renewed.
      this.#caWatch = watchMeshCa(issuer, {
        log,
        signal,
        changed: () => {
          this.#bundles.setBundle(issuer.trustBundlePem);
          this.#identity?.renewNow();
          this.#configServer?.publishTrust(); // every proxy, in seconds (the ConfigMap takes minutes)
        },
      });
      const server = createConfigServer({
        api,
        log,
        hub: this.#hub,
        issuer,
        identity,
        credentials,
        trustDomain,
        ...(this.#o.configPort === undefined ? {} : { port: this.#o.configPort }),
        ...(this.#o.audience === undefined ? {} : { audience: this.#o.audience }),
        ...(this.#o.workloadCertHours === undefined ? {} : { workloadCertHours: this.#o.workloadCertHours }),
        certificates: this.#certificates,
        gatewayFeed: (peer) => this.#gatewayFeedFor(peer),
      });
      this.#configServer = server;
      const port = await server.listen();
      this.#listening = true;
      this.#log.info('config server listening', { port, spiffeId: identity.spiffeId });
    } catch (error) {
      // A port in use or a broken CA will not heal by itself: the pod's readiness stays false and the
      // log says why; the process keeps serving /live so the state can be inspected.
      this.#log.error('config server failed to start', { error: errorText(error) });
    }
  }

  #notReady(): string[] {
    if (this.ready) return [];
    const waiting = Object.entries(this.#informers)
      .filter(([, informer]) => informer.stats.resourceVersion === '')
      .map(([name]) => name);
    const why = [
      ...(this.#stopping.signal.aborted ? ['stopping'] : []),
      ...(waiting.length > 0 ? [`informers not synced: ${waiting.join(', ')}`] : []),
      ...(this.#listening ? [] : ['config server not listening']),
    ];
    return why.length > 0 ? why : ['starting'];
  }

  metricsText(): string {
    return controllerMetricsText({
      isLeader: this.#elector.isLeader,
      ready: this.ready,
      pushLatency: this.#pushLatency,
      counters: this.#counters,
      hub: this.#hub.stats(),
      status: this.#writer.metrics(),
      informers: this.#informers,
      bundles: this.#bundles.stats,
      certificates: this.#certificates,
      http: this.#configServer?.durations,
    });
  }

  /** Graceful stop: not ready, step down (status writes stop, the Lease is released), streams end. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping.abort();
      this.#statusLoop.stop();
      this.#gatewayStatus.stop();
      this.#provisioner?.stop();
      this.#identity?.stop();
      for (const timer of this.#timers) clearInterval(timer);
      await this.#elector.stop();
      await this.#configServer?.close();
      this.#hub.close();
      this.#gatewayFeed.close();
      await Promise.all(Object.values(this.#informers).map((informer) => informer.stop()));
      if (this.#admin) await closeAdminServer(this.#admin);
      this.#log.info('controller stopped');
    })();
    return this.#stopped;
  }
}
