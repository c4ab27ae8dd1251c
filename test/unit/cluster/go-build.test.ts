import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cacheEntryName,
  goBuildKey,
  goDirective,
  goVersionSatisfies,
  moduleFiles,
  type GoBuild,
  type ModuleFile,
} from '../../../cluster/go-build.ts';

const build: GoBuild = {
  name: 'kubernetes',
  moduleDir: 'cluster/go/kubernetes',
  packages: ['k8s.io/kubernetes/cmd/kubelet', 'k8s.io/kubernetes/cmd/kubectl'],
  tags: ['selinux', 'notest'],
  ldflags: '-s -w',
  binaries: ['kubelet', 'kubectl'],
};
const files: ModuleFile[] = [
  { path: 'go.mod', sha256: 'a'.repeat(64) },
  { path: 'go.sum', sha256: 'b'.repeat(64) },
  { path: 'tools.go', sha256: 'c'.repeat(64) },
];

describe('goBuildKey', () => {
  const key = goBuildKey(build, files, 'go1.26.8');

  it('is 12 hex digits and stable', () => {
    assert.match(key, /^[0-9a-f]{12}$/);
    assert.equal(goBuildKey({ ...build }, [...files], 'go1.26.8'), key);
    assert.equal(cacheEntryName('kubernetes', key), `kubernetes-${key}`);
  });

  it('does not depend on the order of files, packages or tags', () => {
    const reordered = { ...build, packages: [...build.packages].reverse(), tags: ['notest', 'selinux'] };
    assert.equal(goBuildKey(reordered, [...files].reverse(), 'go1.26.8'), key);
  });

  it('changes with every input that changes the output', () => {
    const variants: [string, string][] = [
      [
        'go.sum content',
        goBuildKey(build, [files[0]!, { path: 'go.sum', sha256: 'd'.repeat(64) }, files[2]!], 'go1.26.8'),
      ],
      [
        'a new .go file',
        goBuildKey(build, [...files, { path: 'x/y.go', sha256: 'e'.repeat(64) }], 'go1.26.8'),
      ],
      [
        'a renamed file',
        goBuildKey(build, [files[0]!, files[1]!, { path: 'main.go', sha256: 'c'.repeat(64) }], 'go1.26.8'),
      ],
      ['packages', goBuildKey({ ...build, packages: ['k8s.io/kubernetes/cmd/kubelet'] }, files, 'go1.26.8')],
      ['tags', goBuildKey({ ...build, tags: ['selinux'] }, files, 'go1.26.8')],
      ['no tags', goBuildKey({ ...build, tags: undefined }, files, 'go1.26.8')],
      ['ldflags', goBuildKey({ ...build, ldflags: '-s' }, files, 'go1.26.8')],
      ['cgo', goBuildKey({ ...build, cgo: true }, files, 'go1.26.8')],
      ['a test binary', goBuildKey({ ...build, testBinary: true }, files, 'go1.26.8')],
      ['Go version', goBuildKey(build, files, 'go1.26.9')],
    ];
    const seen = new Set([key]);
    for (const [what, variant] of variants) {
      assert.ok(!seen.has(variant), `${what} should change the key`);
      seen.add(variant);
    }
  });

  it('treats cgo false and unset alike, and ignores the expected binaries', () => {
    assert.equal(goBuildKey({ ...build, cgo: false }, files, 'go1.26.8'), key);
    // So the binaries cached before test binaries existed keep their keys.
    assert.equal(goBuildKey({ ...build, testBinary: false }, files, 'go1.26.8'), key);
    assert.equal(goBuildKey({ ...build, binaries: ['kubelet'] }, files, 'go1.26.8'), key);
  });
});

describe('goDirective and goVersionSatisfies', () => {
  it('reads the go line of a go.mod', () => {
    assert.equal(goDirective('// c\nmodule x\n\ngo 1.26.0\n\ntool y\n'), '1.26.0');
    assert.equal(goDirective('module x\ngo 1.22 // comment\n'), '1.22');
    assert.equal(goDirective('module x\ngo 1.27rc1\n'), '1.27rc1');
    assert.equal(goDirective('module x\ntoolchain go1.26.8\n'), undefined);
  });

  it('compares toolchains with go.mod versions', () => {
    assert.ok(goVersionSatisfies('go1.26.8', '1.26.0'));
    assert.ok(goVersionSatisfies('go1.26.0', '1.26.0'));
    assert.ok(goVersionSatisfies('go1.27.1', '1.26.5'));
    assert.ok(goVersionSatisfies('go2.0.0', '1.26'));
    assert.ok(goVersionSatisfies('go1.26rc1', '1.26'));
    assert.ok(goVersionSatisfies('devel go1.27-abcdef Mon Jan 1', '1.26.0'));
    assert.ok(!goVersionSatisfies('go1.26rc1', '1.26.0'));
    assert.ok(!goVersionSatisfies('go1.25.9', '1.26.0'));
    assert.ok(!goVersionSatisfies('go1.26.1', '1.26.2'));
    assert.ok(!goVersionSatisfies('garbage', '1.26.0'));
    assert.ok(!goVersionSatisfies('go1.26.8', 'garbage'));
  });
});

describe('moduleFiles', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-go-files-'));
    await mkdir(join(dir, 'sub'));
    for (const name of ['go.mod', 'go.sum', 'main.go', 'sub/b.go', 'README.md', 'sub/go.mod.bak']) {
      await writeFile(join(dir, name), name);
    }
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('takes go.mod, go.sum and every .go file, sorted, with content hashes', async () => {
    const found = await moduleFiles(dir);
    assert.deepEqual(
      found.map((f) => f.path),
      ['go.mod', 'go.sum', 'main.go', 'sub/b.go'],
    );
    assert.match(found[0]!.sha256, /^[0-9a-f]{64}$/);
    assert.notEqual(found[0]!.sha256, found[1]!.sha256);
  });
});
