import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { RunOptions, RunResult } from './exec.ts';
import { REPO_DIR } from './paths.ts';

export const GATEWAY_API_VERSION = 'v1.6.1';

/**
 * Where to apply the Gateway API CRDs from (standard channel). They are never committed here: a local copy
 * next to the checkout (`../shared/gateway-api/<version>/`, or SLUICE_GATEWAY_API_DIR, or this workplace's
 * /work/shared) is used when present, the upstream release otherwise.
 */
export function gatewayApiCrdSource(env: NodeJS.ProcessEnv = process.env): string {
  const candidates = [
    env.SLUICE_GATEWAY_API_DIR,
    join(REPO_DIR, '..', 'shared', 'gateway-api', GATEWAY_API_VERSION),
    join('/work/shared/gateway-api', GATEWAY_API_VERSION),
  ];
  const dir = candidates.find((c): c is string => c !== undefined && existsSync(join(c, 'standard')));
  return dir
    ? join(dir, 'standard')
    : `https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml`;
}

/** The CRDs Sluice reads routes from; both present means the Gateway API is installed. */
export const ROUTE_CRDS = [
  'crd/httproutes.gateway.networking.k8s.io',
  'crd/grpcroutes.gateway.networking.k8s.io',
] as const;

type Kubectl = (args: readonly string[], options?: RunOptions) => Promise<RunResult>;

/**
 * Applies the CRDs (from gatewayApiCrdSource()) unless both route CRDs exist, then waits until they are
 * established. Says what it found: the installed bundle version, or the source it applied.
 */
export async function ensureGatewayApiCrds(
  kubectl: Kubectl,
  options: { readonly fieldManager: string; readonly forceConflicts?: boolean },
): Promise<{ readonly installedVersion: string } | { readonly appliedFrom: string }> {
  const { stdout } = await kubectl(['get', ...ROUTE_CRDS, '-o', 'json', '--ignore-not-found']);
  const present = stdout.trim() === '' ? [] : ((JSON.parse(stdout) as { items?: unknown[] }).items ?? []);
  let result: { installedVersion: string } | { appliedFrom: string };
  if (present.length === ROUTE_CRDS.length) {
    const annotations = (present[0] as { metadata?: { annotations?: Record<string, string> } }).metadata
      ?.annotations;
    result = {
      installedVersion: annotations?.['gateway.networking.k8s.io/bundle-version'] ?? 'unknown version',
    };
  } else {
    const source = gatewayApiCrdSource();
    // Server-side: the HTTPRoute CRD is too big for client-side apply's last-applied annotation.
    await kubectl(
      [
        'apply',
        '--server-side',
        ...(options.forceConflicts ? ['--force-conflicts'] : []),
        `--field-manager=${options.fieldManager}`,
        '-f',
        source,
      ],
      { timeoutMs: 120_000 },
    );
    result = { appliedFrom: source };
  }
  await kubectl(['wait', '--for=condition=Established', ...ROUTE_CRDS, '--timeout=60s'], {
    timeoutMs: 70_000,
  });
  return result;
}
