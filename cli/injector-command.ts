// `sluice injector`: the mutating admission webhook that adds the Sluice init container and proxy to pods
// in labelled namespaces (see pod-injection.ts). Runs until SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import { parseFlags, portFlag, UsageError } from '../lib/usage-error.ts';
import { describeApiError, type KubeApi } from '../lib/kube/kube-api.ts';
import {
  CONFIG_PORT,
  DEFAULT_CONTROL_PLANE_NAMESPACE,
  DEFAULT_TRUST_DOMAIN,
} from '../protocol/config-protocol.ts';
import { jsonLogger, type Logger } from '../lib/json-log.ts';
import { loadKubeConfig } from '../lib/kube/kube-config.ts';
import { ownPodImage, trustDomainFlag, type ContainerImage } from './control-plane-flags.ts';
import type { InjectionSettings } from '../injector/pod-injection.ts';
import {
  DEFAULT_PROXY_RESOURCES,
  PROXY_CPU_REQUEST_ANNOTATION,
  proxyResourcesFromFlags,
} from '../protocol/proxy-resources.ts';
import { WebhookCertificate } from '../injector/webhook-certificate.ts';
import { ADMIN_PORT, InjectorServer, WEBHOOK_PORT } from '../injector/webhook-server.ts';

const USAGE = `usage: sluice injector [options]
  --proxy-image IMAGE   image of the injected containers (env SLUICE_PROXY_IMAGE); default: this pod's image
  --controller ADDR     what injected proxies connect to, default sluice-controller.NAMESPACE.svc:${CONFIG_PORT}
  --sidecar-mode MODE   native (init container, restartPolicy Always), classic, or auto (default: native
                        when the API server is Kubernetes ≥ 1.29)
  --mtls-mode MODE      inbound mTLS of injected proxies: PERMISSIVE (default) or STRICT; a pod's
                        sluice.dev/mtls-mode annotation wins
  --proxy-cpu-request Q     CPU request of injected proxies (env SLUICE_PROXY_CPU_REQUEST), default
                        ${DEFAULT_PROXY_RESOURCES.cpuRequest}; a pod's ${PROXY_CPU_REQUEST_ANNOTATION} annotation wins
  --proxy-memory-request Q  memory request of injected proxies (env SLUICE_PROXY_MEMORY_REQUEST), default
                        ${DEFAULT_PROXY_RESOURCES.memoryRequest}; a pod's sluice.dev/proxy-memory-request wins
  --trust-domain TD     SPIFFE trust domain (env SLUICE_TRUST_DOMAIN), default ${DEFAULT_TRUST_DOMAIN}
  --namespace NS        control-plane namespace (env POD_NAMESPACE), default ${DEFAULT_CONTROL_PLANE_NAMESPACE}
  --port N              webhook HTTPS port, default ${WEBHOOK_PORT}
  --admin-port N        /ready, /live, /metrics (HTTP), default ${ADMIN_PORT}
  --kubeconfig FILE     API server credentials; default: in-cluster service account, $KUBECONFIG, ~/.kube/config`;

/** Native sidecars are on by default from Kubernetes 1.29 (beta), GA in 1.33. */
const NATIVE_SIDECAR_MINOR = 29;
const REQUEST_TIMEOUT_MS = 10_000;
/** Within the Deployment's terminationGracePeriodSeconds (15). */
const SHUTDOWN_GRACE_MS = 5_000;

function choice<T extends string>(
  value: string | undefined,
  allowed: readonly T[],
  name: string,
): T | undefined {
  if (value === undefined) return undefined;
  const found = allowed.find((a) => a.toLowerCase() === value.toLowerCase());
  if (found === undefined)
    throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got '${value}'`);
  return found;
}

/** The API server's minor version, tolerant of provider suffixes ("31+"). */
export function serverMinorVersion(version: { major?: string; minor?: string }): number | undefined {
  if (version.major?.replace(/\D/g, '') !== '1') return undefined;
  const minor = Number.parseInt(version.minor?.replace(/\D/g, '') ?? '', 10);
  return Number.isInteger(minor) ? minor : undefined;
}

interface ServerVersion {
  major?: string;
  minor?: string;
  gitVersion?: string;
}

async function nativeSidecars(api: KubeApi, log: Logger): Promise<boolean> {
  const version = await api.request<ServerVersion>('GET', '/version', { timeoutMs: REQUEST_TIMEOUT_MS });
  const minor = serverMinorVersion(version);
  const native = minor === undefined || minor >= NATIVE_SIDECAR_MINOR;
  log.info('sidecar mode chosen from the API server version', {
    version: version.gitVersion,
    mode: native ? 'native' : 'classic',
  });
  return native;
}

/** The image (and pull policy) of this pod's injector container: what the injected containers run. */
async function ownImage(api: KubeApi, namespace: string): Promise<ContainerImage> {
  const podName = process.env.POD_NAME;
  if (!podName)
    throw new UsageError('--proxy-image (or SLUICE_PROXY_IMAGE) is needed outside a pod (no POD_NAME)');
  const image = await ownPodImage(api, namespace, podName, 'injector');
  if (!image) throw new Error(`pod ${namespace}/${podName} has no container image`);
  return image;
}

export async function main(args: string[]): Promise<number | undefined> {
  const { values, positionals } = parseFlags(() =>
    parseArgs({
      args,
      allowPositionals: true,
      options: {
        'proxy-image': { type: 'string' },
        controller: { type: 'string' },
        'sidecar-mode': { type: 'string' },
        'mtls-mode': { type: 'string' },
        'proxy-cpu-request': { type: 'string' },
        'proxy-memory-request': { type: 'string' },
        'trust-domain': { type: 'string' },
        namespace: { type: 'string' },
        port: { type: 'string' },
        'admin-port': { type: 'string' },
        kubeconfig: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`injector takes no arguments, got '${positionals[0]}'`);
  const trustDomain = trustDomainFlag(values['trust-domain'], process.env);
  const namespace = values.namespace ?? (process.env.POD_NAMESPACE || DEFAULT_CONTROL_PLANE_NAMESPACE);
  const sidecarMode = choice(values['sidecar-mode'], ['auto', 'native', 'classic'], 'sidecar-mode') ?? 'auto';
  const mtlsMode = choice(values['mtls-mode'], ['PERMISSIVE', 'STRICT'], 'mtls-mode') ?? 'PERMISSIVE';
  const proxyResources = proxyResourcesFromFlags(
    { cpu: values['proxy-cpu-request'], memory: values['proxy-memory-request'] },
    process.env,
  );
  if ('error' in proxyResources) throw new UsageError(proxyResources.error);
  const webhookPort = portFlag(values.port, WEBHOOK_PORT, 'port');
  const adminPort = portFlag(values['admin-port'], ADMIN_PORT, 'admin-port');
  const { api } = loadKubeConfig({ userAgent: 'sluice-injector', kubeconfigPath: values.kubeconfig });

  const log = jsonLogger('injector');
  const certificate = new WebhookCertificate({ api, namespace, log });
  let server: InjectorServer | undefined;
  try {
    const configured = values['proxy-image'] ?? process.env.SLUICE_PROXY_IMAGE;
    const image = configured
      ? { image: configured, pullPolicy: 'IfNotPresent' }
      : await ownImage(api, namespace);
    const settings: InjectionSettings = {
      image: image.image,
      imagePullPolicy: image.pullPolicy,
      controllerAddress: values.controller ?? `sluice-controller.${namespace}.svc:${CONFIG_PORT}`,
      trustDomain,
      nativeSidecars: sidecarMode === 'auto' ? await nativeSidecars(api, log) : sidecarMode === 'native',
      mtlsMode,
      proxyResources,
    };
    log.info('injector starting', { ...settings, namespace });
    server = new InjectorServer({
      settings,
      log,
      certificate: await certificate.start(),
      port: webhookPort,
      adminPort,
    });
    certificate.onChange((serving) => server?.setCertificate(serving));
    await server.start();
  } catch (err) {
    if (err instanceof UsageError) throw err;
    log.error('injector failed to start', { error: describeApiError(err) });
    certificate.stop();
    await server?.stop();
    return 1;
  }
  const shutdown = (signal: string): void => {
    log.info('shutting down', { signal });
    certificate.stop();
    void server.stop(SHUTDOWN_GRACE_MS).then(() => process.exit(0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  return undefined;
}
