// Config to sidecars (ADR 0005): the hub that holds the stripped objects and the mTLS HTTP/2 server on the
// config port, which also answers certificate requests (POST /v1/certificate) for the mesh CA.
import type { Logger } from '../lib/json-log.ts';
import type { KubeApi } from '../lib/kube/kube-api.ts';
import type { Histogram } from '../lib/prometheus-text.ts';
import { TokenBucket } from '../lib/token-bucket.ts';
import type { Identity } from '../pki/identity.ts';
import type { MeshTlsCredentials } from '../pki/tls-options.ts';
import { CERTIFICATE_PATH } from '../protocol/certificate-protocol.ts';
import { CONFIG_PORT } from '../protocol/config-protocol.ts';
import { certificateHandler } from './certificate-endpoint.ts';
import { ConfigHub } from './config-hub.ts';
import { ConfigServer } from './config-server.ts';
import { apiTokenReviewer } from './kube-adapters.ts';
import { DEFAULT_AUDIENCE, WorkloadCa, type IssuingCa, type RefusalCode } from './workload-ca.ts';

/** Certificate requests per second (and burst) before 429: each costs a TokenReview unless cached. A
 * rollout of 200 pods gets its certificates at once; a restart of thousands is spread over seconds. */
const CERTIFICATE_QPS = 50;
const CERTIFICATE_BURST = 200;

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
  readonly api: KubeApi;
  readonly log: Logger;
  readonly hub: ConfigHub;
  readonly issuer: IssuingCa;
  readonly identity: Identity;
  readonly credentials: MeshTlsCredentials;
  readonly trustDomain: string;
  readonly port?: number;
  /** The audience of workload tokens (sluice.dev/mesh). */
  readonly audience?: string;
  /** Counts workload certificate requests by outcome. */
  readonly certificates: Map<string, number>;
}

/** The config server with the certificate endpoint (not listening yet). */
export function createConfigServer(setup: ConfigServerSetup): ConfigServer {
  const { log, certificates } = setup;
  const ca = new WorkloadCa({
    issuer: setup.issuer,
    reviewer: apiTokenReviewer(setup.api),
    audience: setup.audience ?? DEFAULT_AUDIENCE,
  });
  const server = new ConfigServer({
    hub: setup.hub,
    credentials: setup.credentials,
    trustDomain: setup.trustDomain,
    port: setup.port ?? CONFIG_PORT,
    log: (message) => log.info(message, { component: 'config-server' }),
    routes: new Map([
      [
        CERTIFICATE_PATH,
        certificateHandler({
          ca,
          limiter: new TokenBucket(CERTIFICATE_QPS, CERTIFICATE_BURST),
          onResult: (result) => {
            const outcome: RefusalCode | 'Issued' = result.ok ? 'Issued' : result.code;
            certificates.set(outcome, (certificates.get(outcome) ?? 0) + 1);
            if (result.ok) {
              log.info('workload certificate issued', {
                spiffeId: result.spiffeId,
                pod: result.podName,
                notAfter: result.notAfter.toISOString(),
              });
            } else {
              log.warn('workload certificate refused', {
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
  return server;
}
