import { join } from 'node:path';
import { run, type RunOptions, type RunResult } from './exec.ts';
import type { ClusterPaths } from './paths.ts';

/** The kubectl built with the cluster (same version as the API server), linked at `.cluster/bin/kubectl`. */
export const kubectlPath = (paths: ClusterPaths): string => join(paths.stateDir, 'bin', 'kubectl');

export function kubectl(
  paths: ClusterPaths,
  args: readonly string[],
  options?: RunOptions,
): Promise<RunResult> {
  return run(kubectlPath(paths), [`--kubeconfig=${paths.kubeconfig}`, ...args], options);
}
