// Which cluster the demo runs on: the one KUBECONFIG names when it answers, else the project's local cluster
// (node cluster/main.ts up|down, run as a child process so its output and root checks stay its own).
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { run, type RunOptions, type RunResult } from '../cluster/exec.ts';
import { kubectlPath } from '../cluster/kubectl.ts';
import { clusterPaths, REPO_DIR } from '../cluster/paths.ts';

export interface DemoCluster {
  /** The project's local cluster, which `--down` may stop. */
  readonly local: boolean;
  /** How a user runs kubectl against it by hand (for the hints), e.g. an `export` line; '' when kubectl works as is. */
  readonly shellSetup: string;
  kubectl(args: readonly string[], options?: RunOptions): Promise<RunResult>;
}

/** kubectl with the given binary and kubeconfig (undefined: kubectl's own default, i.e. KUBECONFIG). */
function clusterWith(
  local: boolean,
  binary: string,
  kubeconfig: string | undefined,
  shellSetup: string,
  env: NodeJS.ProcessEnv = process.env,
): DemoCluster {
  return {
    local,
    shellSetup,
    kubectl: (args: readonly string[], options?: RunOptions) =>
      run(binary, [...(kubeconfig ? [`--kubeconfig=${kubeconfig}`] : []), ...args], { env, ...options }),
  };
}

export function localCluster(): DemoCluster {
  const paths = clusterPaths();
  return clusterWith(
    true,
    kubectlPath(paths),
    paths.kubeconfig,
    `export KUBECONFIG=${paths.kubeconfig} PATH=${join(paths.stateDir, 'bin')}:$PATH`,
  );
}

export async function answers(cluster: DemoCluster): Promise<boolean> {
  try {
    await cluster.kubectl(['get', '--raw', '/readyz'], { timeoutMs: 15_000 });
    return true;
  } catch {
    return false;
  }
}

function onPath(program: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, program), constants.X_OK);
      return join(dir, program);
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** The cluster KUBECONFIG names, if it answers; otherwise why not (the demo then uses the local cluster). */
export async function kubeconfigCluster(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ cluster: DemoCluster; context: string } | { why: string }> {
  const kubeconfig = env.KUBECONFIG;
  if (kubeconfig === undefined || kubeconfig === '') return { why: 'KUBECONFIG is not set' };
  const localConfig = clusterPaths().kubeconfig;
  if (kubeconfig.split(delimiter).some((file) => file !== '' && resolve(file) === localConfig)) {
    return { why: "KUBECONFIG is the local cluster's" };
  }
  const localKubectl = kubectlPath(clusterPaths());
  const binary = onPath('kubectl', env) ?? (existsSync(localKubectl) ? localKubectl : undefined);
  if (binary === undefined) return { why: 'KUBECONFIG is set but there is no kubectl on PATH' };
  const cluster = clusterWith(false, binary, undefined, '', env);
  try {
    await cluster.kubectl(['get', '--raw', '/readyz'], { timeoutMs: 15_000 });
  } catch (error) {
    return { why: `KUBECONFIG is set but its cluster does not answer (${(error as Error).message})` };
  }
  const { stdout } = await cluster.kubectl(['config', 'current-context'], { okCodes: [1] });
  return { cluster, context: stdout.trim() || '(no current context)' };
}

/** Runs `node cluster/main.ts <command>` with this Node, its output on ours; fails when it does. */
export function runClusterTool(command: 'up' | 'down'): Promise<void> {
  const args = [join(REPO_DIR, 'cluster', 'main.ts'), command];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: REPO_DIR, stdio: 'inherit' });
    child.once('error', (error) => reject(new Error(`node cluster/main.ts ${command}: ${error.message}`)));
    child.once('exit', (code, signal) => {
      if (code === 0) resolvePromise();
      else
        reject(
          new Error(
            `node cluster/main.ts ${command} failed (${signal ?? `exit ${code}`}): see its output above`,
          ),
        );
    });
  });
}
