// The controller's /metrics text: leadership, config distribution, route status, informers, trust bundles,
// workload certificates and the process (rendered by lib/prometheus-text.ts).
import type { SupervisedInformer } from '../lib/kube/supervised-informer.ts';
import {
  Histogram,
  processFamilies,
  renderFamily,
  type HttpServerDuration,
  type Sample,
} from '../lib/prometheus-text.ts';
import type { ConfigHubStats } from './config-hub.ts';
import type { StatusWriter } from './status-writer.ts';
import type { TrustBundlePublisher } from './trust-bundle-publisher.ts';

/** Config push latency buckets, seconds: the debounce alone is 50 ms, a slow fan-out takes seconds. */
export const PUSH_LATENCY_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** The controller's own counters (the other figures come from its parts). */
export interface ControllerCounters {
  pushes: number;
  pushedBytes: number;
  snapshots: number;
  slowSubscriberDrops: number;
  modelRebuilds: number;
  statusEnqueued: number;
}

export function newCounters(): ControllerCounters {
  return {
    pushes: 0,
    pushedBytes: 0,
    snapshots: 0,
    slowSubscriberDrops: 0,
    modelRebuilds: 0,
    statusEnqueued: 0,
  };
}

export interface ControllerMetricsInput {
  readonly isLeader: boolean;
  readonly ready: boolean;
  readonly pushLatency: Histogram;
  readonly counters: Readonly<ControllerCounters>;
  readonly hub: ConfigHubStats;
  readonly status: ReturnType<StatusWriter['metrics']>;
  readonly informers: Readonly<Record<string, SupervisedInformer>>;
  readonly bundles: TrustBundlePublisher['stats'];
  /** Workload certificate requests by "outcome|reason" (bounded: RefusalCode x CertificateReason). */
  readonly certificates: ReadonlyMap<string, number>;
  /** The config server's request durations (absent until it listens). */
  readonly http?: HttpServerDuration | undefined;
}

export function controllerMetricsText(m: ControllerMetricsInput): string {
  const { hub, status, bundles } = m;
  const informers = Object.entries(m.informers).map(([name, informer]) => ({
    name,
    stats: informer.stats,
    objects: informer.list().length,
  }));
  const perInformer = (value: (s: (typeof informers)[number]) => number): Sample[] =>
    informers.map((i) => ({ labels: { resource: i.name }, value: value(i) }));
  const c = m.counters;
  const lines = [
    ...renderFamily('sluice_controller_is_leader', 'gauge', '1 while this replica holds the Lease', [
      { value: m.isLeader ? 1 : 0 },
    ]),
    ...renderFamily(
      'sluice_controller_ready',
      'gauge',
      '1 when informers synced and config server listening',
      [{ value: m.ready ? 1 : 0 }],
    ),
    ...m.pushLatency.render(
      'sluice_config_push_latency_seconds',
      'From the first change of a batch to the last frame handed to a subscriber',
    ),
    ...renderFamily('sluice_config_pushes_total', 'counter', 'Config batches pushed', [{ value: c.pushes }]),
    ...renderFamily('sluice_config_pushed_bytes_total', 'counter', 'Bytes handed to subscribers in deltas', [
      { value: c.pushedBytes },
    ]),
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
        { labels: { outcome: 'created' }, value: bundles.created },
        { labels: { outcome: 'updated' }, value: bundles.updated },
        { labels: { outcome: 'unchanged' }, value: bundles.unchanged },
        { labels: { outcome: 'foreign' }, value: bundles.foreign },
        { labels: { outcome: 'failed' }, value: bundles.failed },
      ],
    ),
    ...renderFamily(
      'sluice_ca_certificates_total',
      'counter',
      'Workload certificate requests by outcome and reason (issued, or why refused)',
      [...m.certificates].map(([key, value]) => {
        const [outcome = key, reason = 'unknown'] = key.split('|');
        return { labels: { outcome, reason }, value };
      }),
    ),
    ...(m.http?.render() ?? []),
    ...processFamilies(),
  ];
  return `${lines.join('\n')}\n`;
}
