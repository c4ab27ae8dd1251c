import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { ensureGatewayApiCrds as ensureCrds } from '../../cluster/gateway-api.ts';
import { kubectl as runKubectl, kubectlPath } from '../../cluster/kubectl.ts';
import { clusterPaths } from '../../cluster/paths.ts';
import type { RunOptions, RunResult } from '../../cluster/exec.ts';
import { eventually } from '../../lib/eventually.ts';

export { eventually };

const paths = clusterPaths();

/** kubectl against the local cluster (`npm run cluster:up`), as the cluster admin. */
export function kubectl(args: readonly string[], options?: RunOptions): Promise<RunResult> {
  return runKubectl(paths, args, options);
}

/** Fails the suite at once, with the command to run, when the local cluster is not up. */
export async function requireCluster(): Promise<void> {
  if (!existsSync(kubectlPath(paths)) || !existsSync(paths.kubeconfig)) {
    throw new Error(
      'the local cluster is not running: run `npm run cluster:up` (npm run e2e does it for you)',
    );
  }
  await kubectl(['get', '--raw', '/readyz'], { timeoutMs: 10_000 });
}

export function apply(objects: readonly object[], namespace?: string): Promise<RunResult> {
  const list = { apiVersion: 'v1', kind: 'List', items: objects };
  return kubectl([...(namespace ? ['-n', namespace] : []), 'apply', '-f', '-'], {
    input: JSON.stringify(list),
  });
}

/** A fresh namespace for one suite; `delete()` removes it and waits until it is gone. */
export async function testNamespace(prefix: string, labels: Record<string, string> = {}) {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } }]);
  return {
    name,
    delete: () =>
      kubectl(['delete', 'namespace', name, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 }),
  };
}

/** The Gateway API CRDs on the local cluster (installed once, kept between runs). */
export async function ensureGatewayApiCrds(): Promise<void> {
  await ensureCrds(kubectl, { fieldManager: 'sluice-e2e', forceConflicts: true });
}

/** `kubectl get ... -o json`, parsed. */
export async function getJson(args: readonly string[]): Promise<Record<string, unknown>> {
  return JSON.parse((await kubectl([...args, '-o', 'json'])).stdout) as Record<string, unknown>;
}

/** A Service without a selector (port 80 → 8080): a route parent or backend that needs no pods. */
export function plainService(name: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name },
    spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  };
}

export const CONTROL_NAMESPACE = 'sluice-system';

/**
 * Applies manifests/ as a user would (through the local cluster's overlay) and waits for the controller and the injector (restarted, so they run
 * this checkout's image) and for the injector to have put its CA into the webhook configuration.
 */
export async function deploySluice(options: { controllerEnv?: Record<string, string> } = {}): Promise<void> {
  // The local cluster's overlay of manifests/ (proxies request less CPU on its one 2-core node).
  await kubectl(['apply', '-k', 'demo/sluice-local/'], { timeoutMs: 60_000 });
  // Settings of one suite (removeController() deletes the Deployment, so they do not outlive it).
  const env = Object.entries(options.controllerEnv ?? {}).map(([k, v]) => `${k}=${v}`);
  if (env.length > 0) {
    await kubectl(['-n', CONTROL_NAMESPACE, 'set', 'env', 'deployment/sluice-controller', ...env]);
  }
  await kubectl([
    '-n',
    CONTROL_NAMESPACE,
    'rollout',
    'restart',
    'deployment/sluice-controller',
    'deployment/sluice-injector',
  ]);
  await controllerRollout();
  await kubectl(
    ['-n', CONTROL_NAMESPACE, 'rollout', 'status', 'deployment/sluice-injector', '--timeout=180s'],
    { timeoutMs: 190_000 },
  );
  await eventually('the injector wrote its caBundle', async () => {
    const { stdout } = await kubectl([
      'get',
      'mutatingwebhookconfiguration',
      'sluice-injector',
      '-o',
      'jsonpath={.webhooks[*].clientConfig.caBundle}',
    ]);
    return stdout.trim() === '' ? undefined : true;
  });
}

export async function controllerRollout(): Promise<void> {
  await kubectl(
    ['-n', CONTROL_NAMESPACE, 'rollout', 'status', 'deployment/sluice-controller', '--timeout=180s'],
    { timeoutMs: 190_000 },
  );
}

/** Other suites write route status as sluice.dev/mesh themselves: leave no controller behind. */
export async function removeController(): Promise<void> {
  await kubectl(['delete', '-k', 'manifests/', '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
}

/** Another (gateway) controller, whose status entries the mesh must leave alone. */
export const GATEWAY_CONTROLLER = 'example.net/gateway-controller';
export const GATEWAY_PARENT = { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge' };

/** That controller's status entry for the Gateway parent. */
export const FOREIGN_ENTRY = {
  parentRef: GATEWAY_PARENT,
  controllerName: GATEWAY_CONTROLLER,
  conditions: [
    {
      type: 'Accepted',
      status: 'True',
      reason: 'Accepted',
      message: 'attached by the gateway',
      lastTransitionTime: '2026-01-01T00:00:00Z',
    },
  ],
};
