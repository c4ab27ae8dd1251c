// Config to sidecars (ADR 0005): the hub that holds the stripped objects and the mTLS HTTP/2 server on the
// config port, which also answers certificate requests (POST /v1/certificate) for the mesh CA.
import type { Logger } from '../lib/json-log.ts';
import type { KubeApi } from '../lib/kube/kube-api.ts';
import type { Histogram } from '../lib/prometheus-text.ts';
import { performance } from 'node:perf_hooks';
import type { Identity } from '../pki/identity.ts';
import type { MeshTlsCredentials } from '../pki/tls-options.ts';
import { CERTIFICATE_PATH } from '../protocol/certificate-protocol.ts';
import { CONFIG_PORT } from '../protocol/config-protocol.ts';
import { CachedTokenReviewer, KeyedLimiter } from './certificate-admission.ts';
import { certificateHandler, type CertificateReason } from './certificate-endpoint.ts';
import { ConfigHub } from './config-hub.ts';
import { ConfigServer, type ConfigServerOptions } from './config-server.ts';
import { apiTokenReviewer } from './kube-adapters.ts';
import { DEFAULT_AUDIENCE, WorkloadCa, type IssuingCa, type TokenReviewer } from './workload-ca.ts';

/** TokenReviews per second (and burst) sent to the API server; cached answers cost none. A rollout of
 * 200 pods gets its certificates at once; a restart of thousands is spread over seconds. */
const REVIEW_BUDGET = { qps: 50, burst: 200 };
/** Per source address (a pod IP): a sidecar asks once per start and per renewal. */
const PER_SOURCE = { qps: 1, burst: 10 };
/** A source whose token fails review waits this many seconds more before its next request. */
const FAILED_REVIEW_COST = 30;
/** Per workload (pod UID): ten at once, then one a minute. */
const PER_WORKLOAD = { qps: 1 / 60, burst: 10 };
const MAX_TRACKED = 10_000;
/** Refusals that cost nothing and come in floods: counted, not logged one by one. */
const QUIET_REASONS: ReadonlySet<CertificateReason> = new Set([
  'method',
  'no_token',
  'malformed_token',
  'source_rate_limited',
  'review_budget',
  'identity_rate_limited',
]);

/** A hub whose pushes, snapshots and drops are counted (and drops logged). */
export function countedHub(
  log: Logger,
  counters: { pushes: number; pushedBytes: number; snapshots: number; slowSubscriberDrops: number },
  pushLatency: Histogram,
): ConfigHub {
  return new ConfigHub({
    metrics: {
      onPush: (push) => {
        counters.pushes++;
        counters.pushedBytes += push.bytes;
        pushLatency.observe(push.latencyMs / 1000);
      },
      onSnapshot: () => counters.snapshots++,
      onDrop: (namespace, queuedBytes) => {
        counters.slowSubscriberDrops++;
        log.warn('config subscriber dropped: too much queued', { namespace, queuedBytes });
      },
    },
  });
}

export interface ConfigServerSetup {
  /** For TokenReviews, unless `reviewer` is given. */
  readonly api?: KubeApi;
  readonly log: Logger;
  readonly hub: ConfigHub;
  readonly issuer: IssuingCa;
  readonly identity: Identity;
  readonly credentials: MeshTlsCredentials;
  readonly trustDomain: string;
  readonly port?: number;
  /** The audience of workload tokens (sluice.dev/mesh). */
  readonly audience?: string;
  /** Who reviews tokens; default a TokenReview through `api` (tests pass a stand-in for the API server). */
  readonly reviewer?: TokenReviewer;
  /** Monotonic ms for the rate limits and the review cache; default performance.now. */
  readonly now?: () => number;
  /** Counts workload certificate requests by "outcome|reason". */
  readonly certificates: Map<string, number>;
  /** Lifetime of workload certificates (WorkloadCa; default 24 h). */
  readonly workloadCertHours?: number;
  /** Gateway proxies' config (config-server.ts). */
  readonly gatewayFeed?: ConfigServerOptions['gatewayFeed'];
}

/** The config server with the certificate endpoint (not listening yet). */
export function createConfigServer(setup: ConfigServerSetup): ConfigServer {
  const { log, certificates } = setup;
  const now = setup.now ?? ((): number => performance.now());
  const reviewer = setup.reviewer ?? (setup.api && apiTokenReviewer(setup.api));
  if (!reviewer) throw new TypeError('createConfigServer needs api or reviewer');
  const audience = setup.audience ?? DEFAULT_AUDIENCE;
  const perWorkload = new KeyedLimiter(PER_WORKLOAD, MAX_TRACKED, now);
  const ca = new WorkloadCa({
    issuer: setup.issuer,
    reviewer: new CachedTokenReviewer({
      reviewer,
      budget: REVIEW_BUDGET,
      now,
    }),
    audience,
    ...(setup.workloadCertHours === undefined ? {} : { validityHours: setup.workloadCertHours }),
    admitIdentity: (key) => perWorkload.tryTake(key),
  });
  const server = new ConfigServer({
    hub: setup.hub,
    credentials: setup.credentials,
    trustDomain: setup.trustDomain,
    port: setup.port ?? CONFIG_PORT,
    log: (message) => log.info(message, { component: 'config-server' }),
    ...(setup.gatewayFeed ? { gatewayFeed: setup.gatewayFeed } : {}),
    // Read in one synchronous step, so both come from the same version of a reloaded CA.
    trust: () => ({ bundle: setup.issuer.trustBundlePem, signer: setup.issuer.ca.certPem }),
    routes: new Map([
      [
        CERTIFICATE_PATH,
        certificateHandler({
          ca,
          audience,
          perSource: new KeyedLimiter(PER_SOURCE, MAX_TRACKED, now),
          failedReviewCost: FAILED_REVIEW_COST,
          onResult: ({ reason, result, source }) => {
            const key = `${result.ok ? 'Issued' : result.code}|${reason}`;
            certificates.set(key, (certificates.get(key) ?? 0) + 1);
            if (result.ok) {
              log.info('workload certificate issued', {
                spiffeId: result.spiffeId,
                pod: result.podName,
                notAfter: result.notAfter.toISOString(),
              });
            } else if (!QUIET_REASONS.has(reason)) {
              log.warn('workload certificate refused', {
                code: result.code,
                reason,
                message: result.message,
                source,
                ...(result.detail ? { detail: result.detail } : {}),
              });
            }
          },
        }),
      ],
    ]),
  });
  return server;
}
