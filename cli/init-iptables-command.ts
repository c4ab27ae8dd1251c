/** `sluice init-iptables`: the init container that turns on transparent capture in a pod (see init-iptables.ts). */
import { networkInterfaces } from 'node:os';
import {
  defaultCaptureConfig,
  parseInitIptablesArgs,
  type IpFamily,
  type Ipv6Mode,
} from '../protocol/capture-config.ts';
import {
  applyCapture,
  CaptureError,
  familyInput,
  hasIpv6,
  hasRoutableIpv6,
  type FamilyRules,
} from '../sidecar/init-iptables.ts';
import { jsonLogger } from '../lib/json-log.ts';

const d = defaultCaptureConfig;

const usage = `usage: sluice init-iptables [OPTIONS]

Programs the pod's nat table (IPv4 and, when the pod has IPv6, IPv6) so that TCP traffic goes through the
sidecar. A pod whose only IPv6 address is link-local gets an ip6tables filter guard instead, which drops
inbound IPv6 except loopback and established connections. Safe to run more than once. Needs root or
CAP_NET_ADMIN in the pod's network namespace.

  --inbound-port PORT            where inbound connections are redirected (default ${d.inboundPort})
  --outbound-port PORT           where outbound connections are redirected (default ${d.outboundPort})
  --admin-port PORT              proxy admin/health port, never redirected (default ${d.adminPort})
  --proxy-uid UID                traffic of this uid is not captured (default ${d.proxyUid})
  --proxy-gid GID                traffic of this gid is not captured either (default: none)
  --exclude-inbound-ports LIST   ports or ranges (8080,9000-9100) not redirected inbound
  --exclude-outbound-ports LIST  destination ports or ranges not redirected outbound
  --exclude-outbound-cidrs LIST  destination CIDRs not redirected outbound
  --include-outbound-cidrs LIST  only these destinations are redirected outbound ('*' = all, the default;
                                 '' = none)
  --ipv6 auto|on|off             IPv6 capture: on, off (ip6tables untouched) or auto: capture when the pod
                                 has a routable IPv6 address, else the guard when it has any IPv6 address
  --dry-run                      print the iptables-restore input instead of applying it
  --remove                       remove Sluice's chains and jumps instead
`;

export interface FamilyPlan {
  family: IpFamily;
  rules: FamilyRules;
}

/** What to program per family. `routable`: the pod has IPv6 beyond link-local; `anyIpv6`: it has IPv6 at all. */
export function familiesFor(mode: Ipv6Mode, routable: () => boolean, anyIpv6: () => boolean): FamilyPlan[] {
  const plan: FamilyPlan[] = [{ family: 4, rules: 'capture' }];
  if (mode === 'on' || (mode === 'auto' && routable())) plan.push({ family: 6, rules: 'capture' });
  else if (mode === 'auto' && anyIpv6()) plan.push({ family: 6, rules: 'ipv6-guard' });
  return plan;
}

export async function main(args: string[]): Promise<number> {
  const options = parseInitIptablesArgs(args);
  if (options.help) {
    process.stdout.write(usage);
    return 0;
  }
  const log = jsonLogger('init-iptables');
  const plan = familiesFor(
    options.ipv6,
    () => hasRoutableIpv6(networkInterfaces()),
    () => hasIpv6(networkInterfaces()),
  );

  if (options.dryRun) {
    for (const { family, rules } of plan) {
      const tool = family === 4 ? 'iptables-restore' : 'ip6tables-restore';
      const input = familyInput(options.config, family, rules, undefined, options.remove);
      process.stdout.write(`# ${tool} --noflush\n${input}`);
    }
    return 0;
  }

  try {
    for (const { family, rules } of plan) {
      await applyCapture(options.config, family, { remove: options.remove, rules });
    }
  } catch (err) {
    if (!(err instanceof CaptureError)) throw err;
    log.error(err.message);
    return 1;
  }
  const c = options.config;
  const ipFamilies = plan.filter((p) => p.rules === 'capture').map((p) => `IPv${p.family}`);
  const ipv6Guard = plan.some((p) => p.rules === 'ipv6-guard');
  if (options.remove) log.info('removed capture rules', { ipFamilies, ipv6Guard });
  else {
    log.info('capturing TCP', {
      ipFamilies,
      ipv6Guard,
      inboundPort: c.inboundPort,
      outboundPort: c.outboundPort,
      proxyUid: c.proxyUid,
      proxyGid: c.proxyGid,
    });
  }
  return 0;
}
