// The Kubernetes calls behind the CA's interfaces (TokenReviewer, CaSecretStore), through
// @kubernetes/client-node's typed clients with controller/api-call.ts for deadlines and error lines.
import {
  AuthenticationV1Api,
  CoreV1Api,
  type KubeConfig,
  V1ConfigMap,
  V1Secret,
  V1TokenReview,
} from '@kubernetes/client-node';
import { apiStatus, callOptions, describeApiError } from './api-call.ts';
import type { CaSecret, CaSecretStore } from './ca-root-secret.ts';
import type { ConfigMapStore } from './trust-bundle-publisher.ts';
import { tokenReviewRequest, tokenReviewResult, type TokenReviewer } from './workload-ca.ts';

const REQUEST_TIMEOUT_MS = 10_000;

/** TokenReview (authentication.k8s.io/v1, create) as the controller's service account. */
export function apiTokenReviewer(kubeConfig: KubeConfig): TokenReviewer {
  const api = kubeConfig.makeApiClient(AuthenticationV1Api);
  return {
    async review(token, audiences) {
      // The client's model classes are plain data; its serializer reads any object of the right shape.
      const body = Object.assign(new V1TokenReview(), tokenReviewRequest(token, audiences));
      const reply = await api.createTokenReview({ body }, callOptions({ timeoutMs: REQUEST_TIMEOUT_MS }));
      return tokenReviewResult(reply);
    },
  };
}

/** The CA Secret through the core API (get, create). */
export function apiCaSecretStore(kubeConfig: KubeConfig): CaSecretStore {
  const api = kubeConfig.makeApiClient(CoreV1Api);
  return {
    async get(namespace, name) {
      try {
        return await api.readNamespacedSecret(
          { namespace, name },
          callOptions({ timeoutMs: REQUEST_TIMEOUT_MS }),
        );
      } catch (error) {
        if (apiStatus(error) === 404) return undefined;
        throw error;
      }
    },
    async create(secret: CaSecret) {
      try {
        await api.createNamespacedSecret(
          { namespace: secret.metadata.namespace, body: Object.assign(new V1Secret(), secret) },
          callOptions({ timeoutMs: REQUEST_TIMEOUT_MS }),
        );
        return true;
      } catch (error) {
        if (apiStatus(error) === 409) return false;
        throw error;
      }
    },
  };
}

/** ConfigMaps through the core API (get, create, replace), for the trust bundle publisher. */
export function apiConfigMapStore(kubeConfig: KubeConfig): ConfigMapStore {
  const api = kubeConfig.makeApiClient(CoreV1Api);
  const options = (): ReturnType<typeof callOptions> => callOptions({ timeoutMs: REQUEST_TIMEOUT_MS });
  return {
    async get(namespace, name) {
      try {
        return await api.readNamespacedConfigMap({ namespace, name }, options());
      } catch (error) {
        if (apiStatus(error) === 404) return undefined;
        throw error;
      }
    },
    async create(namespace, configMap) {
      try {
        await api.createNamespacedConfigMap(
          { namespace, body: Object.assign(new V1ConfigMap(), configMap) },
          options(),
        );
        return true;
      } catch (error) {
        if (apiStatus(error) === 409) return false;
        throw error;
      }
    },
    async replace(namespace, name, configMap) {
      try {
        await api.replaceNamespacedConfigMap(
          { namespace, name, body: Object.assign(new V1ConfigMap(), configMap) },
          options(),
        );
        return true;
      } catch (error) {
        const status = apiStatus(error);
        if (status === 409 || status === 404) return false;
        throw error;
      }
    },
    describe: describeApiError,
  };
}
