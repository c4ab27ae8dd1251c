// The controller process (`sluice controller`): informers feed the config hub (streamed to sidecars) and
// the mesh model (route status, written by the leader only); the mesh CA issues workload certificates on
// the config port; an admin port serves /ready, /live and /metrics.
//
// Decisions:
// - Route status is recomputed from the informers' caches: after a debounced model rebuild, only routes
//   whose merged status differs from what the cache holds are queued (a pure comparison, no API call);
//   on becoming leader and on every status resync all routes are queued, and the StatusWriter turns the
//   ones already right into no requests. Status changes come back through the route informer, which
//   makes the comparison settle.
// - The model is rebuilt only for kinds it reads (Services, routes); Pods and EndpointSlices change far
//   more often and only matter to the sidecars, which get them through the hub.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KubeApi } from '../lib/kube/kube-api.ts';
import { isObject, type K8sObject } from '../mesh-model/k8s-objects.ts';
import type { MeshModel } from '../mesh-model/model.ts';
import { buildMeshModel } from '../mesh-model/translate.ts';
import { issueWorkloadCert } from '../pki/ca.ts';
import { parseIdentity, type Identity } from '../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../pki/keys.ts';
import { workloadSpiffeId } from '../pki/spiffe-id.ts';
import { MeshTlsCredentials } from '../pki/tls-options.ts';
import { describeApiError } from '../lib/kube/kube-api.ts';
import { CA_SECRET_NAME, loadOrCreateCaSecret } from './ca-root-secret.ts';
import { certificateHandler } from './certificate-endpoint.ts';
import { CERTIFICATE_PATH, renewAt } from '../protocol/certificate-protocol.ts';
import { ConfigHub } from './config-hub.ts';
import { CONFIG_PORT, CONTROLLER_SERVICE_ACCOUNT } from '../protocol/config-protocol.ts';
import { ConfigServer } from './config-server.ts';
import { Histogram, processFamilies, renderFamily, type Sample } from '../lib/prometheus-text.ts';
import type { Logger } from '../lib/json-log.ts';
import { SupervisedInformer } from '../lib/kube/supervised-informer.ts';
import { RESOURCES, type ResourceType } from '../lib/kube/resources.ts';
import type { KubeObject } from '../lib/kube/object-cache.ts';
import { TokenBucket } from '../lib/token-bucket.ts';
import { apiCaSecretStore, apiConfigMapStore, apiTokenReviewer } from './kube-adapters.ts';
import { electionIdentity, LeaderElector } from './leader-election.ts';
import {
  conditionTime,
  desiredParentStatuses,
  mergeRouteStatus,
  readParentStatuses,
  type RouteObject,
} from './route-status.ts';
import { StatusWriter, type RouteStatus } from './status-writer.ts';
import { TrustBundlePublisher } from './trust-bundle-publisher.ts';
import { DEFAULT_AUDIENCE, WorkloadCa, type IssuingCa, type RefusalCode } from './workload-ca.ts';
import { Backoff } from '../lib/backoff.ts';

export const ADMIN_PORT = 15014;
export const LEASE_NAME = 'sluice-controller';
const CONTROLLER_CERT_HOURS = 24;
/** Config push latency buckets, seconds: the debounce alone is 50 ms, a slow fan-out takes seconds. */
const PUSH_LATENCY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Certificate requests per second (and burst) before 429: each costs a TokenReview unless cached. A
 * rollout of 200 pods gets its certificates at once; a restart of thousands is spread over seconds. */
const CERTIFICATE_QPS = 50;
const CERTIFICATE_BURST = 200;

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
} as const satisfies Record<string, ResourceType>;
type Watched = keyof typeof WATCHED;
const MODEL_INPUTS: ReadonlySet<Watched> = new Set(['services', 'httproutes', 'grpcroutes']);

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
  /** Lease timings, for tests. */
  readonly leaseDurationMs?: number;
  readonly renewDeadlineMs?: number;
  readonly retryPeriodMs?: number;
}

/** The status to write for a route given the model, or undefined when the route's status is already right. */
export function routeStatusUpdate(
  current: RouteObject,
  model: MeshModel,
  now: string,
): RouteStatus | undefined {
  const desired = desiredParentStatuses(undefined, current, model, now);
  const parents = mergeRouteStatus(readParentStatuses(current), desired);
  if (!parents) return undefined;
  const status = isObject(current.status) ? current.status : {};
  return { ...status, parents };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message.split('\n', 1)[0]! : String(error);
}

export class Controller {
  readonly #o: ControllerOptions;
  readonly #log: Logger;
  readonly #informers: Record<Watched, SupervisedInformer>;
  readonly #hub: ConfigHub;
  readonly #writer: StatusWriter;
  readonly #elector: LeaderElector;
  readonly #bundles: TrustBundlePublisher;
  readonly #pushLatency = new Histogram(PUSH_LATENCY_BUCKETS);
  readonly #counters = {
    pushes: 0,
    pushedBytes: 0,
    snapshots: 0,
    slowSubscriberDrops: 0,
    modelRebuilds: 0,
    statusEnqueued: 0,
  };
  readonly #certificates = new Map<string, number>();
  readonly #stopping = new AbortController();
  #model: MeshModel = buildMeshModel([]);
  #synced = false;
  #listening = false;
  #configServer: ConfigServer | undefined;
  #credentials: MeshTlsCredentials | undefined;
  #admin: http.Server | undefined;
  #rebuildTimer: NodeJS.Timeout | undefined;
  #firstChangeAt: number | undefined;
  #timers: NodeJS.Timeout[] = [];
  #renewTimer: NodeJS.Timeout | undefined;
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
          ...(options.relistMs === undefined ? {} : { resyncIntervalMs: options.relistMs }),
          log: informerLog,
        }),
      ]),
    ) as Record<Watched, SupervisedInformer>;
    this.#hub = new ConfigHub({
      metrics: {
        onPush: (push) => {
          this.#counters.pushes++;
          this.#counters.pushedBytes += push.bytes;
          this.#pushLatency.observe(push.latencyMs / 1000);
        },
        onSnapshot: () => this.#counters.snapshots++,
        onDrop: (namespace, queuedBytes) => {
          this.#counters.slowSubscriberDrops++;
          this.#log.warn('config subscriber dropped: too much queued', { namespace, queuedBytes });
        },
      },
    });
    this.#writer = new StatusWriter({
      api: options.api,
      log: (message) => this.#log.warn(message, { component: 'status' }),
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
        this.#rebuild('became leader');
      },
      onStoppedLeading: () => {
        void this.#writer.stop();
        this.#bundles.stop();
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
    await this.#startAdmin();
    for (const [name, informer] of Object.entries(this.#informers) as [Watched, SupervisedInformer][]) {
      informer.on((change) => this.#onChange(name, change.type, change.object));
      informer.start();
    }
    const resync = setInterval(() => this.#rebuild('status resync'), this.#o.statusResyncMs ?? 300_000);
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
    this.#rebuild('initial sync');
    this.#log.info('informers synced', {
      ms: Math.round(performance.now() - startedAt),
      objects: Object.fromEntries(Object.entries(this.#informers).map(([n, i]) => [n, i.list().length])),
    });
    this.#elector.start();
  }

  #onChange(name: Watched, type: 'add' | 'update' | 'delete', object: KubeObject): void {
    if (type === 'delete') this.#hub.remove(object);
    else this.#hub.upsert(object);
    if (name === 'namespaces' && type === 'add' && object.metadata?.name)
      this.#bundles.namespaceAdded(object.metadata.name);
    if (MODEL_INPUTS.has(name)) this.#scheduleRebuild();
  }

  #scheduleRebuild(): void {
    if (!this.#synced || this.#stopping.signal.aborted) return;
    const debounce = this.#o.debounceMs ?? 100;
    const now = performance.now();
    this.#firstChangeAt ??= now;
    clearTimeout(this.#rebuildTimer);
    const delay = Math.max(0, Math.min(debounce, this.#firstChangeAt + 10 * debounce - now));
    this.#rebuildTimer = setTimeout(() => this.#rebuild(), delay);
  }

  /** Rebuilds the model; queues status for the routes that need it, or for all of them (`all` says why). */
  #rebuild(all?: string): void {
    clearTimeout(this.#rebuildTimer);
    this.#rebuildTimer = undefined;
    this.#firstChangeAt = undefined;
    if (!this.#synced || this.#stopping.signal.aborted) return;
    const routes = [
      ...this.#informers.httproutes.list(),
      ...this.#informers.grpcroutes.list(),
    ] as K8sObject[];
    try {
      this.#model = buildMeshModel([...(this.#informers.services.list() as K8sObject[]), ...routes]);
    } catch (error) {
      this.#log.error('mesh model rebuild failed', { error: errorText(error) });
      return;
    }
    this.#counters.modelRebuilds++;
    if (!this.#writer.active) return;
    const now = conditionTime();
    let queued = 0;
    for (const route of routes) {
      if (all === undefined) {
        let update: RouteStatus | undefined;
        try {
          update = routeStatusUpdate(route, this.#model, now);
        } catch (error) {
          this.#log.error('route status computation failed', {
            route: routeName(route),
            error: errorText(error),
          });
          continue;
        }
        if (update === undefined) continue;
      }
      queued++;
      this.#counters.statusEnqueued++;
      void this.#writer.write(route, (current) => routeStatusUpdate(current, this.#model, conditionTime()));
    }
    if (all !== undefined)
      this.#log.info('route status check of all routes', { reason: all, routes: queued });
  }

  // ---- identity, CA, config server ----

  async #startConfigServer(): Promise<void> {
    const signal = this.#stopping.signal;
    const backoff = new Backoff({ initialMs: 1000, maxMs: 30_000, jitter: 0 });
    let issuer: IssuingCa | undefined;
    while (!signal.aborted && !issuer) {
      try {
        const result = await loadOrCreateCaSecret(apiCaSecretStore(this.#o.api), {
          namespace: this.#o.namespace,
          trustDomain: this.#o.trustDomain,
        });
        issuer = result.issuer;
        this.#log.info(result.created ? 'mesh CA created' : 'mesh CA loaded', {
          secret: `${this.#o.namespace}/${CA_SECRET_NAME}`,
          notAfter: issuer.ca.cert.validToDate.toISOString(),
        });
      } catch (error) {
        const delay = backoff.next();
        this.#log.error('mesh CA unavailable; retrying', { error: describeApiError(error), retryMs: delay });
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
      }
    }
    if (!issuer || signal.aborted) return;
    this.#bundles.setBundle(issuer.trustBundlePem);
    try {
      const identity = await this.#issueOwnIdentity(issuer);
      this.#credentials = new MeshTlsCredentials(identity);
      this.#scheduleRenewal(issuer, identity);
      const ca = new WorkloadCa({
        issuer,
        reviewer: apiTokenReviewer(this.#o.api),
        audience: this.#o.audience ?? DEFAULT_AUDIENCE,
      });
      const server = new ConfigServer({
        hub: this.#hub,
        credentials: this.#credentials,
        trustDomain: this.#o.trustDomain,
        port: this.#o.configPort ?? CONFIG_PORT,
        log: (message) => this.#log.info(message, { component: 'config-server' }),
        routes: new Map([
          [
            CERTIFICATE_PATH,
            certificateHandler({
              ca,
              limiter: new TokenBucket(CERTIFICATE_QPS, CERTIFICATE_BURST),
              onResult: (result) => {
                const outcome: RefusalCode | 'Issued' = result.ok ? 'Issued' : result.code;
                this.#certificates.set(outcome, (this.#certificates.get(outcome) ?? 0) + 1);
                if (result.ok) {
                  this.#log.info('workload certificate issued', {
                    spiffeId: result.spiffeId,
                    pod: result.podName,
                    notAfter: result.notAfter.toISOString(),
                  });
                } else {
                  this.#log.warn('workload certificate refused', {
                    code: result.code,
                    reason: result.message,
                    ...('detail' in result && result.detail ? { detail: result.detail } : {}),
                  });
                }
              },
            }),
          ],
        ]),
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

  async #issueOwnIdentity(issuer: IssuingCa): Promise<Identity> {
    const keys = await generateKeyPair();
    const spiffeId = workloadSpiffeId({
      trustDomain: issuer.ca.trustDomain,
      namespace: this.#o.namespace,
      serviceAccount: CONTROLLER_SERVICE_ACCOUNT,
    });
    const leaf = await issueWorkloadCert({
      ca: issuer.ca,
      spiffeId,
      publicKey: keys.publicKey,
      dnsNames: [`${CONTROLLER_SERVICE_ACCOUNT}.${this.#o.namespace}.svc`],
      validityHours: CONTROLLER_CERT_HOURS,
    });
    return parseIdentity({
      certPem: leaf + issuer.chainPem,
      keyPem: await privateKeyToPem(keys.privateKey),
      bundlePem: issuer.trustBundlePem,
    });
  }

  #scheduleRenewal(issuer: IssuingCa, identity: Identity): void {
    const delay = Math.max(1000, renewAt(identity.notBefore, identity.notAfter).getTime() - Date.now());
    this.#renewTimer = setTimeout(
      () => {
        void this.#issueOwnIdentity(issuer).then(
          (next) => {
            this.#credentials?.update(next);
            this.#log.info('controller certificate renewed', { notAfter: next.notAfter.toISOString() });
            this.#scheduleRenewal(issuer, next);
          },
          (error: unknown) => {
            this.#log.error('controller certificate renewal failed', { error: errorText(error) });
            this.#scheduleRenewal(issuer, identity);
          },
        );
      },
      Math.min(delay, 2 ** 31 - 1),
    );
    this.#renewTimer.unref();
  }

  // ---- admin ----

  async #startAdmin(): Promise<void> {
    const server = http.createServer((req, res) => this.#onAdmin(req, res));
    this.#admin = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#o.adminPort ?? ADMIN_PORT, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.#log.error('admin server error', { error: error.message }));
    this.#log.info('admin server listening', { port: (server.address() as AddressInfo).port });
  }

  #onAdmin(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    switch (path) {
      case '/live':
        return send(200, 'ok\n');
      case '/ready': {
        if (this.ready) return send(200, 'ready\n');
        const waiting = Object.entries(this.#informers)
          .filter(([, informer]) => informer.stats.resourceVersion === '')
          .map(([name]) => name);
        const why = [
          ...(this.#stopping.signal.aborted ? ['stopping'] : []),
          ...(waiting.length > 0 ? [`informers not synced: ${waiting.join(', ')}`] : []),
          ...(this.#listening ? [] : ['config server not listening']),
        ];
        return send(503, `not ready: ${why.join('; ') || 'starting'}\n`);
      }
      case '/metrics':
        return send(200, this.metricsText(), 'text/plain; version=0.0.4; charset=utf-8');
      default:
        return send(404, 'not found: /ready, /live, /metrics\n');
    }
  }

  metricsText(): string {
    const hub = this.#hub.stats();
    const status = this.#writer.metrics();
    const informers = Object.entries(this.#informers).map(([name, informer]) => ({
      name,
      stats: informer.stats,
      objects: informer.list().length,
    }));
    const perInformer = (value: (s: (typeof informers)[number]) => number): Sample[] =>
      informers.map((i) => ({ labels: { resource: i.name }, value: value(i) }));
    const c = this.#counters;
    const lines = [
      ...renderFamily('sluice_controller_is_leader', 'gauge', '1 while this replica holds the Lease', [
        { value: this.#elector.isLeader ? 1 : 0 },
      ]),
      ...renderFamily(
        'sluice_controller_ready',
        'gauge',
        '1 when informers synced and config server listening',
        [{ value: this.ready ? 1 : 0 }],
      ),
      ...this.#pushLatency.render(
        'sluice_config_push_latency_seconds',
        'From the first change of a batch to the last frame handed to a subscriber',
      ),
      ...renderFamily('sluice_config_pushes_total', 'counter', 'Config batches pushed', [
        { value: c.pushes },
      ]),
      ...renderFamily(
        'sluice_config_pushed_bytes_total',
        'counter',
        'Bytes handed to subscribers in deltas',
        [{ value: c.pushedBytes }],
      ),
      ...renderFamily('sluice_config_snapshots_total', 'counter', 'Snapshots sent', [{ value: c.snapshots }]),
      ...renderFamily('sluice_config_subscribers', 'gauge', 'Open config streams', [
        { value: hub.subscribers },
      ]),
      ...renderFamily('sluice_config_objects', 'gauge', 'Stripped objects held for sidecars', [
        { value: hub.objects },
      ]),
      ...renderFamily(
        'sluice_config_queued_bytes',
        'gauge',
        'Bytes queued towards subscribers (total, largest)',
        [
          { labels: { stat: 'total' }, value: hub.totalQueuedBytes },
          { labels: { stat: 'max' }, value: hub.maxQueuedBytes },
        ],
      ),
      ...renderFamily(
        'sluice_config_dropped_subscribers_total',
        'counter',
        'Subscribers dropped for falling behind',
        [{ value: hub.dropped }],
      ),
      ...renderFamily('sluice_status_queue_depth', 'gauge', 'Route status writes waiting', [
        { value: status.queueDepth },
      ]),
      ...renderFamily('sluice_status_in_flight', 'gauge', 'Route status writes in progress', [
        { value: status.inFlight },
      ]),
      ...renderFamily('sluice_status_writes_total', 'counter', 'Route status requests by outcome', [
        { labels: { outcome: 'written' }, value: status.writes },
        { labels: { outcome: 'unchanged' }, value: status.unchanged },
        { labels: { outcome: 'deleted' }, value: status.deleted },
        { labels: { outcome: 'superseded' }, value: status.superseded },
        { labels: { outcome: 'dropped' }, value: status.dropped },
        { labels: { outcome: 'failed' }, value: status.errors },
      ]),
      ...renderFamily('sluice_status_conflicts_total', 'counter', 'Status writes that hit 409 Conflict', [
        { value: status.conflicts },
      ]),
      ...renderFamily('sluice_status_api_requests_total', 'counter', 'API requests of the status writer', [
        { labels: { verb: 'get' }, value: status.requests.get },
        { labels: { verb: 'patch' }, value: status.requests.patch },
      ]),
      ...renderFamily('sluice_model_rebuilds_total', 'counter', 'Mesh model rebuilds', [
        { value: c.modelRebuilds },
      ]),
      ...renderFamily(
        'sluice_informer_objects',
        'gauge',
        'Objects in each informer cache',
        perInformer((i) => i.objects),
      ),
      ...renderFamily(
        'sluice_informer_restarts_total',
        'counter',
        'Watch restarts after failures',
        perInformer((i) => i.stats.restarts),
      ),
      ...renderFamily(
        'sluice_informer_relists_total',
        'counter',
        'Lists after the first',
        perInformer((i) => i.stats.relists),
      ),
      ...renderFamily(
        'sluice_informer_watching',
        'gauge',
        '1 while the watch is open',
        perInformer((i) => (i.stats.watching ? 1 : 0)),
      ),
      ...renderFamily(
        'sluice_trust_bundle_writes_total',
        'counter',
        'Trust bundle ConfigMap checks by outcome',
        [
          { labels: { outcome: 'created' }, value: this.#bundles.stats.created },
          { labels: { outcome: 'updated' }, value: this.#bundles.stats.updated },
          { labels: { outcome: 'unchanged' }, value: this.#bundles.stats.unchanged },
          { labels: { outcome: 'foreign' }, value: this.#bundles.stats.foreign },
          { labels: { outcome: 'failed' }, value: this.#bundles.stats.failed },
        ],
      ),
      ...renderFamily(
        'sluice_ca_certificates_total',
        'counter',
        'Workload certificate requests by outcome',
        [...this.#certificates].map(([outcome, value]) => ({ labels: { outcome }, value })),
      ),
      ...processFamilies(),
    ];
    return `${lines.join('\n')}\n`;
  }

  /** Graceful stop: not ready, step down (status writes stop, the Lease is released), streams end. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping.abort();
      clearTimeout(this.#rebuildTimer);
      clearTimeout(this.#renewTimer);
      for (const timer of this.#timers) clearInterval(timer);
      await this.#elector.stop();
      await this.#configServer?.close();
      this.#hub.close();
      await Promise.all(Object.values(this.#informers).map((informer) => informer.stop()));
      const admin = this.#admin;
      if (admin) {
        const closed = new Promise<void>((resolve) => admin.close(() => resolve()));
        admin.closeAllConnections();
        await closed;
      }
      this.#log.info('controller stopped');
    })();
    return this.#stopped;
  }
}

function routeName(route: K8sObject): string {
  return `${route.kind ?? ''} ${route.metadata?.namespace ?? ''}/${route.metadata?.name ?? ''}`;
}
