// What the webhook does to one Pod: skip it (and say why) or return the JSON patch that adds the capture
// init container, the proxy and their volumes. Pure: the AdmissionReview handling and I/O live elsewhere.
import { TRACING_SAMPLING_ANNOTATION } from '../protocol/tracing-config.ts';
import { SCRAPE_ANNOTATIONS, scrapeAnnotations } from '../protocol/prometheus-scrape.ts';
import {
  INIT_CONTAINER,
  INJECTED,
  PROXY_CONTAINER,
  PROXY_NODE_OPTIONS,
  STATUS_ANNOTATION,
} from '../mesh-model/endpoints.ts';
import { isObject } from '../mesh-model/k8s-objects.ts';
import {
  defaultCaptureConfig,
  INBOUND_TO_LOCALHOST_ANNOTATION,
  parseBooleanText,
  parseInitIptablesArgs,
} from '../protocol/capture-config.ts';
import { containerResources, proxyResourcesFor, type ProxyResources } from '../protocol/proxy-resources.ts';

export { INIT_CONTAINER, STATUS_ANNOTATION };
export const INJECT_ANNOTATION = 'sluice.dev/inject';
export const MTLS_MODE_ANNOTATION = 'sluice.dev/mtls-mode';
/** Set to "true" by a pod that needs the proxy uid, NET_ADMIN/NET_RAW or privileged app containers: it is
 * injected, but with a warning, because such a container can undo or step around the capture rules. */
export const ALLOW_CAPTURE_ESCAPE_ANNOTATION = 'sluice.dev/allow-capture-escape';
export const EXCLUDE_INBOUND_ANNOTATION = 'sluice.dev/exclude-inbound-ports';
export const TOKEN_AUDIENCE = 'sluice.dev/mesh';
export const TOKEN_DIR = '/var/run/sluice/token';
export const CA_DIR = '/var/run/sluice/ca';
const TOKEN_VOLUME = 'sluice-token';
const CA_VOLUME = 'sluice-ca';
const CA_CONFIGMAP = 'sluice-ca-root';
const CA_KEY = 'ca.crt';

/** Pod annotations → `sluice init-iptables` flags of the same names. */
const CAPTURE_ANNOTATIONS = [
  'exclude-inbound-ports',
  'exclude-outbound-ports',
  'exclude-outbound-cidrs',
  'include-outbound-cidrs',
] as const;

export interface InjectionSettings {
  readonly image: string;
  readonly imagePullPolicy: string;
  /** host:port of the controller's config and certificate endpoint. */
  readonly controllerAddress: string;
  readonly trustDomain: string;
  /** Proxy as an init container with restartPolicy Always (Kubernetes ≥ 1.29); else a classic sidecar
   * whose postStart hook holds the app containers until the proxy is ready. */
  readonly nativeSidecars: boolean;
  /** Default inbound mTLS mode; a pod may override it with the sluice.dev/mtls-mode annotation. */
  readonly mtlsMode: 'PERMISSIVE' | 'STRICT';
  /** The proxy's requests (--proxy-cpu-request, --proxy-memory-request); a pod's annotations win. */
  readonly proxyResources: ProxyResources;
}

export type SkipReason = 'opted-out' | 'host-network' | 'already-injected';

/** Why a pod was refused: the bounded `reason` label of sluice_injector_pods_total{result="denied"}. */
export type DenyCode = 'bad-annotation' | 'reserved-name' | 'capture-escape' | 'strict-without-capture';

export type JsonPatchOp = { op: 'add'; path: string; value: unknown };

export type InjectionDecision =
  | {
      readonly action: 'inject';
      readonly patch: JsonPatchOp[];
      /** For the AdmissionReview's `warnings` (shown by kubectl) and the audit annotation. */
      readonly warnings: string[];
    }
  | { readonly action: 'skip'; readonly reason: SkipReason }
  /** The pod asks for something we cannot do (a bad annotation): refuse it with this message. */
  | { readonly action: 'deny'; readonly code: DenyCode; readonly message: string };

const PROXY_UID = defaultCaptureConfig.proxyUid;
const PORTS = {
  inbound: defaultCaptureConfig.inboundPort,
  outbound: defaultCaptureConfig.outboundPort,
  admin: defaultCaptureConfig.adminPort,
};

function containersOf(
  spec: Record<string, unknown>,
  field: 'containers' | 'initContainers',
): Record<string, unknown>[] {
  const list = spec[field];
  return Array.isArray(list) ? list.filter(isObject) : [];
}

function containerNames(spec: Record<string, unknown>, field: 'containers' | 'initContainers'): string[] {
  return containersOf(spec, field).map((c) => String(c.name));
}

const ESCAPE_CAPABILITIES = new Set(['NET_ADMIN', 'NET_RAW', 'ALL']);

/**
 * What in the pod's own containers can step around capture: running as the proxy uid (whose traffic the
 * rules never redirect), NET_ADMIN/NET_RAW (rewrite the rules, raw sockets) or privileged. One line each.
 */
export function captureEscapes(spec: Record<string, unknown>): string[] {
  const podContext = isObject(spec.securityContext) ? spec.securityContext : {};
  const found: string[] = [];
  for (const field of ['initContainers', 'containers'] as const) {
    for (const c of containersOf(spec, field)) {
      const context = isObject(c.securityContext) ? c.securityContext : {};
      const name = String(c.name);
      const uid = context.runAsUser ?? podContext.runAsUser;
      if (uid === PROXY_UID) found.push(`container ${name} runs as the proxy uid ${PROXY_UID}`);
      const capabilities = isObject(context.capabilities) ? context.capabilities : {};
      const added = Array.isArray(capabilities.add) ? capabilities.add : [];
      const risky = added
        .map((cap) => String(cap).toUpperCase().replace(/^CAP_/, ''))
        .filter((cap) => ESCAPE_CAPABILITIES.has(cap));
      if (risky.length > 0) found.push(`container ${name} adds ${risky.join(', ')}`);
      if (context.privileged === true) found.push(`container ${name} is privileged`);
    }
  }
  return found;
}

/** Port ranges ("80", "9000:9100") cover every port an app can use (all but the proxy's own)? */
export function coversEveryInboundPort(ranges: readonly string[]): boolean {
  const spans = ranges
    .map((r) => r.split(':').map(Number))
    .map(([low = 0, high = low]) => [low, high] as const)
    .sort((a, b) => a[0] - b[0]);
  const own = new Set([PORTS.inbound, PORTS.outbound, PORTS.admin]);
  let next = 1; // the lowest port not yet known to be covered
  for (const [low, high] of spans) {
    while (next < low && own.has(next)) next++;
    if (low > next) return false;
    next = Math.max(next, high + 1);
  }
  while (next <= 65535 && own.has(next)) next++;
  return next > 65535;
}

/** `/` and `~` in a JSON pointer segment (RFC 6901). */
function pointerSegment(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1');
}

function stringAnnotations(metadata: Record<string, unknown>): Record<string, string> {
  const raw = isObject(metadata.annotations) ? metadata.annotations : {};
  return Object.fromEntries(
    Object.entries(raw).filter((e): e is [string, string] => typeof e[1] === 'string'),
  );
}

/** init-iptables arguments from the pod's annotations (checked as the init container will parse them),
 * or the message of the first bad one. */
export function captureArgs(annotations: Record<string, string>): string[] | string {
  return captureSettings(annotations).args;
}

/** init-iptables arguments and the parsed inbound exclusions (or the first bad annotation's message). */
function captureSettings(
  annotations: Record<string, string>,
): { args: string[]; excludedInbound: string[] } | { args: string } {
  const args = [
    'init-iptables',
    `--proxy-uid=${PROXY_UID}`,
    `--inbound-port=${PORTS.inbound}`,
    `--outbound-port=${PORTS.outbound}`,
    `--admin-port=${PORTS.admin}`,
  ];
  for (const name of CAPTURE_ANNOTATIONS) {
    const value = annotations[`sluice.dev/${name}`]?.trim();
    if (value === undefined) continue;
    const arg = `--${name}=${value}`;
    try {
      parseInitIptablesArgs([arg]);
    } catch (err) {
      return {
        args: `annotation sluice.dev/${name}: ${(err as Error).message.replace(/^init-iptables: --[a-z-]+:? /, '')}`,
      };
    }
    args.push(arg);
  }
  return { args, excludedInbound: parseInitIptablesArgs(args.slice(1)).config.excludeInboundPorts };
}

function mtlsMode(annotations: Record<string, string>, fallback: string): string | { error: string } {
  const value = annotations[MTLS_MODE_ANNOTATION];
  if (value === undefined) return fallback;
  const mode = value.trim().toUpperCase();
  return mode === 'STRICT' || mode === 'PERMISSIVE'
    ? mode
    : { error: `annotation ${MTLS_MODE_ANNOTATION}: must be STRICT or PERMISSIVE, got '${value}'` };
}

/** `sluice proxy` flags from the pod's annotations, or the message of a bad one. */
function proxyArgs(annotations: Record<string, string>): string[] | { error: string } {
  const args: string[] = [];
  const value = annotations[INBOUND_TO_LOCALHOST_ANNOTATION];
  if (value !== undefined) {
    const toLocalhost = parseBooleanText(value);
    if (toLocalhost === undefined) {
      return {
        error: `annotation ${INBOUND_TO_LOCALHOST_ANNOTATION}: must be true or false, got '${value}'`,
      };
    }
    if (toLocalhost) args.push('--inbound-to-localhost=true');
  }
  const sampling = annotations[TRACING_SAMPLING_ANNOTATION]?.trim();
  if (sampling !== undefined) {
    const percent = Number(sampling);
    if (sampling === '' || !(percent >= 0 && percent <= 100)) {
      return {
        error: `annotation ${TRACING_SAMPLING_ANNOTATION}: must be a percentage from 0 to 100, got '${sampling}'`,
      };
    }
    args.push(`--tracing-sampling-percent=${percent}`);
  }
  return args;
}

const RESTRICTED = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  seccompProfile: { type: 'RuntimeDefault' },
};

function initContainer(settings: InjectionSettings, args: string[]): Record<string, unknown> {
  return {
    name: INIT_CONTAINER,
    image: settings.image,
    imagePullPolicy: settings.imagePullPolicy,
    args,
    // Root with only the two network capabilities, in the pod's own network namespace.
    securityContext: {
      ...RESTRICTED,
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } },
  };
}

function fieldEnv(name: string, fieldPath: string): Record<string, unknown> {
  return { name, valueFrom: { fieldRef: { fieldPath } } };
}

/** See docs/operations.md, "Shutdown order". */
const CLASSIC_DRAIN_DELAY_SECONDS = 5;

function proxyContainer(
  settings: InjectionSettings,
  mode: string,
  extra: string[],
  resources: ProxyResources = settings.proxyResources,
): Record<string, unknown> {
  const ready = { httpGet: { path: '/ready', port: PORTS.admin } };
  return {
    name: PROXY_CONTAINER,
    image: settings.image,
    imagePullPolicy: settings.imagePullPolicy,
    args: [
      'proxy',
      `--controller=${settings.controllerAddress}`,
      `--token-file=${TOKEN_DIR}/token`,
      `--ca-bundle-file=${CA_DIR}/${CA_KEY}`,
      `--trust-domain=${settings.trustDomain}`,
      `--mode=${mode}`,
      // Classic sidecars get SIGTERM with the app: keep serving while peers drop the pod and the app shuts
      // down (docs/operations.md). Native ones get it only after the app exited.
      ...(settings.nativeSidecars ? [] : [`--drain-delay-seconds=${CLASSIC_DRAIN_DELAY_SECONDS}`]),
      ...extra,
    ],
    ...(settings.nativeSidecars
      ? { restartPolicy: 'Always' }
      : {
          // Classic sidecar: kubelet starts the next container only when this hook returns.
          lifecycle: {
            postStart: {
              exec: { command: ['node', '/app/bin/sluice.js', 'wait-ready', `--port=${PORTS.admin}`] },
            },
          },
        }),
    env: [
      fieldEnv('POD_NAME', 'metadata.name'),
      fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
      fieldEnv('POD_IP', 'status.podIP'),
      fieldEnv('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
      fieldEnv('NODE_NAME', 'spec.nodeName'),
      // The workload's service.name on its spans (empty without an app label: then the pod name).
      fieldEnv('SLUICE_SERVICE_NAME', "metadata.labels['app']"),
      { name: 'NODE_OPTIONS', value: PROXY_NODE_OPTIONS },
    ],
    ports: [{ name: 'sluice-admin', containerPort: PORTS.admin, protocol: 'TCP' }],
    startupProbe: { ...ready, periodSeconds: 1, failureThreshold: 120 },
    readinessProbe: { ...ready, periodSeconds: 5 },
    livenessProbe: { httpGet: { path: '/live', port: PORTS.admin }, periodSeconds: 10, failureThreshold: 3 },
    resources: containerResources(resources),
    securityContext: {
      ...RESTRICTED,
      runAsUser: PROXY_UID,
      runAsGroup: PROXY_UID,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    },
    volumeMounts: [
      { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
      { name: CA_VOLUME, mountPath: CA_DIR, readOnly: true },
    ],
  };
}

const VOLUMES = [
  {
    name: TOKEN_VOLUME,
    projected: {
      sources: [
        { serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: 3600, path: 'token' } },
      ],
    },
  },
  { name: CA_VOLUME, configMap: { name: CA_CONFIGMAP, items: [{ key: CA_KEY, path: CA_KEY }] } },
];

/** Adds `items` at the front of (or, with `append`, after) the array at `path`, creating it if absent. */
function addToArray(path: string, existing: unknown, items: unknown[], append = false): JsonPatchOp[] {
  if (!Array.isArray(existing) || existing.length === 0) return [{ op: 'add', path, value: items }];
  return items.map((value, i) => ({ op: 'add', path: `${path}/${append ? '-' : String(i)}`, value }));
}

/** Whether the pod's sluice-init and sluice-proxy are what this injector adds (image, command, args). */
function isOwnInjection(
  spec: Record<string, unknown>,
  settings: InjectionSettings,
  annotations: Record<string, string>,
): boolean {
  const capture = captureSettings(annotations);
  const mode = mtlsMode(annotations, settings.mtlsMode);
  const extra = proxyArgs(annotations);
  if (typeof capture.args === 'string' || typeof mode !== 'string' || !Array.isArray(extra)) return false;
  const captureArgs = capture.args;
  const extraArgs: string[] = extra;
  const present = [spec.initContainers, spec.containers].flatMap((l) =>
    Array.isArray(l) ? l.filter(isObject) : [],
  );
  const essentials = (c: Record<string, unknown>): string => JSON.stringify([c.image, c.command, c.args]);
  // Either kind of sidecar (their args differ): a pod injected before the cluster gained native sidecars.
  return [settings, { ...settings, nativeSidecars: !settings.nativeSidecars }].some((variant) =>
    [initContainer(variant, captureArgs), proxyContainer(variant, mode, extraArgs)].every((w) => {
      const found = present.filter((c) => c.name === w.name);
      return found.length === 1 && essentials(found[0]!) === essentials(w);
    }),
  );
}

export function decideInjection(
  pod: Record<string, unknown>,
  settings: InjectionSettings,
): InjectionDecision {
  const metadata = isObject(pod.metadata) ? pod.metadata : {};
  const spec = isObject(pod.spec) ? pod.spec : {};
  const annotations = stringAnnotations(metadata);
  const optOut = annotations[INJECT_ANNOTATION]?.trim().toLowerCase();
  if (optOut === 'disabled' || optOut === 'false') return { action: 'skip', reason: 'opted-out' };
  if (spec.hostNetwork === true) return { action: 'skip', reason: 'host-network' };
  const names = [...containerNames(spec, 'initContainers'), ...containerNames(spec, 'containers')];
  const ours = [PROXY_CONTAINER, INIT_CONTAINER].filter((name) => names.includes(name));
  if (ours.length > 0) {
    // Ours only with our marker and both containers exactly as we inject them (a re-invocation, or a pod
    // copied from an injected one); a name or the marker alone is someone else's doing, which must not
    // pass for a sidecar (the model counts marked pods with both containers as meshed).
    if (
      annotations[STATUS_ANNOTATION] === INJECTED &&
      ours.length === 2 &&
      isOwnInjection(spec, settings, annotations)
    ) {
      return { action: 'skip', reason: 'already-injected' };
    }
    return {
      action: 'deny',
      code: 'reserved-name',
      message: `container name${ours.length > 1 ? 's' : ''} ${ours.join(', ')} ${ours.length > 1 ? 'are' : 'is'} reserved for the Sluice sidecar; rename the container or set ${INJECT_ANNOTATION}: disabled`,
    };
  }
  const capture = captureSettings(annotations);
  if (typeof capture.args === 'string')
    return { action: 'deny', code: 'bad-annotation', message: capture.args };
  const args = capture.args;
  const mode = mtlsMode(annotations, settings.mtlsMode);
  if (typeof mode !== 'string') return { action: 'deny', code: 'bad-annotation', message: mode.error };
  const warnings: string[] = [];
  if (mode === 'STRICT' && 'excludedInbound' in capture && capture.excludedInbound.length > 0) {
    if (coversEveryInboundPort(capture.excludedInbound)) {
      return {
        action: 'deny',
        code: 'strict-without-capture',
        message: `annotation ${EXCLUDE_INBOUND_ANNOTATION} excludes every inbound port, so ${MTLS_MODE_ANNOTATION} STRICT would protect nothing; exclude fewer ports or use PERMISSIVE`,
      };
    }
    warnings.push(
      `${EXCLUDE_INBOUND_ANNOTATION}: inbound ports ${capture.excludedInbound.join(',')} bypass the proxy and are not protected by STRICT mTLS`,
    );
  }
  const escapes = captureEscapes(spec);
  if (escapes.length > 0) {
    if (annotations[ALLOW_CAPTURE_ESCAPE_ANNOTATION]?.trim().toLowerCase() !== 'true') {
      return {
        action: 'deny',
        code: 'capture-escape',
        message: `${escapes.join('; ')}: such a container can bypass the sidecar's capture; change it, set ${INJECT_ANNOTATION}: disabled, or accept the risk with ${ALLOW_CAPTURE_ESCAPE_ANNOTATION}: "true"`,
      };
    }
    warnings.push(
      ...escapes.map(
        (e) => `${e}: it can bypass the sidecar (allowed by ${ALLOW_CAPTURE_ESCAPE_ANNOTATION})`,
      ),
    );
  }
  const extra = proxyArgs(annotations);
  if (!Array.isArray(extra)) return { action: 'deny', code: 'bad-annotation', message: extra.error };
  const resources = proxyResourcesFor(settings.proxyResources, annotations);
  if ('error' in resources) return { action: 'deny', code: 'bad-annotation', message: resources.error };

  const proxy = proxyContainer(settings, mode, extra, resources);
  const init = initContainer(settings, args);
  const patch: JsonPatchOp[] = [];
  if (!isObject(metadata.annotations)) patch.push({ op: 'add', path: '/metadata/annotations', value: {} });
  patch.push({
    op: 'add',
    path: `/metadata/annotations/${pointerSegment(STATUS_ANNOTATION)}`,
    value: INJECTED,
  });
  // Prometheus finds the sidecar's /metrics on the admin port (never captured). A pod that already says how
  // to scrape it (its app's own metrics) keeps its annotations.
  if (annotations[SCRAPE_ANNOTATIONS.scrape] === undefined) {
    for (const [key, value] of Object.entries(scrapeAnnotations(PORTS.admin)))
      patch.push({ op: 'add', path: `/metadata/annotations/${pointerSegment(key)}`, value });
  }
  // Native: capture first, then the proxy, then the pod's own init containers (which are then meshed).
  patch.push(
    ...addToArray(
      '/spec/initContainers',
      spec.initContainers,
      settings.nativeSidecars ? [init, proxy] : [init],
    ),
  );
  if (!settings.nativeSidecars) patch.push(...addToArray('/spec/containers', spec.containers, [proxy]));
  patch.push(...addToArray('/spec/volumes', spec.volumes, VOLUMES, true));
  return { action: 'inject', patch, warnings };
}
