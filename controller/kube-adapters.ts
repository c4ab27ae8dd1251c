// The Kubernetes calls behind the CA's interfaces (TokenReviewer, CaSecretStore, ConfigMapStore).
import { describeApiError, unlessStatus, type KubeApi } from '../lib/kube/kube-api.ts';
import type { CaSecret, CaSecretStore } from './ca-root-secret.ts';
import type { BundleConfigMap, ConfigMapStore } from './trust-bundle-publisher.ts';
import { tokenReviewRequest, tokenReviewResult, type TokenReviewer } from './workload-ca.ts';

const options = { timeoutMs: 10_000 };
const core = (namespace: string, plural: string): string => `/api/v1/namespaces/${namespace}/${plural}`;

/** TokenReview (authentication.k8s.io/v1, create) as the controller's service account. */
export function apiTokenReviewer(api: KubeApi): TokenReviewer {
  return {
    async review(token, audiences) {
      const reply = await api.request('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
        ...options,
        body: tokenReviewRequest(token, audiences),
      });
      return tokenReviewResult(reply);
    },
  };
}

/** The CA Secret through the core API (get, create). */
export function apiCaSecretStore(api: KubeApi): CaSecretStore {
  return {
    get: (namespace, name) =>
      unlessStatus(api.request('GET', `${core(namespace, 'secrets')}/${name}`, options), [404], undefined),
    create: (secret: CaSecret) =>
      unlessStatus(
        api
          .request('POST', core(secret.metadata.namespace, 'secrets'), { ...options, body: secret })
          .then(() => true),
        [409],
        false,
      ),
  };
}

/** ConfigMaps through the core API (get, create, replace), for the trust bundle publisher. */
export function apiConfigMapStore(api: KubeApi): ConfigMapStore {
  const path = (namespace: string, name: string): string => `${core(namespace, 'configmaps')}/${name}`;
  return {
    get: (namespace, name) =>
      unlessStatus(api.request<BundleConfigMap>('GET', path(namespace, name), options), [404], undefined),
    create: (namespace, configMap) =>
      unlessStatus(
        api.request('POST', core(namespace, 'configmaps'), { ...options, body: configMap }).then(() => true),
        [409],
        false,
      ),
    replace: (namespace, name, configMap) =>
      unlessStatus(
        api.request('PUT', path(namespace, name), { ...options, body: configMap }).then(() => true),
        [409, 404],
        false,
      ),
    describe: describeApiError,
  };
}
