// Where the controller finds the API server and its credentials: an explicit kubeconfig file, else the
// pod's service account when running in a pod, else $KUBECONFIG, else ~/.kube/config. Every failure is
// one KubeConfigError line.
//
// Service-account tokens are projected and rotated by the kubelet (it rewrites the file well before the
// token expires). client-node's in-cluster config does not hold the token: it configures its `tokenFile`
// auth provider, which re-reads the file whenever its copy is older than 60 s, like client-go. Every
// request the informers make asks the KubeConfig for credentials again (api-request.ts), and a watch
// reconnects at least every few minutes, so a rotated token is in use within about a minute.

import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { PooledKubeConfig } from './pooled-kube-config.ts';

/** Where the kubelet mounts the service account; client-node's loadFromCluster reads the same place. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export class KubeConfigError extends Error {
  override name = 'KubeConfigError';
}

export interface LoadKubeConfigOptions {
  /** A kubeconfig file given explicitly (a --kubeconfig flag); it wins over everything else. */
  readonly kubeconfigPath?: string;
  /** Use this context instead of the file's current-context. */
  readonly context?: string;
  /** Prefix for the service-account files (tests only; as client-node's loadFromCluster pathPrefix). */
  readonly rootPrefix?: string;
}

export interface LoadedKubeConfig {
  readonly kubeConfig: KubeConfig;
  readonly inCluster: boolean;
  /** "service account (in-cluster)" or "kubeconfig /path": for the startup log line. */
  readonly source: string;
  readonly server: string;
  /** The pod's namespace in-cluster; the context's namespace otherwise, if it names one. */
  readonly namespace: string | undefined;
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n', 1)[0]!.trim();
}

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function loadFiles(kubeConfig: KubeConfig, files: readonly string[]): void {
  for (const [index, file] of files.entries()) {
    try {
      if (index === 0) {
        kubeConfig.loadFromFile(file);
      } else {
        const more = new KubeConfig();
        more.loadFromFile(file);
        // As kubectl does: the first file that sets current-context decides it.
        kubeConfig.mergeConfig(more, Boolean(kubeConfig.currentContext));
      }
    } catch (error) {
      throw new KubeConfigError(`cannot load kubeconfig ${file}: ${firstLine(error)}`);
    }
  }
}

function loadInCluster(kubeConfig: KubeConfig, prefix: string): void {
  const dir = `${prefix}${SERVICE_ACCOUNT_DIR}`;
  for (const file of ['token', 'ca.crt']) {
    if (!readable(join(dir, file))) {
      throw new KubeConfigError(`in-cluster config: cannot read ${join(dir, file)}`);
    }
  }
  kubeConfig.loadFromCluster(prefix);
}

export function loadKubeConfig(options: LoadKubeConfigOptions = {}): LoadedKubeConfig {
  const kubeConfig = new PooledKubeConfig();
  const env = process.env;
  const prefix = options.rootPrefix ?? '';
  const inPod =
    Boolean(env.KUBERNETES_SERVICE_HOST) &&
    Boolean(env.KUBERNETES_SERVICE_PORT) &&
    existsSync(`${prefix}${SERVICE_ACCOUNT_DIR}/token`);
  const listed = (env.KUBECONFIG ?? '').split(delimiter).filter((file) => file !== '');
  const home = env.HOME ?? homedir();
  const defaultFile = join(home, '.kube', 'config');

  let source: string;
  let inCluster = false;
  if (options.kubeconfigPath !== undefined) {
    loadFiles(kubeConfig, [options.kubeconfigPath]);
    source = `kubeconfig ${options.kubeconfigPath}`;
  } else if (inPod) {
    loadInCluster(kubeConfig, prefix);
    inCluster = true;
    source = 'service account (in-cluster)';
  } else if (listed.length > 0) {
    // As kubectl does, files named in KUBECONFIG that do not exist are skipped.
    const present = listed.filter((file) => existsSync(file));
    if (present.length === 0) {
      throw new KubeConfigError(`none of the KUBECONFIG files exists: ${listed.join(delimiter)}`);
    }
    loadFiles(kubeConfig, present);
    source = `kubeconfig ${present.join(delimiter)}`;
  } else if (existsSync(defaultFile)) {
    loadFiles(kubeConfig, [defaultFile]);
    source = `kubeconfig ${defaultFile}`;
  } else {
    throw new KubeConfigError(
      `no Kubernetes configuration: not in a pod (no KUBERNETES_SERVICE_HOST or no ${SERVICE_ACCOUNT_DIR}/token), ` +
        `KUBECONFIG unset, and no ${defaultFile}`,
    );
  }

  if (options.context !== undefined) {
    if (!kubeConfig.getContextObject(options.context)) {
      throw new KubeConfigError(`${source}: no context named ${options.context}`);
    }
    kubeConfig.setCurrentContext(options.context);
  }
  const contextName = kubeConfig.getCurrentContext();
  const context = contextName ? kubeConfig.getContextObject(contextName) : null;
  if (!context) {
    throw new KubeConfigError(
      contextName
        ? `${source}: current-context ${contextName} is not defined`
        : `${source}: no current-context`,
    );
  }
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new KubeConfigError(`${source}: context ${context.name} names no known cluster`);
  let url: URL;
  try {
    url = new URL(cluster.server);
  } catch {
    throw new KubeConfigError(
      `${source}: cluster ${cluster.name} has no valid server URL (${cluster.server})`,
    );
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new KubeConfigError(`${source}: cluster ${cluster.name} server must be http(s): ${cluster.server}`);
  }
  if (!kubeConfig.getCurrentUser()) {
    throw new KubeConfigError(`${source}: context ${context.name} names no known user`);
  }

  let namespace = context.namespace?.trim();
  if (inCluster) {
    try {
      namespace = readFileSync(`${prefix}${SERVICE_ACCOUNT_DIR}/namespace`, 'utf8').trim();
    } catch {
      // Only the namespace is missing; the controller may be told its namespace another way.
    }
  }
  return { kubeConfig, inCluster, source, server: cluster.server, namespace: namespace || undefined };
}
