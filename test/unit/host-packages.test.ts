import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { HOST_REQUIREMENTS, PROVIDED_PROGRAMS, isPresent } from '../../cluster/host-packages.ts';
import { REPO_DIR } from '../../cluster/paths.ts';

/** Where the cluster tool, the demo, the CLI and the tests run host programs (test/e2e runs them in pods). */
const SCANNED = ['cluster', 'demo', 'scripts', 'sidecar', 'cli', 'test/support', 'test/integration', 'bench'];

const PATTERNS = [
  // run('ip', …), spawn('go', …), execFile('buildah', …), h.runIn(pod, 'ss', …)
  /\b(?:run|runIn|spawn|spawnSync|execFile|execFileSync)\(\s*(?:[\w.!]+,\s*)?'([a-z][\w.+-]*)'/g,
  // tables of programs: { save: 'iptables-save', restore: 'iptables-restore' }, ['x-save', 'x-restore']
  /\b(?:save|restore):\s*'([a-z][\w.+-]*)'/g,
  /\[\s*'([a-z][\w.+-]*-save)',\s*'([a-z][\w.+-]*-restore)'\s*\]/g,
  // const tool = family === 4 ? 'iptables-restore' : 'ip6tables-restore'
  /\btool = [^?\n]+\?\s*'([a-z][\w.+-]*)'\s*:\s*'([a-z][\w.+-]*)'/g,
];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory())
      return name === 'go' || name === 'node_modules' ? [] : sourceFiles(path);
    return /\.(ts|sh)$/.test(name) ? [path] : [];
  });
}

/** program → the files that run it. */
function programsRun(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const file of SCANNED.flatMap((dir) => sourceFiles(join(REPO_DIR, dir)))) {
    const text = readFileSync(file, 'utf8');
    for (const pattern of PATTERNS) {
      for (const match of text.matchAll(pattern)) {
        for (const program of match.slice(1)) {
          found.set(program, [...(found.get(program) ?? []), relative(REPO_DIR, file)]);
        }
      }
    }
  }
  return found;
}

describe('host packages: every program the project runs is installed by the project', () => {
  const found = programsRun();

  it('finds the programs of the known call sites (the scan itself works)', () => {
    for (const program of ['ip', 'iptables-restore', 'ip6tables-save', 'buildah', 'debootstrap', 'go']) {
      assert.ok(found.has(program), `the scan did not find ${program}`);
    }
  });

  it('each program run is a listed requirement or provided', () => {
    const listed = new Set(HOST_REQUIREMENTS.map((r) => r.what));
    const uncovered = [...found].filter(
      ([program]) => !listed.has(program) && !(program in PROVIDED_PROGRAMS),
    );
    assert.deepEqual(
      uncovered.map(([program, files]) => `${program} (run in ${[...new Set(files)].join(', ')})`),
      [],
      'add these to cluster/host-packages.ts with their Debian package',
    );
  });

  it('npm test installs the tests’ packages first, and the cluster tool installs its own', () => {
    const pkg = JSON.parse(readFileSync(join(REPO_DIR, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    assert.match(pkg.scripts.pretest ?? '', /scripts\/install-host-deps\.ts/);
    assert.match(
      readFileSync(join(REPO_DIR, 'cluster', 'cluster-up.ts'), 'utf8'),
      /ensureHostPackages\('cluster'\)/,
    );
  });

  it('looks programs up on PATH and in the sbin directories, files by path', () => {
    assert.equal(isPresent('sh', '/bin:/usr/bin'), true);
    assert.equal(isPresent('no-such-program-here', '/bin:/usr/bin'), false);
    assert.equal(isPresent('/etc/passwd'), true);
    assert.equal(isPresent('/no/such/file'), false);
  });
});
