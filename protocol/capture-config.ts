// The pod's capture settings: what `sluice init-iptables` is told on its command line, which the injector
// writes (and validates, with the same parser) and the init container reads (sidecar/init-iptables.ts).
import { isIPv4, isIPv6 } from 'node:net';
import { parseArgs } from 'node:util';
import { UsageError } from '../lib/usage-error.ts';

export type IpFamily = 4 | 6;

export interface CaptureConfig {
  inboundPort: number;
  outboundPort: number;
  /** The proxy's admin/health port: reachable from outside without being redirected. */
  adminPort: number;
  proxyUid: number;
  proxyGid: number | undefined;
  /** Port numbers or ranges in iptables syntax ("8080", "9000:9100"). */
  excludeInboundPorts: string[];
  excludeOutboundPorts: string[];
  excludeOutboundCidrs: string[];
  /** '*' captures every destination; otherwise only these CIDRs (an empty list captures no outbound traffic). */
  includeOutboundCidrs: '*' | string[];
}

export const defaultCaptureConfig: CaptureConfig = {
  inboundPort: 15006,
  outboundPort: 15001,
  adminPort: 15021,
  proxyUid: 1337,
  proxyGid: undefined,
  excludeInboundPorts: [],
  excludeOutboundPorts: [],
  excludeOutboundCidrs: [],
  includeOutboundCidrs: '*',
};

export type Ipv6Mode = 'auto' | 'on' | 'off';

/**
 * Pod annotation (and `sluice proxy --inbound-to-localhost`): hand inbound traffic to the app at 127.0.0.1
 * instead of at the pod IP, for apps that listen on loopback only. It makes every loopback-only port of the
 * pod reachable through the sidecar, so it is off by default (docs/security.md).
 */
export const INBOUND_TO_LOCALHOST_ANNOTATION = 'sluice.dev/inbound-to-localhost';

/** "true" / "false" (any case, surrounding blanks ignored); anything else is undefined. */
export function parseBooleanText(text: string): boolean | undefined {
  const value = text.trim().toLowerCase();
  return value === 'true' ? true : value === 'false' ? false : undefined;
}

export interface InitIptablesOptions {
  config: CaptureConfig;
  ipv6: Ipv6Mode;
  dryRun: boolean;
  remove: boolean;
  help: boolean;
}

const d = defaultCaptureConfig;

/** Validates "a.b.c.d", "a.b.c.d/n", "x::y" or "x::y/n"; returns it with an explicit prefix length. */
export function parseCidr(text: string): string | undefined {
  const [address = '', prefix, ...rest] = text.split('/');
  if (rest.length > 0) return undefined;
  const max = isIPv4(address) ? 32 : isIPv6(address) ? 128 : 0;
  if (max === 0) return undefined;
  if (prefix === undefined) return `${address}/${max}`;
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) return undefined;
  return `${address}/${Number(prefix)}`;
}

/** Validates a port ("8080") or a range ("9000-9100" or "9000:9100"); returns it in iptables syntax. */
export function parsePortSpec(text: string): string | undefined {
  const match = /^(\d{1,5})(?:[-:](\d{1,5}))?$/.exec(text);
  if (!match) return undefined;
  const low = Number(match[1]);
  const high = match[2] === undefined ? low : Number(match[2]);
  if (low < 1 || high > 65535 || high < low) return undefined;
  return low === high ? String(low) : `${low}:${high}`;
}

export function parseInitIptablesArgs(args: string[]): InitIptablesOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        'inbound-port': { type: 'string' },
        'outbound-port': { type: 'string' },
        'admin-port': { type: 'string' },
        'proxy-uid': { type: 'string' },
        'proxy-gid': { type: 'string' },
        'exclude-inbound-ports': { type: 'string' },
        'exclude-outbound-ports': { type: 'string' },
        'exclude-outbound-cidrs': { type: 'string' },
        'include-outbound-cidrs': { type: 'string' },
        ipv6: { type: 'string' },
        'dry-run': { type: 'boolean' },
        remove: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError(
      `init-iptables: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`,
    );
  }
  const v = parsed.values;
  const include = v['include-outbound-cidrs']?.trim();
  const config: CaptureConfig = {
    inboundPort: port(v['inbound-port'], d.inboundPort, '--inbound-port'),
    outboundPort: port(v['outbound-port'], d.outboundPort, '--outbound-port'),
    adminPort: port(v['admin-port'], d.adminPort, '--admin-port'),
    proxyUid: id(v['proxy-uid'], '--proxy-uid') ?? d.proxyUid,
    proxyGid: id(v['proxy-gid'], '--proxy-gid'),
    excludeInboundPorts: list(v['exclude-inbound-ports'], parsePortSpec, '--exclude-inbound-ports', 'port'),
    excludeOutboundPorts: list(
      v['exclude-outbound-ports'],
      parsePortSpec,
      '--exclude-outbound-ports',
      'port',
    ),
    excludeOutboundCidrs: list(v['exclude-outbound-cidrs'], parseCidr, '--exclude-outbound-cidrs', 'CIDR'),
    includeOutboundCidrs:
      include === undefined || include === '*'
        ? '*'
        : list(include, parseCidr, '--include-outbound-cidrs', 'CIDR'),
  };
  if (config.inboundPort === config.outboundPort) {
    throw new UsageError('init-iptables: --inbound-port and --outbound-port must differ');
  }
  const ipv6 = v.ipv6 ?? 'auto';
  if (ipv6 !== 'auto' && ipv6 !== 'on' && ipv6 !== 'off') {
    throw new UsageError(`init-iptables: --ipv6 must be auto, on or off, not '${ipv6}'`);
  }
  return { config, ipv6, dryRun: v['dry-run'] ?? false, remove: v.remove ?? false, help: v.help ?? false };
}

function port(text: string | undefined, fallback: number, flag: string): number {
  if (text === undefined) return fallback;
  const value = parsePortSpec(text.trim());
  if (value === undefined || value.includes(':')) {
    throw new UsageError(`init-iptables: ${flag} must be a port number (1-65535), not '${text}'`);
  }
  return Number(value);
}

function id(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (!/^\d{1,10}$/.test(trimmed) || Number(trimmed) > 0xfffffffe) {
    throw new UsageError(`init-iptables: ${flag} must be a numeric id, not '${text}'`);
  }
  return Number(trimmed);
}

function list(
  text: string | undefined,
  parse: (item: string) => string | undefined,
  flag: string,
  what: string,
): string[] {
  if (text === undefined) return [];
  const items = text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
  return items.map((item) => {
    const value = parse(item);
    if (value === undefined) throw new UsageError(`init-iptables: ${flag}: '${item}' is not a valid ${what}`);
    return value;
  });
}
