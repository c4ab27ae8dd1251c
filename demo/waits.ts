// Waiting for a cluster to get somewhere, with messages that say what is missing and where to look.
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../lib/eventually.ts';
import { containerProblems, isImageProblem, rolloutOf, type ContainerProblem } from './cluster-state.ts';
import type { DemoCluster } from './demo-cluster.ts';

export type Json = Record<string, unknown>;

export async function getJson(k: DemoCluster, args: readonly string[]): Promise<Json> {
  return JSON.parse((await k.kubectl([...args, '-o', 'json'])).stdout) as Json;
}

export const items = (list: Json): unknown[] => (Array.isArray(list.items) ? (list.items as unknown[]) : []);

function imageAdvice(problem: ContainerProblem, local: boolean): string {
  const what = `pod ${problem.pod}: ${problem.reason} for image ${problem.image}`;
  if (local)
    return `${what}: the local cluster does not have it; build and load the images: npm run cluster:images`;
  return (
    `${what}: your cluster cannot get Sluice's images. Build them from the repository root ` +
    '(docker build -t sluice:dev . && docker build -f images/echo/Dockerfile -t sluice-echo:dev . && ' +
    'docker build -f images/toolbox/Dockerfile -t sluice-toolbox:dev .), then load them into the nodes ' +
    '(kind load docker-image ..., minikube image load ...) or push them to a registry and set kustomize images: ' +
    'in manifests/kustomization.yaml and demo/manifests/kustomization.yaml (see images/README.md)'
  );
}

/** Waits until the Deployments have rolled out; fails early on images the cluster cannot get. */
export async function waitForRollouts(
  k: DemoCluster,
  namespace: string,
  names: readonly string[],
  progress: { detail(line: string): void },
  timeoutMs = 180_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const imageProblemSince = new Map<string, number>();
  let shown = '';
  for (;;) {
    const deployments = items(await getJson(k, ['-n', namespace, 'get', 'deployments']));
    const pods = items(await getJson(k, ['-n', namespace, 'get', 'pods']));
    const rollouts = names.map((name) => {
      const found = deployments.find((d) => rolloutOf(d).name === name);
      return found ? rolloutOf(found) : { name, done: false, detail: 'no such Deployment' };
    });
    const pending = rollouts.filter((r) => !r.done);
    if (pending.length === 0) return;
    const problems = containerProblems(pods);
    for (const problem of problems.filter(isImageProblem)) {
      const key = `${problem.pod}/${problem.container}`;
      const since = imageProblemSince.get(key) ?? Date.now();
      imageProblemSince.set(key, since);
      // ErrImageNeverPull is final; a pull may still succeed after a retry or two.
      if (problem.reason === 'ErrImageNeverPull' || Date.now() - since > 30_000) {
        throw new Error(`${namespace}: ${imageAdvice(problem, k.local)}`);
      }
    }
    const summary = [
      ...pending.map((r) => `${r.name}: ${r.detail}`),
      ...problems.map((p) => `pod ${p.pod} container ${p.container}: ${p.reason}`),
    ].join('; ');
    if (summary !== shown) {
      progress.detail(summary);
      shown = summary;
    }
    if (Date.now() > deadline) {
      const logs = pending.map((r) => `kubectl -n ${namespace} logs deploy/${r.name} --all-containers`);
      throw new Error(
        `${namespace}: not ready after ${timeoutMs / 1000} s: ${summary}. ` +
          `Look at: kubectl -n ${namespace} get pods; kubectl -n ${namespace} describe pods; ${logs.join('; ')}`,
      );
    }
    await sleep(1000);
  }
}

/** eventually(), with a hint added to its timeout message. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  hint: string,
  timeoutMs = 60_000,
): Promise<T> {
  try {
    return await eventually(what, check, timeoutMs);
  } catch (error) {
    throw new Error(`${(error as Error).message}. ${hint}`, { cause: error });
  }
}
