import { parseArgs } from 'node:util';
import { parseFlags, UsageError } from '../cli/usage-error.ts';
import { loadIdentityDir } from '../pki/identity-dir.ts';
import { parseWorkloadSpiffeId } from '../pki/spiffe-id.ts';
import { StandaloneConfigSource } from './config-source.ts';
import { SidecarProxy } from './proxy.ts';

const USAGE = `usage: sluice proxy --manifests DIR --identity DIR [options]
  --manifests DIR        standalone config: Kubernetes manifests (Services, EndpointSlices, Pods, routes)
  --identity DIR         cert.pem, key.pem, bundle.pem (see docs/identity-dir.md)
  --namespace NS         the pod's namespace (default: from the certificate's SPIFFE ID)
  --mode MODE            inbound mTLS: PERMISSIVE (default) or STRICT
  --outbound-port N      default 15001    --inbound-port N   default 15006
  --admin-port N         default 15021    --bind ADDR        default ::
  --app-address ADDR     where the app listens for inbound traffic, default 127.0.0.1
  --detect-timeout-ms N  protocol detection wait, default 5000
  --drain-seconds N      graceful drain on SIGTERM, default 5`;

function port(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new UsageError(`--${name} must be a port number, got '${value}'`);
  return n;
}

export async function main(args: string[]): Promise<number | undefined> {
  const { values } = parseFlags(() =>
    parseArgs({
      args,
      options: {
        manifests: { type: 'string' },
        identity: { type: 'string' },
        namespace: { type: 'string' },
        mode: { type: 'string' },
        'outbound-port': { type: 'string' },
        'inbound-port': { type: 'string' },
        'admin-port': { type: 'string' },
        bind: { type: 'string' },
        'app-address': { type: 'string' },
        'detect-timeout-ms': { type: 'string' },
        'drain-seconds': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!values.manifests)
    throw new UsageError('proxy needs --manifests DIR (the controller source comes later)');
  if (!values.identity) throw new UsageError('proxy needs --identity DIR');
  const mode = (values.mode ?? 'PERMISSIVE').toUpperCase();
  if (mode !== 'STRICT' && mode !== 'PERMISSIVE')
    throw new UsageError(`--mode must be STRICT or PERMISSIVE, got '${values.mode}'`);
  let identity;
  try {
    identity = await loadIdentityDir(values.identity);
  } catch (err) {
    throw new UsageError(`--identity ${values.identity}: ${(err as Error).message}`);
  }
  const workload = parseWorkloadSpiffeId(identity.spiffeId);
  const namespace = values.namespace ?? workload.namespace;
  const log = (message: string): void =>
    void process.stderr.write(`${new Date().toISOString()} sluice-proxy ${message}\n`);
  const proxy = new SidecarProxy({
    source: new StandaloneConfigSource({
      dir: values.manifests,
      namespace,
      trustDomain: identity.trustDomain,
    }),
    identityDir: values.identity,
    mode,
    outboundPort: port(values['outbound-port'], 15001, 'outbound-port'),
    inboundPort: port(values['inbound-port'], 15006, 'inbound-port'),
    adminPort: port(values['admin-port'], 15021, 'admin-port'),
    bind: values.bind ?? '::',
    appAddress: values['app-address'] ?? '127.0.0.1',
    detectTimeoutMs: Number(values['detect-timeout-ms'] ?? 5000),
    drainMs: Number(values['drain-seconds'] ?? 5) * 1000,
    log,
  });
  await proxy.start();
  const shutdown = (signal: string): void => {
    log(`${signal}: draining`);
    void proxy.drain().then(() => {
      log('drained, exiting');
      process.exit(0);
    });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  return undefined;
}
