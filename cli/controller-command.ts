// `sluice controller`: the control plane process (see controller.ts). Runs until SIGTERM/SIGINT, then
// steps down (releasing the Lease), ends the config streams and exits 0.
import { parseArgs } from 'node:util';
import { parseFlags, portFlag, UsageError } from '../lib/usage-error.ts';
import { ownPodImage, trustDomainFlag, type ContainerImage } from './control-plane-flags.ts';
import {
  CONFIG_PORT,
  DEFAULT_CONTROL_PLANE_NAMESPACE,
  DEFAULT_TRUST_DOMAIN,
} from '../protocol/config-protocol.ts';
import { ADMIN_PORT, Controller } from '../controller/controller.ts';
import { jsonLogger, type Logger } from '../lib/json-log.ts';
import type { KubeApi } from '../lib/kube/kube-api.ts';
import { loadKubeConfig } from '../lib/kube/kube-config.ts';
import {
  DEFAULT_PROXY_RESOURCES,
  proxyResourcesFromFlags,
  type ProxyResources,
} from '../protocol/proxy-resources.ts';

const USAGE = `usage: sluice controller [options]
  --trust-domain TD    SPIFFE trust domain (env SLUICE_TRUST_DOMAIN), default ${DEFAULT_TRUST_DOMAIN}
  --namespace NS       control-plane namespace: Lease, CA Secret (env POD_NAMESPACE), default ${DEFAULT_CONTROL_PLANE_NAMESPACE}
  --port N             config stream and certificate port (HTTP/2, TLS), default ${CONFIG_PORT}
  --admin-port N       /ready, /live, /metrics (HTTP), default ${ADMIN_PORT}
  --kubeconfig FILE    API server credentials; default: in-cluster service account, $KUBECONFIG, ~/.kube/config
  --workload-cert-minutes N  lifetime of workload certificates (env SLUICE_WORKLOAD_CERT_MINUTES), 1..10080,
                       default 1440 (24 h); renewed at about 70 % of it
  --proxy-image IMAGE  image of provisioned Gateway proxies (env SLUICE_PROXY_IMAGE); default: this pod's
                       image; outside a pod without it, Gateways are not provisioned
  --proxy-cpu-request Q     CPU request of Gateway proxies (env SLUICE_PROXY_CPU_REQUEST), default
                       ${DEFAULT_PROXY_RESOURCES.cpuRequest}; a Gateway's sluice.dev/proxy-cpu-request annotation wins
  --proxy-memory-request Q  memory request of Gateway proxies (env SLUICE_PROXY_MEMORY_REQUEST), default
                       ${DEFAULT_PROXY_RESOURCES.memoryRequest}; a Gateway's sluice.dev/proxy-memory-request wins`;

export interface ControllerFlags {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly port: number;
  readonly adminPort: number;
  readonly kubeconfig: string | undefined;
  readonly proxyImage: string | undefined;
  readonly workloadCertMinutes: number | undefined;
  readonly proxyResources: ProxyResources;
  readonly help: boolean;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Flags and environment → settings; every problem is a UsageError. */
export function parseControllerFlags(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): ControllerFlags {
  const { values, positionals } = parseFlags(() =>
    parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        'trust-domain': { type: 'string' },
        namespace: { type: 'string' },
        port: { type: 'string' },
        'admin-port': { type: 'string' },
        kubeconfig: { type: 'string' },
        'proxy-image': { type: 'string' },
        'workload-cert-minutes': { type: 'string' },
        'proxy-cpu-request': { type: 'string' },
        'proxy-memory-request': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (positionals.length > 0) throw new UsageError(`controller takes no arguments, got '${positionals[0]}'`);
  const trustDomain = trustDomainFlag(values['trust-domain'], env);
  const namespace = values.namespace ?? (env.POD_NAMESPACE || DEFAULT_CONTROL_PLANE_NAMESPACE);
  if (!DNS_LABEL.test(namespace)) {
    throw new UsageError(`--namespace must be a Kubernetes namespace name, got '${namespace}'`);
  }
  const configPort = portFlag(values.port, CONFIG_PORT, 'port');
  const adminPort = portFlag(values['admin-port'], ADMIN_PORT, 'admin-port');
  if (configPort === adminPort) throw new UsageError('--port and --admin-port must differ');
  if (values.kubeconfig === '') throw new UsageError('--kubeconfig needs a file name');
  const proxyResources = proxyResourcesFromFlags(
    { cpu: values['proxy-cpu-request'], memory: values['proxy-memory-request'] },
    env,
  );
  if ('error' in proxyResources) throw new UsageError(proxyResources.error);
  const certText = values['workload-cert-minutes'] ?? (env.SLUICE_WORKLOAD_CERT_MINUTES || undefined);
  const workloadCertMinutes = certText === undefined ? undefined : Number(certText);
  if (
    workloadCertMinutes !== undefined &&
    !(/^\d+$/.test(certText ?? '') && workloadCertMinutes >= 1 && workloadCertMinutes <= 7 * 24 * 60)
  ) {
    throw new UsageError(`--workload-cert-minutes must be a whole number from 1 to 10080, got '${certText}'`);
  }
  return {
    workloadCertMinutes,
    trustDomain,
    namespace,
    port: configPort,
    adminPort,
    kubeconfig: values.kubeconfig,
    proxyImage: values['proxy-image'] ?? (env.SLUICE_PROXY_IMAGE || undefined),
    proxyResources,
    help: values.help ?? false,
  };
}

export async function main(args: string[]): Promise<number | undefined> {
  const flags = parseControllerFlags(args);
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const log = jsonLogger('controller');
  const loaded = loadKubeConfig({ userAgent: 'sluice-controller', kubeconfigPath: flags.kubeconfig });
  log.info('controller starting', {
    api: loaded.server,
    credentials: loaded.source,
    namespace: flags.namespace,
    trustDomain: flags.trustDomain,
    port: flags.port,
    adminPort: flags.adminPort,
  });
  const image = await gatewayImage(loaded.api, flags, log);
  const controller = new Controller({
    ...(image
      ? {
          gateways: {
            image: image.image,
            imagePullPolicy: image.pullPolicy,
            controllerAddress: `sluice-controller.${flags.namespace}.svc:${flags.port}`,
            proxyResources: flags.proxyResources,
          },
        }
      : {}),
    api: loaded.api,
    log,
    namespace: flags.namespace,
    trustDomain: flags.trustDomain,
    configPort: flags.port,
    adminPort: flags.adminPort,
    ...(flags.workloadCertMinutes === undefined ? {} : { workloadCertHours: flags.workloadCertMinutes / 60 }),
    ...(process.env.POD_NAME ? { podName: process.env.POD_NAME } : {}),
  });
  try {
    await controller.start();
  } catch (err) {
    log.error('controller failed to start', { error: (err as Error).message });
    await controller.stop();
    return 1;
  }
  const shutdown = (signal: string): void => {
    log.info('shutting down', { signal });
    void controller.stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  return undefined;
}

/** The image Gateway proxies run: --proxy-image, else this pod's own (the same image runs both). */
async function gatewayImage(
  api: KubeApi,
  flags: ControllerFlags,
  log: Logger,
): Promise<ContainerImage | undefined> {
  if (flags.proxyImage) return { image: flags.proxyImage, pullPolicy: 'IfNotPresent' };
  const podName = process.env.POD_NAME;
  if (podName) {
    try {
      const image = await ownPodImage(api, flags.namespace, podName, 'controller');
      if (image) return image;
    } catch (err) {
      log.warn('cannot read this pod for its image', { error: (err as Error).message });
    }
  }
  log.warn('Gateways will not be provisioned: no --proxy-image and no image of this pod');
  return undefined;
}
