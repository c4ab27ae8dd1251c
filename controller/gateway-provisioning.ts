// The data plane of a Gateway of class `sluice`, as objects (GEP-1762, in-cluster provisioning): a
// ServiceAccount (the gateway's own SPIFFE identity), a Deployment running `sluice proxy --mode gateway` with
// the sidecar's image, and a Service in front of it, all in the Gateway's namespace and owned by it (the
// garbage collector removes them with the Gateway). Pure: the provisioner applies what this returns.
// Decisions: docs/adr/0010-gateway-provisioning.md.
import { scrapeAnnotations } from '../protocol/prometheus-scrape.ts';
import { createHash } from 'node:crypto';
import { GATEWAY_CONTAINER, PROXY_NODE_OPTIONS } from '../mesh-model/endpoints.ts';
import { isObject, type K8sObject } from '../mesh-model/k8s-objects.ts';
import { containerResources, proxyResourcesFor, type ProxyResources } from '../protocol/proxy-resources.ts';

export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
/** On the Gateway (or in spec.infrastructure.annotations): LoadBalancer (default), ClusterIP or NodePort. */
export const SERVICE_TYPE_ANNOTATION = 'sluice.dev/service-type';
export const GATEWAY_ADMIN_PORT = 15021;
export const SERVICE_TYPES = ['LoadBalancer', 'ClusterIP', 'NodePort'] as const;
export type ServiceType = (typeof SERVICE_TYPES)[number];

// The same paths and audience the injector gives sidecars (injector/pod-injection.ts), so the proxy finds
// its token and the trust bundle where it always does.
const TOKEN_AUDIENCE = 'sluice.dev/mesh';
const TOKEN_DIR = '/var/run/sluice/token';
const CA_DIR = '/var/run/sluice/ca';
const CA_CONFIGMAP = 'sluice-ca-root';
const CA_KEY = 'ca.crt';
const PROXY_UID = 1337;

export interface ProvisioningSettings {
  /** The sidecar image (the controller's --proxy-image). */
  readonly image: string;
  readonly imagePullPolicy: string;
  /** What the proxies dial for config and certificates (sluice-controller.<ns>.svc:15012). */
  readonly controllerAddress: string;
  readonly trustDomain: string;
  /** The proxy's requests (the controller's --proxy-cpu-request, --proxy-memory-request); a Gateway's
   * annotations (or spec.infrastructure.annotations) win. */
  readonly proxyResources: ProxyResources;
}

export interface GatewayRef {
  readonly namespace: string;
  readonly name: string;
}

/**
 * Name of everything provisioned for Gateway `name`: `<name>-sluice`, which is also the ServiceAccount the
 * proxies run as. Names too long for a Service (63 characters) are cut and made unique with a hash.
 */
export function infrastructureName(gatewayName: string): string {
  const name = `${gatewayName}-sluice`;
  if (name.length <= 63) return name;
  const hash = createHash('sha256').update(gatewayName).digest('hex').slice(0, 8);
  return `${gatewayName.slice(0, 63 - 8 - 8).replace(/[-.]+$/, '')}-${hash}-sluice`;
}

function stringMap(value: unknown): Record<string, string> {
  if (!isObject(value)) return {};
  return Object.fromEntries(
    Object.entries(value).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
  );
}

/** The Service type asked for, or a message when the value is not one of ours. */
export function serviceType(gateway: K8sObject): ServiceType | { error: string } {
  const infra =
    isObject(gateway.spec) && isObject(gateway.spec.infrastructure) ? gateway.spec.infrastructure : {};
  const value =
    stringMap(gateway.metadata?.annotations)[SERVICE_TYPE_ANNOTATION] ??
    stringMap(infra.annotations)[SERVICE_TYPE_ANNOTATION];
  if (value === undefined) return 'LoadBalancer';
  const known = SERVICE_TYPES.find((t) => t.toLowerCase() === value.trim().toLowerCase());
  return (
    known ?? {
      error: `${SERVICE_TYPE_ANNOTATION} must be one of ${SERVICE_TYPES.join(', ')}, got '${value}'`,
    }
  );
}

interface ListenerPort {
  port: number;
  protocol: string;
}

/** Distinct listener ports with the protocol of their first listener, in port order. */
function listenerPorts(gateway: K8sObject): ListenerPort[] {
  const listeners =
    isObject(gateway.spec) && Array.isArray(gateway.spec.listeners) ? gateway.spec.listeners : [];
  const ports = new Map<number, string>();
  for (const l of listeners) {
    if (
      !isObject(l) ||
      typeof l.port !== 'number' ||
      !Number.isInteger(l.port) ||
      l.port < 1 ||
      l.port > 65535
    )
      continue;
    if (!ports.has(l.port)) ports.set(l.port, typeof l.protocol === 'string' ? l.protocol : 'TCP');
  }
  return [...ports].sort((a, b) => a[0] - b[0]).map(([port, protocol]) => ({ port, protocol }));
}

/**
 * The ServiceAccount, Deployment and Service of a Gateway (in that order), or a message saying why none can
 * be made. spec.infrastructure labels and annotations go on all three and on the pods.
 */
export function gatewayInfrastructure(
  gateway: K8sObject,
  settings: ProvisioningSettings,
): K8sObject[] | { error: string } {
  const meta = gateway.metadata ?? {};
  const gwName = meta.name;
  const namespace = meta.namespace ?? 'default';
  const uid = (meta as Record<string, unknown>).uid;
  if (typeof gwName !== 'string' || gwName === '') return { error: 'Gateway without a name' };
  if (typeof uid !== 'string' || uid === '')
    return { error: 'Gateway without a uid (not read from the API server)' };
  const type = serviceType(gateway);
  if (typeof type !== 'string') return type;
  const infra =
    isObject(gateway.spec) && isObject(gateway.spec.infrastructure) ? gateway.spec.infrastructure : {};
  const resources = proxyResourcesFor(settings.proxyResources, {
    ...stringMap(infra.annotations),
    ...stringMap(gateway.metadata?.annotations),
  });
  if ('error' in resources) return resources;
  const ports = listenerPorts(gateway);
  if (ports.length === 0) return { error: 'Gateway without a listener port' };
  const name = infrastructureName(gwName);
  const selector = { [GATEWAY_NAME_LABEL]: gwName };
  const labels = {
    ...stringMap(infra.labels),
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/managed-by': 'sluice',
    ...selector,
  };
  const annotations = stringMap(infra.annotations);
  const metadata = {
    name,
    namespace,
    labels,
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    ownerReferences: [
      {
        apiVersion: gateway.apiVersion ?? 'gateway.networking.k8s.io/v1',
        kind: 'Gateway',
        name: gwName,
        uid,
        controller: true,
        blockOwnerDeletion: true,
      },
    ],
  };
  const ready = { httpGet: { path: '/ready', port: GATEWAY_ADMIN_PORT } };
  const serviceAccount: K8sObject = { apiVersion: 'v1', kind: 'ServiceAccount', metadata };
  const deployment: K8sObject = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata,
    spec: {
      replicas: 1,
      selector: { matchLabels: selector },
      template: {
        metadata: {
          labels,
          // The gateway is its own proxy: the injector must leave its pods alone.
          // Prometheus scrapes its /metrics unless the infrastructure annotations say otherwise.
          annotations: {
            ...scrapeAnnotations(GATEWAY_ADMIN_PORT),
            ...annotations,
            'sluice.dev/inject': 'disabled',
          },
        },
        spec: {
          serviceAccountName: name,
          // Listener ports below 1024 (80, 443) without root or capabilities; a namespaced, safe sysctl.
          securityContext: {
            sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }],
            runAsNonRoot: true,
            runAsUser: PROXY_UID,
            runAsGroup: PROXY_UID,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          terminationGracePeriodSeconds: 30,
          containers: [
            {
              name: GATEWAY_CONTAINER,
              image: settings.image,
              imagePullPolicy: settings.imagePullPolicy,
              args: [
                'proxy',
                '--mode=gateway',
                `--gateway=${gwName}`,
                `--controller=${settings.controllerAddress}`,
                `--token-file=${TOKEN_DIR}/token`,
                `--ca-bundle-file=${CA_DIR}/${CA_KEY}`,
                `--trust-domain=${settings.trustDomain}`,
                `--admin-port=${GATEWAY_ADMIN_PORT}`,
                // Its spans' service.name (docs/observability.md): the infrastructure's name, e.g. web-gateway.
                `--tracing-service-name=${name}`,
              ],
              // Resource attributes of its spans (k8s.pod.name, k8s.node.name).
              env: [
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
                { name: 'NODE_OPTIONS', value: PROXY_NODE_OPTIONS },
              ],
              // Listener ports are not listed: a changed listener must not roll the pods (the proxy opens
              // and closes ports as its view changes, and the Service targets them by number).
              ports: [{ name: 'sluice-admin', containerPort: GATEWAY_ADMIN_PORT, protocol: 'TCP' }],
              readinessProbe: { ...ready, periodSeconds: 2 },
              livenessProbe: { httpGet: { path: '/live', port: GATEWAY_ADMIN_PORT }, periodSeconds: 10 },
              resources: containerResources(resources),
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
              volumeMounts: [
                { name: 'sluice-token', mountPath: TOKEN_DIR, readOnly: true },
                { name: 'sluice-ca', mountPath: CA_DIR, readOnly: true },
              ],
            },
          ],
          volumes: [
            {
              name: 'sluice-token',
              projected: {
                sources: [
                  {
                    serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: 3600, path: 'token' },
                  },
                ],
              },
            },
            { name: 'sluice-ca', configMap: { name: CA_CONFIGMAP, items: [{ key: CA_KEY, path: CA_KEY }] } },
          ],
        },
      },
    },
  };
  const service: K8sObject = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata,
    spec: {
      type,
      selector,
      ports: ports.map((p) => ({
        name: `${p.protocol.toLowerCase()}-${p.port}`,
        port: p.port,
        targetPort: p.port,
        protocol: 'TCP',
      })),
    },
  };
  return [serviceAccount, deployment, service];
}

/** The Gateway a workload identity (namespace, service account) serves, among `gateways`, if any. */
export function gatewayOfServiceAccount(
  gateways: readonly GatewayRef[],
  namespace: string,
  serviceAccount: string,
): GatewayRef | undefined {
  return gateways.find((g) => g.namespace === namespace && infrastructureName(g.name) === serviceAccount);
}
