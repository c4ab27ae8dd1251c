import { existsSync } from 'node:fs';
import { join } from 'node:path';
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
