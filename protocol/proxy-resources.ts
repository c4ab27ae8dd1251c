// The resources a Sluice proxy container asks for — the injected sidecar and a Gateway's proxy alike: a
// default set by the injector's and the controller's flags (ADR 0012), which one pod (sidecar) or one Gateway
// can override with an annotation. Pure: quantities are checked here so a bad value becomes a clear message
// (a denied pod, a Gateway not Programmed), never a pod the API server or the kubelet refuses later.

export const PROXY_CPU_REQUEST_ANNOTATION = 'sluice.dev/proxy-cpu-request';
export const PROXY_MEMORY_REQUEST_ANNOTATION = 'sluice.dev/proxy-memory-request';
/** Environment fallbacks of --proxy-cpu-request / --proxy-memory-request (injector and controller). */
export const PROXY_CPU_REQUEST_ENV = 'SLUICE_PROXY_CPU_REQUEST';
export const PROXY_MEMORY_REQUEST_ENV = 'SLUICE_PROXY_MEMORY_REQUEST';

export interface ProxyResources {
  /** Kubernetes CPU quantity, e.g. "50m" or "0.1". */
  readonly cpuRequest: string;
  /** Kubernetes memory quantity, e.g. "64Mi". */
  readonly memoryRequest: string;
}

/** What a production install asks for per proxy unless told otherwise. */
export const DEFAULT_PROXY_RESOURCES: ProxyResources = { cpuRequest: '50m', memoryRequest: '64Mi' };
/** The proxy's memory limit (fixed): a request above it would make every such pod invalid. */
export const PROXY_MEMORY_LIMIT = '256Mi';
const MEMORY_LIMIT_BYTES = 256 * 2 ** 20;
/** More than any proxy needs: a typo ("500" for "500m") rather than a wish. */
const MAX_CPU_MILLIS = 8000;

const CPU = /^(\d+(?:\.\d+)?|\.\d+)(m?)$/;
const MEMORY = /^(\d+(?:\.\d+)?|\.\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/;
const MEMORY_UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** A CPU quantity in millicores, or a message. Whole or decimal cores ("0.05", "1") or millicores ("50m"). */
export function parseCpuQuantity(text: string): number | { error: string } {
  const match = CPU.exec(text.trim());
  if (!match) return { error: `must be a CPU quantity such as 50m or 0.1, got '${text}'` };
  const millis = match[2] === 'm' ? Number(match[1]) : Math.round(Number(match[1]) * 1e6) / 1e3;
  if (!Number.isInteger(millis)) {
    return { error: `must be a whole number of millicores (at most 3 decimals of a core), got '${text}'` };
  }
  if (millis > MAX_CPU_MILLIS) return { error: `must be at most ${MAX_CPU_MILLIS}m, got '${text}'` };
  return millis;
}

/**
 * A memory quantity in bytes, or a message. Plain bytes or a k/M/G/T or Ki/Mi/Gi/Ti suffix; at most the
 * proxy's memory limit unless `max` says otherwise.
 */
export function parseMemoryQuantity(text: string, max = MEMORY_LIMIT_BYTES): number | { error: string } {
  const match = MEMORY.exec(text.trim());
  if (!match) return { error: `must be a memory quantity such as 64Mi or 100M, got '${text}'` };
  const bytes = Number(match[1]) * MEMORY_UNITS[match[2] ?? '']!;
  if (bytes > max) {
    return { error: `must not exceed the proxy's memory limit ${PROXY_MEMORY_LIMIT}, got '${text}'` };
  }
  return bytes;
}

/**
 * The resources of one proxy: `defaults`, overridden by the annotations (of a pod, or of a Gateway and its
 * spec.infrastructure), or the message of the first bad annotation.
 */
export function proxyResourcesFor(
  defaults: ProxyResources,
  annotations: Readonly<Record<string, string>>,
): ProxyResources | { error: string } {
  const cpuText = annotations[PROXY_CPU_REQUEST_ANNOTATION]?.trim();
  const memoryText = annotations[PROXY_MEMORY_REQUEST_ANNOTATION]?.trim();
  if (cpuText !== undefined) {
    const cpu = parseCpuQuantity(cpuText);
    if (typeof cpu !== 'number') return { error: `annotation ${PROXY_CPU_REQUEST_ANNOTATION}: ${cpu.error}` };
  }
  if (memoryText !== undefined) {
    const memory = parseMemoryQuantity(memoryText);
    if (typeof memory !== 'number') {
      return { error: `annotation ${PROXY_MEMORY_REQUEST_ANNOTATION}: ${memory.error}` };
    }
  }
  return {
    cpuRequest: cpuText ?? defaults.cpuRequest,
    memoryRequest: memoryText ?? defaults.memoryRequest,
  };
}

/** The container's `resources` field. */
export function containerResources(resources: ProxyResources): Record<string, unknown> {
  return {
    requests: { cpu: resources.cpuRequest, memory: resources.memoryRequest },
    limits: { memory: PROXY_MEMORY_LIMIT },
  };
}

/**
 * The default resources from flags (`--proxy-cpu-request`, `--proxy-memory-request`), else the environment,
 * else DEFAULT_PROXY_RESOURCES; or the message of a bad value.
 */
export function proxyResourcesFromFlags(
  flags: { readonly cpu?: string | undefined; readonly memory?: string | undefined },
  env: Readonly<Record<string, string | undefined>>,
): ProxyResources | { error: string } {
  const cpuRequest = flags.cpu ?? (env[PROXY_CPU_REQUEST_ENV] || DEFAULT_PROXY_RESOURCES.cpuRequest);
  const memoryRequest =
    flags.memory ?? (env[PROXY_MEMORY_REQUEST_ENV] || DEFAULT_PROXY_RESOURCES.memoryRequest);
  const cpu = parseCpuQuantity(cpuRequest);
  if (typeof cpu !== 'number') return { error: `--proxy-cpu-request ${cpu.error}` };
  const memory = parseMemoryQuantity(memoryRequest);
  if (typeof memory !== 'number') return { error: `--proxy-memory-request ${memory.error}` };
  return { cpuRequest: cpuRequest.trim(), memoryRequest: memoryRequest.trim() };
}
