// What the controller and the injector both read at start-up: the trust domain and their own pod's image.
import type { KubeApi } from '../lib/kube/kube-api.ts';
import { UsageError } from '../lib/usage-error.ts';
import { validateTrustDomain } from '../pki/spiffe-id.ts';
import { DEFAULT_TRUST_DOMAIN } from '../protocol/config-protocol.ts';

/** --trust-domain, else $SLUICE_TRUST_DOMAIN, else the default; an invalid one is a UsageError. */
export function trustDomainFlag(
  value: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string {
  try {
    return validateTrustDomain(value ?? (env.SLUICE_TRUST_DOMAIN || DEFAULT_TRUST_DOMAIN));
  } catch (err) {
    throw new UsageError(`--trust-domain: ${(err as Error).message}`);
  }
}

export interface ContainerImage {
  readonly image: string;
  readonly pullPolicy: string;
}

interface OwnPod {
  spec?: { containers?: { args?: string[]; image?: string; imagePullPolicy?: string }[] };
}

/**
 * The image (and pull policy) of the container of pod `namespace/podName` that runs `sluice ROLE` (else
 * its first container): the image this process runs. Undefined when that container has none.
 */
export async function ownPodImage(
  api: KubeApi,
  namespace: string,
  podName: string,
  role: string,
): Promise<ContainerImage | undefined> {
  const pod = await api.request<OwnPod>('GET', `/api/v1/namespaces/${namespace}/pods/${podName}`, {
    timeoutMs: 10_000,
  });
  const containers = pod.spec?.containers ?? [];
  const container = containers.find((c) => c.args?.[0] === role) ?? containers[0];
  if (!container?.image) return undefined;
  return { image: container.image, pullPolicy: container.imagePullPolicy ?? 'IfNotPresent' };
}
