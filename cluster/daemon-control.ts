// Stopping and starting one control-plane daemon of a running local cluster, for tests of how the mesh
// rides out an API server, etcd or kubelet outage: `node cluster/main.ts stop kube-apiserver`, then `start`.
import { clusterFiles } from './components.ts';
import { clusterComponents, type Component } from './control-plane.ts';
import { findDaemons, isAlive, logFile, startDaemon, stopProcesses, waitUntil } from './daemons.ts';
import { ClusterError } from './errors.ts';
import { requireRoot } from './host.ts';
import { clusterPaths } from './paths.ts';
import { readState } from './state.ts';

/**
 * The daemons that can be stopped alone. containerd takes the pods with it; the kubelet does not (each
 * container runs under its containerd shim): stopping it makes the node go silent, as a partition would.
 */
export const STOPPABLE = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubelet',
] as const;
export type Stoppable = (typeof STOPPABLE)[number];

function component(name: string): Component {
  if (!(STOPPABLE as readonly string[]).includes(name)) {
    throw new ClusterError(`cannot stop or start '${name}' alone (one of: ${STOPPABLE.join(', ')})`);
  }
  const paths = clusterPaths();
  const state = readState(paths.stateDir);
  if (!state?.binaries) throw new ClusterError('the cluster is not running (run `npm run cluster:up`)');
  const found = clusterComponents(state.binaries, clusterFiles(paths), state.nodeIp).find(
    (c) => c.spec.name === name,
  );
  if (!found) throw new ClusterError(`no component '${name}'`);
  return found;
}

/** SIGTERM (SIGKILL after 10 s) to the daemon's processes; resolves once they are gone. */
export async function stopComponent(name: string): Promise<void> {
  requireRoot();
  component(name);
  await stopProcesses((findDaemons().get(name) ?? []).filter(isAlive));
}

/** Starts the daemon unless it runs, and resolves once it answers its health check. */
export async function startComponent(name: string): Promise<void> {
  requireRoot();
  const c = component(name);
  const paths = clusterPaths();
  const running = (findDaemons().get(name) ?? []).filter(isAlive);
  const pid = running[0] ?? startDaemon(c.spec, paths.logDir);
  await waitUntil(name, c.ready, { timeoutMs: c.timeoutMs, pid, log: logFile(paths.logDir, name) });
}
