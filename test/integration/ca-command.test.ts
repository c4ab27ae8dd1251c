import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { UsageError } from '../../lib/usage-error.ts';
import { main } from '../../cli/ca-command.ts';
import { loadIdentityDir } from '../../pki/identity-dir.ts';
import { buildCaSecret, loadCaSecret } from '../../controller/ca-root-secret.ts';

/** Runs `run` with what it writes to stdout kept out of the test report; resolves with it and that text. */
async function capturingStdout<T>(run: () => Promise<T>): Promise<{ value: T; out: string }> {
  const write = process.stdout.write.bind(process.stdout);
  let out = '';
  process.stdout.write = (chunk: string) => {
    out += chunk;
    return true;
  };
  try {
    return { value: await run(), out };
  } finally {
    process.stdout.write = write;
  }
}

/** Runs `sluice ca ...` in this process. */
async function ca(...args: string[]): Promise<{ code: number; out: string }> {
  const { value: code, out } = await capturingStdout(() => main(args));
  return { code, out };
}

/** `ca issue` arguments for service account shop/web. */
function issueWeb(caDir: string, out: string): string[] {
  return ['issue', '--ca', caDir, '--namespace', 'shop', '--service-account', 'web', '--out', out];
}

describe('pki: sluice ca', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-ca-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('init writes ca.pem and ca-key.pem (0600), and refuses to overwrite without --force', async () => {
    const caDir = join(dir, 'ca');
    const { code, out } = await ca('init', '--out', caDir, '--trust-domain', 'mesh.example', '--days', '30');
    assert.equal(code, 0);
    assert.match(out, /trust domain mesh\.example, 30 days/);
    assert.equal((await stat(join(caDir, 'ca-key.pem'))).mode & 0o777, 0o600);
    const cert = new X509Certificate(await readFile(join(caDir, 'ca.pem')));
    assert.equal(cert.ca, true);
    assert.equal(cert.subjectAltName, 'URI:spiffe://mesh.example');
    await assert.rejects(ca('init', '--out', caDir), /already holds a CA/);
    assert.equal((await ca('init', '--out', caDir, '--force')).code, 0);
  });

  it('issue writes an identity directory for the workload', async () => {
    const caDir = join(dir, 'ca');
    const out = join(dir, 'web');
    await ca('init', '--out', caDir);
    const result = await ca(...issueWeb(caDir, out), '--hours', '2', '--dns-name', 'web.shop.svc');
    assert.equal(result.code, 0);
    const identity = await loadIdentityDir(out);
    assert.equal(identity.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web');
    assert.ok(identity.notAfter.getTime() - Date.now() <= 2 * 3600_000);
    assert.equal(identity.bundlePem, await readFile(join(caDir, 'ca.pem'), 'utf8'));
    assert.equal((await stat(join(out, 'key.pem'))).mode & 0o777, 0o600);
    assert.equal(
      new X509Certificate(identity.certPem).subjectAltName,
      'URI:spiffe://cluster.local/ns/shop/sa/web, DNS:web.shop.svc',
    );
  });

  it('turns bad arguments and files into one-line usage errors', async () => {
    const caDir = join(dir, 'ca');
    await ca('init', '--out', caDir);
    const issue = issueWeb(caDir, join(dir, 'x'));
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown subcommand 'frobnicate'/],
      [['init'], /--out is required/],
      [['init', '--out', dir, '--bogus'], /ca init: Unknown option '--bogus'/],
      [['init', '--out', join(dir, 'a'), '--days', 'soon'], /--days must be a positive number, got 'soon'/],
      [['init', '--out', join(dir, 'b'), '--days', '0'], /--days must be a positive number/],
      [['init', '--out', join(dir, 'c'), '--trust-domain', 'Bad Domain'], /trust domain "Bad Domain"/],
      [['issue', '--ca', caDir], /--namespace is required/],
      [
        [...issue.slice(0, 2), join(dir, 'missing'), ...issue.slice(3)],
        /cannot read .*missing\/ca\.pem: no such file/,
      ],
      [[...issue, '--namespace', 'Bad_NS'], /namespace "Bad_NS" is not a valid Kubernetes namespace/],
      [
        [...issue, '--trust-domain', 'other.td'],
        /CA certificate is for trust domain 'cluster.local', not 'other.td'/,
      ],
      [
        [...issue, '--hours', '-1'],
        /ca issue: Option '--hours' argument is ambiguous|--hours must be a positive number/,
      ],
      [[...issue, '--hours', '100000'], /certificate validity \(hours\) must be/],
      [[...issue, '--dns-name', 'under_score'], /invalid DNS name/],
      [['issue', 'positional'], /Unexpected argument 'positional'/],
    ];
    for (const [args, message] of cases) {
      await assert.rejects(ca(...args), (err: Error) => {
        assert.ok(err instanceof UsageError, `${args.join(' ')}: ${err.stack ?? err.message}`);
        assert.match(err.message, message, args.join(' '));
        assert.doesNotMatch(err.message, /\n/);
        return true;
      });
    }
    await writeFile(join(caDir, 'ca-key.pem'), 'garbage');
    await assert.rejects(ca(...issue), /ca issue: CA key: no PEM data found/);
  });

  it('runs from the sluice CLI with exit code 2 and one line on bad input', async () => {
    const run = promisify(execFile);
    const node = process.execPath;
    const ok = await run(node, ['bin/sluice.js', 'ca', 'init', '--out', join(dir, 'ca')]);
    assert.match(ok.stdout, /wrote .*ca\.pem/);
    await assert.rejects(
      run(node, ['bin/sluice.js', 'ca', 'issue', '--ca', join(dir, 'nope')]),
      (
        err: Error & {
          code: number;
          stderr: string;
        },
      ) => {
        assert.equal(err.code, 2);
        assert.equal(err.stderr, 'sluice: ca issue: --namespace is required\n');
        return true;
      },
    );
  });
});

describe('pki: sluice ca rotate (the Secret sluice-ca, stdin to stdout)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-ca-rotate-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** `sluice ca rotate ...` with the Secret on standard input; resolves with the Secret it printed. */
  async function rotate(secret: unknown, ...args: string[]): Promise<Record<string, unknown>> {
    const { value: code, out } = await capturingStdout(() =>
      main(['rotate', ...args], () => Promise.resolve(JSON.stringify(secret))),
    );
    assert.equal(code, 0);
    return JSON.parse(out) as Record<string, unknown>;
  }

  const roots = async (secret: unknown): Promise<string[]> => {
    const issuer = await loadCaSecret(secret, { trustDomain: 'cluster.local' });
    return [issuer.trustBundlePem, issuer.ca.certPem];
  };

  it('introduce, sign, finish: each output loads as the mesh CA; finish waits for old certificates to expire', async () => {
    await ca('init', '--out', join(dir, 'old'));
    await ca('init', '--out', join(dir, 'new'));
    const oldRoot = await readFile(join(dir, 'old', 'ca.pem'), 'utf8');
    const newRoot = await readFile(join(dir, 'new', 'ca.pem'), 'utf8');
    const start = {
      ...buildCaSecret({
        namespace: 'sluice-system',
        certPem: oldRoot,
        keyPem: await readFile(join(dir, 'old', 'ca-key.pem'), 'utf8'),
      }),
      metadata: { name: 'sluice-ca', namespace: 'sluice-system', resourceVersion: '7', managedFields: [{}] },
    };

    await assert.rejects(rotate(start, 'sign', '--new-ca', join(dir, 'new')), /run 'introduce' first/);
    const introduced = await rotate(start, 'introduce', '--new-ca', join(dir, 'new'));
    const [bundle1, signer1] = await roots(introduced);
    assert.equal(bundle1, oldRoot + newRoot);
    assert.equal(signer1, oldRoot);
    assert.equal(
      (introduced.metadata as Record<string, unknown>).resourceVersion,
      '7',
      'apply conflicts if it changed',
    );
    assert.equal((introduced.metadata as Record<string, unknown>).managedFields, undefined);

    const signed = await rotate(introduced, 'sign', '--new-ca', join(dir, 'new'));
    const [bundle2, signer2] = await roots(signed);
    assert.equal(bundle2, oldRoot + newRoot);
    assert.equal(signer2, newRoot);

    await assert.rejects(rotate(signed, 'finish'), /may be valid until .*; finish after that/);
    const finished = await rotate(signed, 'finish', '--force');
    assert.deepEqual(await roots(finished), [newRoot, newRoot]);
    await assert.rejects(rotate(finished, 'finish', '--force'), /run 'sign' first/);
  });
});
