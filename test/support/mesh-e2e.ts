// Kubernetes objects and steps the e2e suites share: meshed Deployments of the echo server and the
// toolbox, their Services and routes, rollouts, and commands run in a pod's containers.
import { kubectl } from './kube.ts';

export const INJECT = { 'sluice.dev/inject': 'enabled' };
export const ECHO_PORT = 8080;

export type Obj = Record<string, unknown>;

export interface DeploymentOptions {
  /** Pod labels and the selector; default { app: name }. */
  labels?: Record<string, string>;
  replicas?: number;
  /** Seconds (default 2: test pods have nothing to finish). */
  terminationGracePeriodSeconds?: number;
  /** One pod at a time, none down before its successor is ready: a rolling update as most apps run it. */
  surgeOneAtATime?: boolean;
}

export function deployment(name: string, pod: Obj, o: DeploymentOptions = {}): object {
  const labels = o.labels ?? { app: name };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels },
    spec: {
      replicas: o.replicas ?? 1,
      selector: { matchLabels: labels },
      ...(o.surgeOneAtATime
        ? { strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } } }
        : {}),
      template: {
        metadata: { labels },
        spec: { terminationGracePeriodSeconds: o.terminationGracePeriodSeconds ?? 2, ...pod },
      },
    },
  };
}

export function serviceAccount(name: string): object {
  return { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } };
}

/** Port 80 (named http) to the echo port of the selected pods. */
export function service(name: string, selector: Record<string, string>): object {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name },
    spec: { selector, ports: [{ name: 'http', port: 80, targetPort: ECHO_PORT }] },
  };
}

/** The echo server container (images/echo), ready once it listens. */
export function echoContainer(name: string, args: string[] = []): Obj {
  return {
    name: 'echo',
    image: 'sluice-echo:dev',
    imagePullPolicy: 'Never',
    args: ['--name', name, '--ports', String(ECHO_PORT), ...args],
    readinessProbe: { httpGet: { path: '/ready', port: ECHO_PORT }, periodSeconds: 1 },
  };
}

/** The toolbox container (curl, grpc-call, load) that tests exec into. */
export const toolboxContainer: Obj = {
  name: 'app',
  image: 'sluice-toolbox:dev',
  imagePullPolicy: 'Never',
  command: ['sleep', 'infinity'],
};

/** An HTTPRoute attached to a Service (GAMMA). */
export function serviceRoute(
  name: string,
  parent: { namespace?: string; name: string },
  rules: Obj[],
): object {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name },
    spec: { parentRefs: [{ group: '', kind: 'Service', port: 80, ...parent }], rules },
  };
}

export const backendRef = (name: string, weight?: number, namespace?: string): Obj => ({
  name,
  port: 80,
  ...(weight === undefined ? {} : { weight }),
  ...(namespace === undefined ? {} : { namespace }),
});

export async function rolloutStatus(namespace: string, name: string, timeoutSeconds = 180): Promise<void> {
  await kubectl(
    ['-n', namespace, 'rollout', 'status', `deployment/${name}`, `--timeout=${timeoutSeconds}s`],
    { timeoutMs: (timeoutSeconds + 10) * 1000 },
  );
}

/** Runs a command in a container of a Deployment's pod; resolves with its stdout. */
export async function execIn(
  namespace: string,
  deploymentName: string,
  container: string,
  command: readonly string[],
  timeoutMs = 30_000,
): Promise<string> {
  const { stdout } = await kubectl(
    ['-n', namespace, 'exec', `deploy/${deploymentName}`, '-c', container, '--', ...command],
    { timeoutMs },
  );
  return stdout;
}

/** GET on a sidecar's admin port (loopback only: /config_dump, /metrics) from inside its container. */
export function sidecarAdmin(namespace: string, deploymentName: string, path: string): Promise<string> {
  return execIn(namespace, deploymentName, 'sluice-proxy', [
    'node',
    '-e',
    `fetch('http://127.0.0.1:15021${path}').then(r=>r.text()).then(t=>process.stdout.write(t))`,
  ]);
}
