import { parseArgs } from 'node:util';
import { parseFlags, portFlag, UsageError } from '../lib/usage-error.ts';
import { controllerSpiffeId } from '../protocol/config-protocol.ts';
import { loadIdentityDir } from '../pki/identity-dir.ts';
import { parseSpiffeId, parseWorkloadSpiffeId } from '../pki/spiffe-id.ts';
import { StandaloneConfigSource, type ConfigSource, type ViewBuilder } from '../sidecar/config-source.ts';
import { gatewayConfigBuilder, type GatewayConfig } from '../sidecar/gateway-config.ts';
import { GatewayProxy } from '../sidecar/gateway-proxy.ts';
import { ControllerConfigSource } from '../sidecar/controller-config-source.ts';
import { ControllerIdentity } from '../sidecar/controller-identity.ts';
import { identityDirSource, SidecarProxy, type IdentitySource, type ProxyOptions } from '../sidecar/proxy.ts';
import { checkEndpoint } from '../protocol/tracing-config.ts';
import { jsonLogger, type Logger } from '../lib/json-log.ts';
import { parseBooleanText } from '../protocol/capture-config.ts';
import { DEFAULT_HEADER_LIMITS } from '../sidecar/header-limits.ts';
import type { NormalizeOptions } from '../mesh-model/request-target.ts';

/** A positive integer flag (at most 16 Mi), or `fallback` when absent. */
function countFlag(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 16 * 1024 * 1024) {
    throw new UsageError(`--${name} must be a positive integer, got '${value}'`);
  }
  return n;
}
import { DEFAULT_LIMITS, type ProxyLimits } from '../sidecar/limits.ts';

const USAGE = `usage: sluice proxy --manifests DIR --identity DIR [options]
       sluice proxy --controller HOST:PORT --token-file FILE --ca-bundle-file FILE [options]
  --manifests DIR        standalone config: Kubernetes manifests (Services, EndpointSlices, Pods, routes)
  --identity DIR         cert.pem, key.pem, bundle.pem (see docs/identity-dir.md)
  --namespace NS         the pod's namespace (default: from the certificate's SPIFFE ID)
  --controller HOST:PORT config stream and workload certificates from sluice controller (port 15012)
  --token-file FILE      the pod's projected service-account token (audience sluice.dev/mesh)
  --ca-bundle-file FILE  trust bundle to verify the controller (ConfigMap sluice-ca-root, key ca.crt)
  --controller-identity ID  SPIFFE ID of the controller, default spiffe://TD/ns/sluice-system/sa/sluice-controller
  --trust-domain TD      default cluster.local
  --mode MODE            inbound mTLS: PERMISSIVE (default) or STRICT; or gateway: serve a Gateway
  --gateway NAME         with --mode gateway: the Gateway (in the pod's namespace) whose listeners to serve
  --outbound-port N      default 15001    --inbound-port N   default 15006
  --admin-port N         default 15021    --bind ADDR        default ::
  --app-address ADDR     hand inbound traffic to the app at this address (default: the address the
                         connection was sent to, i.e. the pod IP, from source 127.0.0.6 or ::1)
  --inbound-to-localhost true|false  same as --app-address 127.0.0.1: loopback-only app ports become
                         reachable through the sidecar (annotation sluice.dev/inbound-to-localhost)
  --detect-timeout-ms N  protocol detection wait, default 5000 (never makes a declared HTTP port opaque)
  --max-request-headers N       request headers allowed (431 beyond), default 100
  --max-request-header-bytes N  bytes of request line and headers allowed (431 beyond), default 61440
  --drain-seconds N      graceful drain on SIGTERM, default 5
  --drain-delay-seconds N  on SIGTERM, keep accepting N s after /ready turned 503 (classic sidecars), default 0
limits (docs/security.md; 0 turns a timeout or cap off):
  --header-timeout-ms N             request headers must arrive within N ms, default 10000
  --request-body-idle-timeout-ms N  a request body silent for N ms is cut, default 60000
  --stream-idle-timeout-ms N        a request or HTTP/2 stream silent for N ms is cut, default 300000
  --idle-timeout-ms N               an HTTP connection with no request for N ms is closed, default 3600000
  --upstream-idle-timeout-ms N      a pooled upstream connection unused for N ms is closed, default 60000
  --upstream-connect-timeout-ms N   an upstream connection (TCP and mesh TLS) not up in N ms: another
                                    endpoint, else 503; default 10000
  --upstream-tcp-connect-timeout-ms N  its TCP connect (SYN to established) not done in N ms: the same;
                                    default 2000
  --tcp-idle-timeout-ms N           an opaque TCP connection silent for N ms is closed, default 3600000
  --max-downstream-connections N    open connections per listener, default 10000
  --max-upstream-connections N      HTTP/1.1 connections per upstream endpoint (then the queue), default 64
  --max-upstream-tcp-connections N  opaque TCP connections per upstream endpoint (then closed), default 1024
  --max-upstream-queue N            requests per endpoint waiting for a connection (then 503), default 10000
  --max-held-requests N             requests held upstream at once, all endpoints (then 503), default 4096
  --merge-slashes                   merge runs of '/' in request paths before matching
  --escaped-slashes reject|keep     %2F and %5C in a path: 400 (default) or kept escaped
tracing (docs/observability.md; mesh-wide settings come from the ConfigMap sluice-system/sluice-mesh-config):
  --tracing-endpoint URL            OTLP/HTTP traces URL used when the mesh config names none
  --tracing-sampling-percent P      this pod's share of new traces, 0-100 (annotation
                                    sluice.dev/tracing-sampling-percent); default: the namespace's or mesh's
  --tracing-service-name NAME       service.name of this workload's spans (default: env SLUICE_SERVICE_NAME,
                                    else the pod name, else "sluice-proxy")`;

const LIMIT_FLAGS = {
  'header-timeout-ms': 'headerTimeoutMs',
  'request-body-idle-timeout-ms': 'requestBodyIdleTimeoutMs',
  'stream-idle-timeout-ms': 'streamIdleTimeoutMs',
  'idle-timeout-ms': 'idleTimeoutMs',
  'upstream-idle-timeout-ms': 'upstreamIdleTimeoutMs',
  'upstream-connect-timeout-ms': 'upstreamConnectTimeoutMs',
  'upstream-tcp-connect-timeout-ms': 'upstreamTcpConnectTimeoutMs',
  'tcp-idle-timeout-ms': 'tcpIdleTimeoutMs',
  'max-downstream-connections': 'maxDownstreamConnections',
  'max-upstream-connections': 'maxUpstreamConnections',
  'max-upstream-tcp-connections': 'maxUpstreamTcpConnections',
  'max-upstream-queue': 'maxUpstreamQueue',
  'max-held-requests': 'maxHeldRequests',
} as const satisfies Record<string, keyof ProxyLimits>;

function limitsFrom(values: Partial<Record<keyof typeof LIMIT_FLAGS, string>>): ProxyLimits {
  const limits: Record<string, number> = { ...DEFAULT_LIMITS };
  for (const [flag, key] of Object.entries(LIMIT_FLAGS)) {
    const value = values[flag as keyof typeof LIMIT_FLAGS];
    if (value === undefined) continue;
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)))
      throw new UsageError(`--${flag} must be a whole number, got '${value}'`);
    limits[key] = Number(value);
  }
  return limits as unknown as ProxyLimits;
}

export async function main(args: string[]): Promise<number | undefined> {
  const { values } = parseFlags(() =>
    parseArgs({
      args,
      options: {
        manifests: { type: 'string' },
        identity: { type: 'string' },
        controller: { type: 'string' },
        'token-file': { type: 'string' },
        'ca-bundle-file': { type: 'string' },
        'controller-identity': { type: 'string' },
        'trust-domain': { type: 'string' },
        namespace: { type: 'string' },
        mode: { type: 'string' },
        gateway: { type: 'string' },
        'outbound-port': { type: 'string' },
        'inbound-port': { type: 'string' },
        'admin-port': { type: 'string' },
        bind: { type: 'string' },
        'app-address': { type: 'string' },
        'inbound-to-localhost': { type: 'string' },
        'detect-timeout-ms': { type: 'string' },
        'max-request-headers': { type: 'string' },
        'max-request-header-bytes': { type: 'string' },
        'drain-seconds': { type: 'string' },
        'drain-delay-seconds': { type: 'string' },
        ...Object.fromEntries(Object.keys(LIMIT_FLAGS).map((f) => [f, { type: 'string' as const }])),
        'merge-slashes': { type: 'boolean' },
        'escaped-slashes': { type: 'string' },
        'tracing-endpoint': { type: 'string' },
        'tracing-sampling-percent': { type: 'string' },
        'tracing-service-name': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const mode = (values.mode ?? 'PERMISSIVE').toUpperCase();
  if (mode !== 'STRICT' && mode !== 'PERMISSIVE' && mode !== 'GATEWAY')
    throw new UsageError(`--mode must be STRICT, PERMISSIVE or gateway, got '${values.mode}'`);
  if ((mode === 'GATEWAY') !== (values.gateway !== undefined))
    throw new UsageError('--mode gateway and --gateway NAME go together');
  const toLocalhost =
    values['inbound-to-localhost'] === undefined ? false : parseBooleanText(values['inbound-to-localhost']);
  if (toLocalhost === undefined)
    throw new UsageError(
      `--inbound-to-localhost must be true or false, got '${values['inbound-to-localhost']}'`,
    );
  if (toLocalhost && values['app-address'] !== undefined)
    throw new UsageError('--inbound-to-localhost and --app-address cannot be used together');
  const escapedSlashes = values['escaped-slashes'] ?? 'reject';
  if (escapedSlashes !== 'reject' && escapedSlashes !== 'keep')
    throw new UsageError(`--escaped-slashes must be reject or keep, got '${escapedSlashes}'`);
  const limits = limitsFrom(values as Partial<Record<keyof typeof LIMIT_FLAGS, string>>);
  const log = jsonLogger('proxy');
  const build = values.gateway === undefined ? undefined : gatewayConfigBuilder(values.gateway);
  const { source, identity } =
    values.controller === undefined
      ? await standaloneSources(values, log, build)
      : controllerSources(values, log, build);
  const headerLimits = {
    maxHeaders: countFlag(
      values['max-request-headers'],
      DEFAULT_HEADER_LIMITS.maxHeaders,
      'max-request-headers',
    ),
    maxHeaderBytes: countFlag(
      values['max-request-header-bytes'],
      DEFAULT_HEADER_LIMITS.maxHeaderBytes,
      'max-request-header-bytes',
    ),
  };
  const normalize: NormalizeOptions = { mergeSlashes: values['merge-slashes'] === true, escapedSlashes };
  const common = {
    identity,
    adminPort: portFlag(values['admin-port'], 15021, 'admin-port'),
    bind: values.bind ?? '::',
    detectTimeoutMs: Number(values['detect-timeout-ms'] ?? 5000),
    headerLimits,
    drainMs: Number(values['drain-seconds'] ?? 5) * 1000,
    limits,
    normalize,
    log,
    tracing: tracingFlags(values),
  };
  const proxy: { start(): Promise<void>; drain(): Promise<void> } = build
    ? new GatewayProxy({ ...common, source: source as ConfigSource<GatewayConfig> })
    : new SidecarProxy({
        ...common,
        source: source as ConfigSource,
        mode: mode as 'STRICT' | 'PERMISSIVE',
        outboundPort: portFlag(values['outbound-port'], 15001, 'outbound-port'),
        inboundPort: portFlag(values['inbound-port'], 15006, 'inbound-port'),
        appAddress: toLocalhost ? '127.0.0.1' : values['app-address'],
        drainDelayMs: Number(values['drain-delay-seconds'] ?? 0) * 1000,
      });
  await proxy.start();
  const shutdown = (signal: string): void => {
    log.info('draining', { signal });
    void proxy.drain().then(() => {
      log.info('drained, exiting');
      process.exit(0);
    });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  return undefined;
}

function tracingFlags(values: {
  'tracing-endpoint'?: string | undefined;
  'tracing-sampling-percent'?: string | undefined;
  'tracing-service-name'?: string | undefined;
}): NonNullable<ProxyOptions['tracing']> {
  const endpointText = values['tracing-endpoint'];
  const endpoint = endpointText === undefined ? undefined : checkEndpoint(endpointText);
  if (endpointText !== undefined && endpoint === undefined)
    throw new UsageError(`--tracing-endpoint must be an http(s) URL, got '${endpointText}'`);
  const percentText = values['tracing-sampling-percent'];
  const percent = percentText === undefined ? undefined : Number(percentText);
  if (percent !== undefined && (percentText!.trim() === '' || !(percent >= 0 && percent <= 100)))
    throw new UsageError(`--tracing-sampling-percent must be between 0 and 100, got '${percentText}'`);
  const pod = process.env.POD_NAME;
  const node = process.env.NODE_NAME;
  return {
    resource: {
      'service.name':
        values['tracing-service-name'] || process.env.SLUICE_SERVICE_NAME || pod || 'sluice-proxy',
      ...(pod ? { 'k8s.pod.name': pod } : {}),
      ...(node ? { 'k8s.node.name': node } : {}),
    },
    ...(endpoint ? { endpoint } : {}),
    ...(percent === undefined ? {} : { podSamplingRatio: percent / 100 }),
  };
}

interface SourceFlags {
  manifests?: string | undefined;
  identity?: string | undefined;
  namespace?: string | undefined;
  controller?: string | undefined;
  'token-file'?: string | undefined;
  'ca-bundle-file'?: string | undefined;
  'controller-identity'?: string | undefined;
  'trust-domain'?: string | undefined;
}
type Sources = { source: ConfigSource<unknown>; identity: IdentitySource };

async function standaloneSources(
  values: SourceFlags,
  log: Logger,
  build: ViewBuilder<GatewayConfig> | undefined,
): Promise<Sources> {
  for (const flag of ['token-file', 'ca-bundle-file', 'controller-identity'] as const) {
    if (values[flag] !== undefined) throw new UsageError(`--${flag} goes with --controller`);
  }
  if (!values.manifests) throw new UsageError('proxy needs --manifests DIR or --controller HOST:PORT');
  if (!values.identity) throw new UsageError('proxy needs --identity DIR');
  let identity;
  try {
    identity = await loadIdentityDir(values.identity);
  } catch (err) {
    throw new UsageError(`--identity ${values.identity}: ${(err as Error).message}`);
  }
  const workload = parseWorkloadSpiffeId(identity.spiffeId);
  return {
    source: new StandaloneConfigSource<unknown>({
      dir: values.manifests,
      namespace: values.namespace ?? workload.namespace,
      trustDomain: identity.trustDomain,
      ...(build ? { build } : {}),
    }),
    identity: identityDirSource(values.identity, log),
  };
}

function controllerSources(
  values: SourceFlags,
  log: Logger,
  build: ViewBuilder<GatewayConfig> | undefined,
): Sources {
  if (values.namespace !== undefined) {
    throw new UsageError('--namespace goes with --manifests (with --controller the certificate names it)');
  }
  for (const flag of ['manifests', 'identity'] as const) {
    if (values[flag] !== undefined) {
      throw new UsageError(
        `--${flag} and --controller are alternatives: use --manifests/--identity or --controller`,
      );
    }
  }
  const address = values.controller!;
  const tokenFile = values['token-file'];
  const caBundleFile = values['ca-bundle-file'];
  if (!tokenFile) throw new UsageError('--controller needs --token-file FILE (the projected token)');
  if (!caBundleFile) throw new UsageError('--controller needs --ca-bundle-file FILE (the trust bundle)');
  const expected =
    values['controller-identity'] ?? controllerSpiffeId(values['trust-domain'] ?? 'cluster.local');
  try {
    parseSpiffeId(expected);
  } catch (err) {
    throw new UsageError(`--controller-identity: ${(err as Error).message}`);
  }
  try {
    const identity = new ControllerIdentity({
      address,
      tokenFile,
      caBundleFile,
      controllerSpiffeId: expected,
      log,
    });
    return {
      identity,
      source: new ControllerConfigSource<unknown>({
        address,
        identity: () => identity.current,
        controllerSpiffeId: expected,
        onTrust: (frame) => identity.trust(frame),
        ...(build ? { build } : {}),
      }),
    };
  } catch (err) {
    throw new UsageError(`--controller: ${(err as Error).message}`);
  }
}
