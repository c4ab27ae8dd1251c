// Installing Sluice on a cluster as a user does (the Gateway API CRDs, then `kubectl apply -k manifests/`; on
// the local cluster its overlay demo/sluice-local/), shared by `npm run demo` and `npm run conformance`.
import { join } from 'node:path';
import { ensureGatewayApiCrds, GATEWAY_API_VERSION } from '../cluster/gateway-api.ts';
import { REPO_DIR } from '../cluster/paths.ts';
import type { Progress } from '../cluster/progress.ts';
import { webhooksWithoutCaBundle } from './cluster-state.ts';
import type { DemoCluster } from './demo-cluster.ts';
import { getJson, waitFor, waitForRollouts } from './waits.ts';

export const CONTROL_NAMESPACE = 'sluice-system';
const CONTROL_DEPLOYMENTS = ['sluice-controller', 'sluice-injector'];
const WEBHOOK = 'sluice-injector';

export async function installGatewayApi(
  k: DemoCluster,
  progress: Progress,
  fieldManager = 'sluice-demo',
): Promise<void> {
  await progress.step(`Gateway API CRDs (${GATEWAY_API_VERSION}, standard channel)`, async () => {
    const found = await ensureGatewayApiCrds((args, options) => k.kubectl(args, options), {
      fieldManager,
    });
    progress.detail(
      'installedVersion' in found
        ? `already installed (${found.installedVersion}): left as they are`
        : `kubectl apply --server-side -f ${found.appliedFrom}`,
    );
  });
}

/**
 * The local cluster rebuilds the images under the same tags (`cluster up`), which running pods do not
 * notice: restart what ran before this run so it shows this checkout's code. A user's cluster is left alone.
 */
export async function staleOnLocalCluster(
  k: DemoCluster,
  namespace: string,
  deployments: readonly string[],
): Promise<string[]> {
  if (!k.local) return [];
  const { stdout } = await k.kubectl([
    '-n',
    namespace,
    'get',
    'deployments',
    '-o',
    'name',
    '--ignore-not-found',
  ]);
  return deployments.filter((d) => stdout.split('\n').includes(`deployment.apps/${d}`));
}

export async function restart(
  k: DemoCluster,
  namespace: string,
  stale: readonly string[],
  progress: Progress,
) {
  if (stale.length === 0) return;
  await k.kubectl(['-n', namespace, 'rollout', 'restart', ...stale.map((d) => `deployment/${d}`)]);
  progress.detail(`restarted ${stale.join(', ')} (the local images may have been rebuilt)`);
}

/**
 * What is applied: manifests/ on a user's cluster; on the local cluster (one 2-core node) the overlay that
 * lowers the proxies' CPU request (ADR 0012).
 */
export function sluiceManifests(local: boolean): string {
  return local ? 'demo/sluice-local' : 'manifests';
}

export async function installSluice(k: DemoCluster, progress: Progress): Promise<void> {
  const dir = sluiceManifests(k.local);
  await progress.step(`Sluice control plane (kubectl apply -k ${dir}/)`, async () => {
    const stale = await staleOnLocalCluster(k, CONTROL_NAMESPACE, CONTROL_DEPLOYMENTS);
    await k.kubectl(['apply', '-k', join(REPO_DIR, dir)], { timeoutMs: 120_000 });
    await restart(k, CONTROL_NAMESPACE, stale, progress);
    await waitForRollouts(k, CONTROL_NAMESPACE, CONTROL_DEPLOYMENTS, progress);
    progress.detail(`${CONTROL_DEPLOYMENTS.join(', ')}: rolled out`);
    await waitFor(
      `caBundle of MutatingWebhookConfiguration ${WEBHOOK}`,
      async () => {
        const missing = webhooksWithoutCaBundle(
          await getJson(k, ['get', 'mutatingwebhookconfiguration', WEBHOOK]),
        );
        if (missing.length > 0) throw new Error(`no caBundle yet in ${missing.join(', ')}`);
        return true;
      },
      `The injector writes it: kubectl -n ${CONTROL_NAMESPACE} logs deploy/sluice-injector`,
    );
    progress.detail(`webhook ${WEBHOOK}: caBundle set by the injector`);
  });
}
