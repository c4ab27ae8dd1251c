import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../lib/usage-error.ts';
import { createCa, DEFAULT_CA_DAYS, DEFAULT_WORKLOAD_HOURS, issueWorkloadCert, loadCa } from '../pki/ca.ts';
import { PkiError } from '../pki/errors.ts';
import { ensureDir, writeFileAtomic, writeIdentityDir } from '../pki/identity-dir.ts';
import { generateKeyPair, privateKeyToPem } from '../pki/keys.ts';
import { workloadSpiffeId } from '../pki/spiffe-id.ts';
import { rotateCaSecret } from '../controller/ca-rotation.ts';

export const CA_CERT_FILE = 'ca.pem';
export const CA_KEY_FILE = 'ca-key.pem';
const DEFAULT_TRUST_DOMAIN = 'cluster.local';

const USAGE = `usage:
  sluice ca init --out DIR [--trust-domain TD] [--days N] [--force]
      create a self-signed mesh CA: DIR/${CA_CERT_FILE} and DIR/${CA_KEY_FILE} (mode 0600)
      (trust domain default ${DEFAULT_TRUST_DOMAIN}, validity default ${DEFAULT_CA_DAYS} days)
  sluice ca issue --ca DIR --namespace NS --service-account SA --out DIR
                  [--hours N] [--trust-domain TD] [--dns-name NAME]...
      issue a workload certificate for spiffe://TD/ns/NS/sa/SA into identity directory DIR
      (cert.pem, key.pem, bundle.pem; validity default ${DEFAULT_WORKLOAD_HOURS} hours)
  sluice ca rotate introduce|sign --new-ca DIR      < secret.json > secret.json
  sluice ca rotate finish [--max-cert-hours N] [--force] < secret.json > secret.json
      the next step of a CA root rotation of the Secret sluice-ca (docs/operations.md):
        kubectl -n sluice-system get secret sluice-ca -o json \
          | sluice ca rotate introduce --new-ca new-ca | kubectl apply -f -
      introduce: the new root joins ca.crt; sign: the new CA signs (its root must be in ca.crt);
      finish: the old root leaves ca.crt, refused until N hours (default ${DEFAULT_WORKLOAD_HOURS}) after sign
`;

/** node:util parseArgs, its errors turned into usage errors. */
function parse<T extends ParseArgsConfig['options']>(args: string[], options: T, sub: string) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(`ca ${sub}: ${(err as Error).message.split('\n')[0] ?? 'bad arguments'}`);
  }
}

function required(values: Record<string, unknown>, name: string, sub: string): string {
  const value = values[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`ca ${sub}: --${name} is required`);
  return value;
}

function positiveNumber(value: string | undefined, name: string, sub: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!(n > 0)) throw new UsageError(`ca ${sub}: --${name} must be a positive number, got '${value}'`);
  return n;
}

async function readInput(path: string, sub: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      `ca ${sub}: cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : (code ?? 'error')}`,
    );
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Errors about the user's input (arguments, files) become one-line usage errors. */
async function asUsage<T>(sub: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof PkiError) throw new UsageError(`ca ${sub}: ${err.message}`);
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('E')) {
      throw new UsageError(`ca ${sub}: ${(err as Error).message}`);
    }
    throw err;
  }
}

async function init(args: string[]): Promise<number> {
  const values = parse(
    args,
    {
      out: { type: 'string' },
      'trust-domain': { type: 'string' },
      days: { type: 'string' },
      force: { type: 'boolean' },
    },
    'init',
  );
  const out = required(values, 'out', 'init');
  const trustDomain = values['trust-domain'] ?? DEFAULT_TRUST_DOMAIN;
  const days = positiveNumber(values.days, 'days', 'init', DEFAULT_CA_DAYS);
  const keyPath = join(out, CA_KEY_FILE);
  const certPath = join(out, CA_CERT_FILE);
  if (!values.force && ((await exists(keyPath)) || (await exists(certPath)))) {
    throw new UsageError(`ca init: ${out} already holds a CA (use --force to replace it)`);
  }
  return asUsage('init', async () => {
    const ca = await createCa({ trustDomain, validityDays: days });
    await ensureDir(out, 0o700);
    await writeFileAtomic(keyPath, ca.keyPem, 0o600);
    await writeFileAtomic(certPath, ca.certPem, 0o644);
    process.stdout.write(`wrote ${certPath} and ${keyPath} (trust domain ${trustDomain}, ${days} days)\n`);
    return 0;
  });
}

async function issue(args: string[]): Promise<number> {
  const values = parse(
    args,
    {
      ca: { type: 'string' },
      namespace: { type: 'string' },
      'service-account': { type: 'string' },
      out: { type: 'string' },
      hours: { type: 'string' },
      'trust-domain': { type: 'string' },
      'dns-name': { type: 'string', multiple: true },
    },
    'issue',
  );
  const caDir = required(values, 'ca', 'issue');
  const namespace = required(values, 'namespace', 'issue');
  const serviceAccount = required(values, 'service-account', 'issue');
  const out = required(values, 'out', 'issue');
  const hours = positiveNumber(values.hours, 'hours', 'issue', DEFAULT_WORKLOAD_HOURS);
  const certPem = await readInput(join(caDir, CA_CERT_FILE), 'issue');
  const keyPem = await readInput(join(caDir, CA_KEY_FILE), 'issue');
  return asUsage('issue', async () => {
    const trustDomainArg = values['trust-domain'];
    const ca = await loadCa({
      certPem,
      keyPem,
      ...(trustDomainArg === undefined ? {} : { trustDomain: trustDomainArg }),
    });
    const spiffeId = workloadSpiffeId({ trustDomain: ca.trustDomain, namespace, serviceAccount });
    const keys = await generateKeyPair();
    const leafPem = await issueWorkloadCert({
      ca,
      spiffeId,
      publicKey: keys.publicKey,
      validityHours: hours,
      dnsNames: values['dns-name'] ?? [],
    });
    await writeIdentityDir(out, {
      certPem: leafPem,
      keyPem: await privateKeyToPem(keys.privateKey),
      bundlePem: ca.certPem,
    });
    process.stdout.write(`wrote identity ${spiffeId} to ${out} (${hours} hours)\n`);
    return 0;
  });
}

/** `sluice ca init|issue ...` */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function rotate(args: string[], input: () => Promise<string>): Promise<number> {
  const [step, ...rest] = args;
  if (step !== 'introduce' && step !== 'sign' && step !== 'finish') {
    throw new UsageError(`ca rotate: expected introduce, sign or finish, got '${step ?? ''}'`);
  }
  const values = parse(
    rest,
    { 'new-ca': { type: 'string' }, 'max-cert-hours': { type: 'string' }, force: { type: 'boolean' } },
    'rotate',
  );
  const newCaDir = step === 'finish' ? undefined : required(values, 'new-ca', 'rotate');
  const newCa = newCaDir && {
    certPem: await readInput(join(newCaDir, CA_CERT_FILE), 'rotate'),
    keyPem: await readInput(join(newCaDir, CA_KEY_FILE), 'rotate'),
  };
  const hours = positiveNumber(values['max-cert-hours'], 'max-cert-hours', 'rotate', DEFAULT_WORKLOAD_HOURS);
  let secret: unknown;
  try {
    secret = JSON.parse(await input());
  } catch {
    throw new UsageError('ca rotate: standard input is not JSON (kubectl get secret sluice-ca -o json)');
  }
  return asUsage('rotate', async () => {
    if (newCa) await loadCa(newCa); // the key matches, the certificate is a usable CA
    const next = rotateCaSecret(step, {
      secret,
      ...(newCa ? { newCa } : {}),
      now: new Date(),
      maxCertHours: hours,
      force: values.force ?? false,
    });
    process.stdout.write(`${JSON.stringify(next, null, 2)}\n`);
    return 0;
  });
}

/** `input`: where `rotate` reads the Secret (standard input unless a test gives it). */
export async function main(args: string[], input: () => Promise<string> = readStdin): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'rotate':
      return rotate(rest, input);
    case 'init':
      return init(rest);
    case 'issue':
      return issue(rest);
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    case undefined:
      process.stderr.write(USAGE);
      return 2;
    default:
      throw new UsageError(`ca: unknown subcommand '${sub}' (expected init, issue or rotate)`);
  }
}
