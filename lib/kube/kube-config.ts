// Where the controller finds the API server and its credentials: an explicit kubeconfig file, else the
// pod's service account when running in a pod, else $KUBECONFIG, else ~/.kube/config. Every failure is
// one KubeConfigError line.
//
// Service-account tokens are projected and rotated by the kubelet (it rewrites the file well before the
// token expires). The token file is read again once the copy is a minute old, like client-go; every request
// asks for credentials (kube-api.ts), and a watch reconnects at least every few minutes, so a rotated token
// is in use within about a minute. Kubeconfig files are read as kubectl reads them: several files in
// KUBECONFIG merge, the first to name a cluster, user or context (or set current-context) wins.

import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { UsageError } from '../usage-error.ts';
import { KubeApi } from './kube-api.ts';
import {
  execCredentials,
  fixedCredentials,
  tokenFileCredentials,
  type CredentialSource,
  type ExecConfig,
} from './kube-credentials.ts';
import { hostText } from '../host-text.ts';

/** Where the kubelet mounts the service account. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** A usage error: the CLI prints it as one line and exits 2. */
export class KubeConfigError extends UsageError {
  override name = 'KubeConfigError';
}

export interface LoadKubeConfigOptions {
  /** A kubeconfig file given explicitly (a --kubeconfig flag); it wins over everything else. */
  readonly kubeconfigPath?: string | undefined;
  /** Use this context instead of the file's current-context. */
  readonly context?: string;
  /** Prefix for the service-account files (tests only). */
  readonly rootPrefix?: string;
  /** User-Agent of every request. */
  readonly userAgent?: string;
}

export interface LoadedKubeConfig {
  readonly api: KubeApi;
  readonly inCluster: boolean;
  /** "service account (in-cluster)" or "kubeconfig /path": for the startup log line. */
  readonly source: string;
  readonly server: string;
  /** The pod's namespace in-cluster; the context's namespace otherwise, if it names one. */
  readonly namespace: string | undefined;
}

type Entry = Record<string, unknown>;

/** The named entries of kubeconfig files, each resolved against the directory of the file that had it. */
interface Merged {
  readonly clusters: Map<string, { entry: Entry; dir: string }>;
  readonly users: Map<string, { entry: Entry; dir: string }>;
  readonly contexts: Map<string, Entry>;
  currentContext: string | undefined;
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

const isEntry = (value: unknown): value is Entry =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const text = (value: unknown): string | undefined =>
  typeof value === 'string' && value !== '' ? value : undefined;

function loadFiles(files: readonly string[]): Merged {
  const merged: Merged = {
    clusters: new Map(),
    users: new Map(),
    contexts: new Map(),
    currentContext: undefined,
  };
  for (const file of files) {
    let doc: unknown;
    try {
      doc = parseYaml(readFileSync(file, 'utf8'));
    } catch (error) {
      throw new KubeConfigError(`cannot load kubeconfig ${file}: ${firstLine(error)}`);
    }
    if (doc === null || doc === undefined) continue;
    if (!isEntry(doc)) throw new KubeConfigError(`cannot load kubeconfig ${file}: not a mapping`);
    const dir = dirname(file);
    const each = (list: unknown, key: string, add: (name: string, entry: Entry) => void): void => {
      if (!Array.isArray(list)) return;
      for (const item of list) {
        const name = isEntry(item) ? text(item.name) : undefined;
        if (name !== undefined && isEntry(item) && isEntry(item[key])) add(name, item[key]);
      }
    };
    each(doc.clusters, 'cluster', (name, entry) => {
      if (!merged.clusters.has(name)) merged.clusters.set(name, { entry, dir });
    });
    each(doc.users, 'user', (name, entry) => {
      if (!merged.users.has(name)) merged.users.set(name, { entry, dir });
    });
    each(doc.contexts, 'context', (name, entry) => {
      if (!merged.contexts.has(name)) merged.contexts.set(name, entry);
    });
    merged.currentContext ??= text(doc['current-context']);
  }
  return merged;
}

/** A `*-data` field (base64) or the file the plain field names, relative to the kubeconfig's directory. */
function pemField(entry: Entry, field: string, dir: string, where: string): string | undefined {
  const data = text(entry[`${field}-data`]);
  if (data !== undefined) return Buffer.from(data, 'base64').toString('utf8');
  const file = text(entry[field]);
  if (file === undefined) return undefined;
  const path = isAbsolute(file) ? file : join(dir, file);
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new KubeConfigError(`${where}: cannot read ${field} ${path}: ${firstLine(error)}`);
  }
}

function userCredentials(user: Entry, dir: string, where: string): CredentialSource {
  if (user['auth-provider'] !== undefined) {
    throw new KubeConfigError(`${where}: auth-provider is not supported; use an exec credential plugin`);
  }
  const exec = user.exec;
  if (isEntry(exec)) {
    const command = text(exec.command);
    if (command === undefined) throw new KubeConfigError(`${where}: exec has no command`);
    const args = Array.isArray(exec.args) ? exec.args.map(String) : [];
    const env = Array.isArray(exec.env)
      ? exec.env.filter(isEntry).map((e) => ({ name: String(e.name), value: String(e.value) }))
      : [];
    const config: ExecConfig = {
      apiVersion: text(exec.apiVersion) ?? 'client.authentication.k8s.io/v1',
      command: isAbsolute(command) || !command.includes('/') ? command : join(dir, command),
      args,
      env,
    };
    return execCredentials(config);
  }
  const token = text(user.token);
  if (token !== undefined) return fixedCredentials({ authorization: `Bearer ${token}` });
  const tokenFile = text(user.tokenFile);
  if (tokenFile !== undefined)
    return tokenFileCredentials(isAbsolute(tokenFile) ? tokenFile : join(dir, tokenFile));
  const certPem = pemField(user, 'client-certificate', dir, where);
  const keyPem = pemField(user, 'client-key', dir, where);
  if (certPem !== undefined && keyPem !== undefined) return fixedCredentials({ certPem, keyPem });
  const username = text(user.username);
  if (username !== undefined) {
    const basic = Buffer.from(`${username}:${text(user.password) ?? ''}`).toString('base64');
    return fixedCredentials({ authorization: `Basic ${basic}` });
  }
  return fixedCredentials({});
}

function serverUrl(server: unknown, where: string): string {
  let url: URL;
  try {
    url = new URL(String(server));
  } catch {
    throw new KubeConfigError(`${where} has no valid server URL (${String(server)})`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new KubeConfigError(`${where} server must be http(s): ${String(server)}`);
  }
  return String(server);
}

function inClusterApi(prefix: string, userAgent: string | undefined): { api: KubeApi; server: string } {
  const dir = `${prefix}${SERVICE_ACCOUNT_DIR}`;
  for (const file of ['token', 'ca.crt']) {
    if (!readable(join(dir, file))) {
      throw new KubeConfigError(`in-cluster config: cannot read ${join(dir, file)}`);
    }
  }
  const host = process.env.KUBERNETES_SERVICE_HOST ?? '';
  const server = `https://${hostText(host)}:${process.env.KUBERNETES_SERVICE_PORT ?? ''}`;
  const api = new KubeApi({
    server,
    caPem: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    credentials: tokenFileCredentials(join(dir, 'token')),
    ...(userAgent === undefined ? {} : { userAgent }),
  });
  return { api, server };
}

function kubeconfigApi(
  merged: Merged,
  source: string,
  contextName: string | undefined,
  userAgent: string | undefined,
): { api: KubeApi; server: string; namespace: string | undefined } {
  if (contextName === undefined) throw new KubeConfigError(`${source}: no current-context`);
  const context = merged.contexts.get(contextName);
  if (!context) throw new KubeConfigError(`${source}: current-context ${contextName} is not defined`);
  const cluster = merged.clusters.get(text(context.cluster) ?? '');
  if (!cluster) throw new KubeConfigError(`${source}: context ${contextName} names no known cluster`);
  const clusterName = String(context.cluster);
  const server = serverUrl(cluster.entry.server, `${source}: cluster ${clusterName}`);
  const user = merged.users.get(text(context.user) ?? '');
  if (!user) throw new KubeConfigError(`${source}: context ${contextName} names no known user`);
  const userWhere = `${source}: user ${String(context.user)}`;
  if (cluster.entry['proxy-url'] !== undefined) {
    throw new KubeConfigError(`${source}: cluster ${clusterName}: proxy-url is not supported`);
  }
  const caPem = pemField(
    cluster.entry,
    'certificate-authority',
    cluster.dir,
    `${source}: cluster ${clusterName}`,
  );
  const tlsServerName = text(cluster.entry['tls-server-name']);
  const api = new KubeApi({
    server,
    ...(caPem === undefined ? {} : { caPem }),
    ...(tlsServerName === undefined ? {} : { tlsServerName }),
    insecureSkipTlsVerify: cluster.entry['insecure-skip-tls-verify'] === true,
    credentials: userCredentials(user.entry, user.dir, userWhere),
    ...(userAgent === undefined ? {} : { userAgent }),
  });
  return { api, server, namespace: text(context.namespace)?.trim() };
}

export function loadKubeConfig(options: LoadKubeConfigOptions = {}): LoadedKubeConfig {
  const env = process.env;
  const prefix = options.rootPrefix ?? '';
  const inPod =
    Boolean(env.KUBERNETES_SERVICE_HOST) &&
    Boolean(env.KUBERNETES_SERVICE_PORT) &&
    existsSync(`${prefix}${SERVICE_ACCOUNT_DIR}/token`);
  const listed = (env.KUBECONFIG ?? '').split(delimiter).filter((file) => file !== '');
  const home = env.HOME ?? homedir();
  const defaultFile = join(home, '.kube', 'config');

  if (options.kubeconfigPath === undefined && inPod) {
    const { api, server } = inClusterApi(prefix, options.userAgent);
    let namespace: string | undefined;
    try {
      namespace = readFileSync(`${prefix}${SERVICE_ACCOUNT_DIR}/namespace`, 'utf8').trim();
    } catch {
      // Only the namespace is missing; the controller may be told its namespace another way.
    }
    return {
      api,
      inCluster: true,
      source: 'service account (in-cluster)',
      server,
      namespace: namespace || undefined,
    };
  }

  let files: string[];
  if (options.kubeconfigPath !== undefined) {
    files = [options.kubeconfigPath];
  } else if (listed.length > 0) {
    // As kubectl does, files named in KUBECONFIG that do not exist are skipped.
    files = listed.filter((file) => existsSync(file));
    if (files.length === 0) {
      throw new KubeConfigError(`none of the KUBECONFIG files exists: ${listed.join(delimiter)}`);
    }
  } else if (existsSync(defaultFile)) {
    files = [defaultFile];
  } else {
    throw new KubeConfigError(
      `no Kubernetes configuration: not in a pod (no KUBERNETES_SERVICE_HOST or no ${SERVICE_ACCOUNT_DIR}/token), ` +
        `KUBECONFIG unset, and no ${defaultFile}`,
    );
  }
  const source = `kubeconfig ${files.join(delimiter)}`;
  const merged = loadFiles(files);
  if (options.context !== undefined && !merged.contexts.has(options.context)) {
    throw new KubeConfigError(`${source}: no context named ${options.context}`);
  }
  const { api, server, namespace } = kubeconfigApi(
    merged,
    source,
    options.context ?? merged.currentContext,
    options.userAgent,
  );
  return { api, inCluster: false, source, server, namespace: namespace || undefined };
}
