/**
 * What an idle sidecar's RSS is made of (npm run bench:idle-smaps; loopback only, no netns, no lock; root, for
 * /proc/PID/pagemap). ADR 0016 (tenth session) has its figures.
 *
 * Starts, per round and in alternating order, each target under each setting, lets it settle idle, reads
 * /proc/PID/smaps and which of the node binary's symbols its resident pages hold (bench/binary-pages.ts),
 * then the preload bench/idle-probe.cjs reports V8's heap spaces and glibc's malloc totals; prints medians in
 * MB. Targets: `empty` (a script that only waits), `builtins` (requires node:http, https, http2, tls), `graph`
 * (imports the sidecar's module graph, dist/cli/proxy-command.js), `sidecar` (`dist/cli/main.js proxy` with
 * standalone manifests on loopback ports, as bench:compare runs it, before any request), `import:a+b` (the
 * builtins, then modules a and b: package names or paths under dist/ without .js).
 *
 *   --targets empty,builtins,graph,sidecar   --rounds 3   --settle-ms 4000
 *   --settings 'now=--max-semi-space-size=4 SLUICE_IDLE_MEMORY_RELEASE=off;arena2=--max-semi-space-size=4 MALLOC_ARENA_MAX=2'
 *     (label=words; a word NAME=VALUE with an upper-case name is environment, any other a node flag; the
 *     start-up release comes 15 s after start, SLUICE_IDLE_MEMORY_CHECK_MS=1000 brings it within the settle time)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { createCa, issueWorkloadCert, loadCa } from '../pki/ca.ts';
import { generateKeyPair, privateKeyToPem } from '../pki/keys.ts';
import { writeIdentityDir } from '../pki/identity-dir.ts';
import { podObject, serviceWithEndpoints } from '../test/support/mesh-manifests.ts';
import { freePort } from '../test/support/free-port.ts';
import { waitFor } from '../test/support/wait-for.ts';
import { percentile } from './stats.ts';
import { binaryPages } from './binary-pages.ts';

const { values } = parseArgs({
  options: {
    targets: { type: 'string', default: 'empty,builtins,graph,sidecar' },
    settings: { type: 'string', default: 'default=--max-semi-space-size=4' },
    rounds: { type: 'string', default: '3' },
    'settle-ms': { type: 'string', default: '4000' },
  },
});
const ROOT = new URL('..', import.meta.url).pathname;
const PROBE = join(ROOT, 'bench/idle-probe.cjs');
const NODE_BINARY = realpathSync(process.execPath);
const KEEP_ALIVE = 'setInterval(() => {}, 1 << 30)';

interface Setting {
  label: string;
  flags: string[];
  env: Record<string, string>;
}
const settings: Setting[] = values.settings.split(';').map((part) => {
  const [label, words = ''] = part.split(/=(.*)/s) as [string, string?];
  const setting: Setting = { label: label.trim(), flags: [], env: {} };
  for (const word of words.split(/\s+/).filter(Boolean)) {
    const env = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(word);
    if (env) setting.env[env[1]!] = env[2]!;
    else setting.flags.push(word);
  }
  return setting;
});
const targets = values.targets.split(',');
const rounds = Number(values.rounds);
const settleMs = Number(values['settle-ms']);

const work = mkdtempSync(join(tmpdir(), 'idle-smaps-'));
const manifests = join(work, 'manifests');
const identity = join(work, 'identity');
mkdirSync(manifests);
{
  const ca = await loadCa(await createCa({ trustDomain: 'cluster.local' }));
  const keys = await generateKeyPair();
  await writeIdentityDir(identity, {
    certPem: await issueWorkloadCert({
      ca,
      spiffeId: 'spiffe://cluster.local/ns/bench/sa/client',
      publicKey: keys.publicKey,
    }),
    keyPem: await privateKeyToPem(keys.privateKey),
    bundlePem: ca.certPem,
  });
  const pod = { name: 'server', namespace: 'bench', ip: '10.0.0.2', serviceAccount: 'server', meshed: true };
  const objects = [
    podObject(pod),
    ...serviceWithEndpoints('bench', 'app', '10.96.0.10', [[80, 9080, 'http']], [pod]),
  ];
  writeFileSync(join(manifests, 'mesh.yaml'), objects.map((o) => stringify(o)).join('---\n'));
}

async function targetArgs(target: string): Promise<string[]> {
  switch (target) {
    case 'empty':
      return ['-e', KEEP_ALIVE];
    case 'builtins':
      return ['-e', `for (const m of ['http', 'https', 'http2', 'tls']) require('node:' + m); ${KEEP_ALIVE}`];
    case 'graph':
      return ['--input-type=module', '-e', `await import('${ROOT}dist/cli/proxy-command.js'); ${KEEP_ALIVE}`];
    case 'sidecar': {
      const [outbound, inbound, admin] = [await freePort(), await freePort(), await freePort()];
      return [
        `${ROOT}dist/cli/main.js`,
        'proxy',
        ...['--manifests', manifests, '--identity', identity, '--namespace', 'bench', '--bind', '127.0.0.1'],
        ...['--outbound-port', `${outbound}`, '--inbound-port', `${inbound}`, '--admin-port', `${admin}`],
      ];
    }
    default: {
      // `import:a+b`: the builtins above, then modules a and b (package names or paths under dist/)
      const modules = /^import:(.+)$/.exec(target)?.[1]?.split('+');
      if (!modules) throw new Error(`unknown target ${target}`);
      const specs = modules.map((m) => (m.includes('/') ? `${ROOT}dist/${m}.js` : m));
      return [
        '--input-type=module',
        '-e',
        `import { createRequire } from 'node:module'; const require = createRequire('${ROOT}');
         for (const m of ['http', 'https', 'http2', 'tls']) require('node:' + m);
         for (const s of ${JSON.stringify(specs)}) await import(s); ${KEEP_ALIVE}`,
      ];
    }
  }
}

interface Mapping {
  start: bigint;
  sizeKb: number;
  perms: string;
  name: string;
  rssKb: number;
  anonKb: number;
}

function mappings(pid: number): Mapping[] {
  const list: Mapping[] = [];
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      const start = BigInt(`0x${header[1]!}`);
      const sizeKb = Number((BigInt(`0x${header[2]!}`) - start) / 1024n);
      list.push({ start, sizeKb, perms: header[3]!, name: header[4]!, rssKb: 0, anonKb: 0 });
      continue;
    }
    const field = /^(Rss|Anonymous):\s+(\d+) kB/.exec(line);
    if (field) list.at(-1)![field[1] === 'Rss' ? 'rssKb' : 'anonKb'] = Number(field[2]);
  }
  return list;
}

/** kB of each kind in /proc/PID/smaps: the node binary's by permissions, libraries, anonymous by origin. */
function smaps(pid: number): Record<string, number> {
  const kinds: Record<string, number> = {};
  const add = (kind: string, kb: number): void => void (kinds[kind] = (kinds[kind] ?? 0) + kb);
  const list = mappings(pid);
  list.forEach((m, i) => {
    add('rss', m.rssKb);
    if (m.name === NODE_BINARY) return add(`node ${m.perms}`, m.rssKb);
    if (m.name.startsWith('/')) return add('libraries', m.rssKb);
    if (m.name === '[heap]') return add('malloc main', m.anonKb);
    if (m.name === '[stack]') return add('main stack', m.anonKb);
    // glibc's per-thread arenas reserve 64 MiB aligned to 64 MiB: a rw-p part and the ---p rest.
    const next = list[i + 1];
    const arena =
      m.name === '' &&
      m.start % (64n << 20n) === 0n &&
      m.perms === 'rw-p' &&
      next?.perms === '---p' &&
      m.sizeKb + next.sizeKb === 65536;
    add(arena ? 'malloc thread' : 'anon other', m.anonKb);
  });
  return kinds;
}

interface ProbeReport {
  spaces: Record<string, { physical: number; used: number }>;
  usage: NodeJS.MemoryUsage;
  malloc: { inUse?: number; free?: number; error?: string };
}

async function measure(target: string, setting: Setting): Promise<Record<string, number>> {
  const out = join(work, 'probe.json');
  rmSync(out, { force: true });
  const child: ChildProcess = spawn(
    process.execPath,
    [...setting.flags, '--require', PROBE, ...(await targetArgs(target))],
    {
      env: { PATH: process.env.PATH, ...setting.env, IDLE_PROBE_OUT: out },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  try {
    if (target === 'sidecar')
      await waitFor('the sidecar to listen', () => output.includes('"listening"'), { timeoutMs: 30_000 });
    await sleep(settleMs);
    const kinds = smaps(child.pid!);
    for (const [group, kb] of Object.entries(binaryPages(child.pid!, NODE_BINARY)))
      kinds[`node: ${group}`] = kb;
    // Printed in MB like the rest: the thread count.
    kinds.threads =
      1024 * Number(/Threads:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid!}/status`, 'utf8'))![1]);
    child.kill('SIGUSR2');
    const report = await waitFor('the probe report', () => {
      try {
        return JSON.parse(readFileSync(out, 'utf8')) as ProbeReport;
      } catch {
        return undefined; // not written yet, or half
      }
    });
    const kb = (bytes: number | undefined): number => (bytes ?? NaN) / 1024;
    const spaces = Object.entries(report.spaces);
    kinds['v8 heap'] = kb(spaces.reduce((sum, [, s]) => sum + s.physical, 0));
    kinds['v8 heap used'] = kb(spaces.reduce((sum, [, s]) => sum + s.used, 0));
    for (const space of ['new_space', 'old_space', 'code_space', 'large_object_space', 'trusted_space'])
      kinds[`  ${space}`] = kb(report.spaces[space]?.physical);
    kinds.external = kb(report.usage.external);
    kinds['malloc in use'] = kb(report.malloc.inUse);
    kinds['malloc free'] = kb(report.malloc.free);
    return kinds;
  } finally {
    child.kill('SIGKILL');
  }
}

const results = new Map<string, Record<string, number>[]>();
for (let round = 0; round < rounds; round++) {
  const order = targets.flatMap((t) => settings.map((s) => [t, s] as const));
  if (round % 2 === 1) order.reverse();
  for (const [target, setting] of order) {
    const key = `${target} ${setting.label}`;
    const kinds = await measure(target, setting);
    results.set(key, [...(results.get(key) ?? []), kinds]);
    process.stderr.write(`round ${round + 1}: ${key} ${(kinds.rss! / 1024).toFixed(1)} MB\n`);
  }
}
rmSync(work, { recursive: true, force: true });

const keys = [...results.keys()];
const median = (xs: number[]): number =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
const medianOf = (key: string, row: string): number =>
  median(results.get(key)!.map((r) => r[row] ?? 0)) / 1024;
// RSS first, then the node binary's pages by part (largest first), then the rest; rows of zeros left out.
const all = [...new Set(keys.flatMap((k) => results.get(k)!.flatMap((r) => Object.keys(r))))].filter((row) =>
  keys.some((k) => medianOf(k, row) >= 0.05),
);
const binary = all
  .filter((r) => r.startsWith('node: '))
  .sort((a, b) => medianOf(keys.at(-1)!, b) - medianOf(keys.at(-1)!, a));
const rows = ['rss', ...all.filter((r) => r !== 'rss' && !r.startsWith('node: ')), ...binary];
console.log(
  `idle RSS by kind, MB, median of ${rounds} (node ${process.version}, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})`,
);
console.log(['kind'.padEnd(32), ...keys.map((k) => k.padStart(Math.max(12, k.length)))].join(' '));
for (const row of rows) {
  console.log(
    [row.padEnd(32), ...keys.map((k) => medianOf(k, row).toFixed(1).padStart(Math.max(12, k.length)))].join(
      ' ',
    ),
  );
}
