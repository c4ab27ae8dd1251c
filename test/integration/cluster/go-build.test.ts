import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { ClusterError } from '../../../cluster/errors.ts';
import { run } from '../../../cluster/exec.ts';
import { goBuild, type GoBuild } from '../../../cluster/go-build.ts';
import { clusterPaths, type ClusterPaths } from '../../../cluster/paths.ts';
import { Progress } from '../../../cluster/progress.ts';

// Real `go build` runs of tiny modules made in a temporary directory (needs Go on PATH; fast once
// the Go build cache holds the standard library).
describe('goBuild (real go build of a tiny module)', function () {
  this.timeout(240_000);
  let root: string;
  let paths: ClusterPaths;
  let output: string[];
  let progress: Progress;

  async function tinyModule(name: string, mainGo: string, goLine = '1.22'): Promise<string> {
    const dir = join(root, 'modules', name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'go.mod'), `module example.test/${name}\n\ngo ${goLine}\n`);
    await writeFile(join(dir, 'main.go'), mainGo);
    return dir;
  }

  const hello = 'package main\n\nvar v = "0"\n\nfunc main() { println("hello " + v) }\n';

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sluice-go-build-'));
    paths = { ...clusterPaths(), cacheDir: join(root, 'cache'), logDir: join(root, 'logs') };
  });
  beforeEach(() => {
    output = [];
    progress = new Progress(
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          output.push(chunk.toString());
          done();
        },
      }),
    );
  });
  after(() => rm(root, { recursive: true, force: true }));

  it('builds into the cache, reuses it, and keeps only the newest two builds', async () => {
    const moduleDir = await tinyModule('hello', hello);
    const spec: GoBuild = {
      name: 'hello',
      moduleDir,
      packages: ['.'],
      ldflags: '-s -w',
      binaries: ['hello'],
    };

    const first = await goBuild(spec, { paths, progress });
    assert.match(first, new RegExp(`^${join(paths.cacheDir, 'bin', 'hello-')}[0-9a-f]{12}$`));
    const built = await stat(join(first, 'hello'));
    assert.ok(built.mode & 0o100, 'binary is executable');
    assert.ok(output.some((l) => l.includes('building hello')));

    const again = await goBuild(spec, { paths, progress });
    assert.equal(again, first);
    assert.equal((await stat(join(first, 'hello'))).mtimeMs, built.mtimeMs, 'not rebuilt');
    assert.ok(output.some((l) => l.includes('reusing')));

    const second = await goBuild({ ...spec, ldflags: '-s -w -X main.v=1' }, { paths, progress });
    const third = await goBuild({ ...spec, ldflags: '-s -w -X main.v=2' }, { paths, progress });
    assert.notEqual(second, first);
    const entries = (await readdir(join(paths.cacheDir, 'bin'))).sort();
    assert.deepEqual(entries, [second, third].map((p) => p.slice(p.lastIndexOf('/') + 1)).sort());
  });

  it('compiles the tests of a package into one binary (go test -c) that runs them', async () => {
    const moduleDir = await tinyModule('suite', 'package suite\n\nfunc Answer() int { return 42 }\n');
    await writeFile(
      join(moduleDir, 'suite_test.go'),
      'package suite\n\nimport "testing"\n\nfunc TestAnswer(t *testing.T) {\n\tif Answer() != 42 {\n\t\tt.Fatal("no")\n\t}\n}\n',
    );
    const spec: GoBuild = {
      name: 'suite',
      moduleDir,
      packages: ['.'],
      testBinary: true,
      binaries: ['suite.test'],
    };
    const dir = await goBuild(spec, { paths, progress });
    const { stdout } = await run(join(dir, 'suite.test'), ['-test.v']);
    assert.match(stdout, /--- PASS: TestAnswer/);
    await assert.rejects(
      goBuild({ ...spec, name: 'suites', packages: ['.', './x'] }, { paths, progress }),
      /a test binary is built from one package into one binary/,
    );
  });

  it('fails with the tail of the build log when the build fails', async () => {
    const moduleDir = await tinyModule('broken', 'package main\n\nfunc main() { undefinedThing() }\n');
    const spec: GoBuild = { name: 'broken', moduleDir, packages: ['.'], binaries: ['broken'] };
    await assert.rejects(goBuild(spec, { paths, progress }), (error: unknown) => {
      assert.ok(error instanceof ClusterError);
      assert.match(error.message, /go build of broken failed \(exit 1\).*undefined: undefinedThing/);
      assert.ok(error.message.includes(join(paths.logDir, 'build-broken.log')));
      return true;
    });
    assert.ok(output.some((l) => l.includes('undefinedThing')));
    const leftovers = (await readdir(join(paths.cacheDir, 'bin'))).filter((e) => e.includes('broken'));
    assert.deepEqual(leftovers, []);
  });

  it('fails when an expected binary is not produced', async () => {
    const moduleDir = await tinyModule('named', hello);
    const spec: GoBuild = { name: 'named', moduleDir, packages: ['.'], binaries: ['named', 'other'] };
    await assert.rejects(goBuild(spec, { paths, progress }), /did not produce other/);
  });

  it('says which Go to install when go.mod asks for a newer one', async () => {
    const moduleDir = await tinyModule('future', hello, '1.99.0');
    const spec: GoBuild = { name: 'future', moduleDir, packages: ['.'], binaries: ['future'] };
    await assert.rejects(
      goBuild(spec, { paths, progress }),
      /^ClusterError: future needs Go 1\.99\.0 or newer but `go` is go[\d.]+.*: install Go 1\.99\.0 or newer/,
    );
  });

  it('says Go is missing when there is no go on PATH', async () => {
    const moduleDir = await tinyModule('nogo', hello);
    const spec: GoBuild = { name: 'nogo', moduleDir, packages: ['.'], binaries: ['nogo'] };
    const savedPath = process.env.PATH;
    process.env.PATH = join(root, 'empty');
    try {
      await assert.rejects(
        goBuild(spec, { paths, progress }),
        /Go is not installed; install Go 1\.22 or newer/,
      );
    } finally {
      process.env.PATH = savedPath;
    }
  });
});
