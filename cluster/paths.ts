import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** Where the local cluster keeps its things. Only `stateDir` is inside the repository (git-ignored). */
export interface ClusterPaths {
  readonly repoDir: string;
  /** `.cluster/`: kubeconfig, certificates, logs, state of the running cluster. */
  readonly stateDir: string;
  readonly logDir: string;
  readonly pkiDir: string;
  readonly kubeconfig: string;
  /** Built binaries, base root filesystems and image archives, reused across clusters and checkouts. */
  readonly cacheDir: string;
  /** etcd data, containerd root, kubelet root, CNI state: removed by `cluster:down`. */
  readonly dataDir: string;
  /** Sockets and runtime state (tmpfs): removed by `cluster:down`. */
  readonly runDir: string;
}

export const REPO_DIR = resolve(import.meta.dirname, '..');

export function clusterPaths(env: NodeJS.ProcessEnv = process.env): ClusterPaths {
  const stateDir = join(REPO_DIR, '.cluster');
  const cacheRoot = env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  return {
    repoDir: REPO_DIR,
    stateDir,
    logDir: join(stateDir, 'logs'),
    pkiDir: join(stateDir, 'pki'),
    kubeconfig: join(stateDir, 'kubeconfig'),
    cacheDir: env.SLUICE_CLUSTER_CACHE ?? join(cacheRoot, 'sluice', 'cluster'),
    dataDir: '/var/lib/sluice-cluster',
    runDir: '/run/sluice-cluster',
  };
}
