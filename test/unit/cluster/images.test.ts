import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { contextSources, dockerignoreMatcher, hashBuildInputs } from '../../../cluster/image-inputs.ts';
import { containerdReference, IMAGE_NAMES, newestNpmTarball, selectImages } from '../../../cluster/images.ts';
import { REPO_DIR } from '../../../cluster/paths.ts';
import { echoSettings } from '../../../images/echo/main.ts';

describe('cluster images: build inputs', () => {
  describe('contextSources', () => {
    it('lists COPY and ADD sources, skipping --from stages, flags and comments', () => {
      const dockerfile = [
        'ARG BASE_IMAGE=x',
        'FROM ${BASE_IMAGE} AS build',
        '# COPY commented/out .',
        'COPY package.json package-lock.json ./',
        'COPY --chown=1:1 cli cli',
        'add --chmod=755 tool.sh /usr/local/bin/',
        'COPY --from=build /app/dist ./',
        'COPY ["with space.txt", "b.txt", "/dst/"]',
        'RUN echo COPY not/this .',
        'COPY a \\',
        '     b \\',
        '     /dst/',
      ].join('\n');
      assert.deepEqual(contextSources(dockerfile), [
        'package.json',
        'package-lock.json',
        'cli',
        'tool.sh',
        'with space.txt',
        'b.txt',
        'a',
        'b',
      ]);
    });

    it('names only files that exist in the repository for the repo-context Dockerfiles', async () => {
      for (const file of ['Dockerfile', 'images/echo/Dockerfile', 'images/toolbox/Dockerfile']) {
        const sources = contextSources(await readFile(join(REPO_DIR, file), 'utf8'));
        assert.ok(sources.length > 0, file);
        for (const source of sources) assert.ok(existsSync(join(REPO_DIR, source)), `${file}: ${source}`);
      }
    });
  });

  describe('dockerignoreMatcher', () => {
    const ignored = dockerignoreMatcher(
      [
        '# comment',
        'node_modules',
        '**/node_modules',
        '/dist/',
        '*.log',
        'bench/.scratch-*',
        '!keep.log',
      ].join('\n'),
    );

    it('excludes matching paths and everything below them', () => {
      assert.ok(ignored('node_modules'));
      assert.ok(ignored('node_modules/undici/index.js'));
      assert.ok(ignored('cli/node_modules/x'));
      assert.ok(ignored('dist/cli/main.js'));
      assert.ok(ignored('build.log'));
      assert.ok(ignored('bench/.scratch-proxy-libs/a.so'));
    });

    it('keeps everything else and honours exceptions', () => {
      assert.ok(!ignored('cli/main.ts'));
      assert.ok(!ignored('distro/x'));
      assert.ok(!ignored('logs/a.txt'));
      assert.ok(!ignored('keep.log'));
      assert.ok(!ignored('sub/build.log'), '* does not cross a /');
    });
  });

  describe('hashBuildInputs', () => {
    let dir = '';
    const dockerfile = 'FROM scratch\nCOPY app /app\nCOPY top.txt /\n';
    const hash = (extra: string[] = []) => hashBuildInputs({ contextDir: dir, dockerfile, extra });

    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'sluice-image-inputs-'));
      await mkdir(join(dir, 'app', 'lib'), { recursive: true });
      await writeFile(join(dir, 'app', 'lib', 'a.js'), 'a');
      await writeFile(join(dir, 'top.txt'), 'top');
      await writeFile(join(dir, 'unrelated.txt'), 'x');
      await writeFile(join(dir, '.dockerignore'), 'app/*.log\n');
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('is stable and ignores files the Dockerfile does not copy or .dockerignore excludes', async () => {
      const first = await hash();
      assert.match(first, /^[0-9a-f]{64}$/);
      await writeFile(join(dir, 'unrelated.txt'), 'changed');
      await writeFile(join(dir, 'app', 'debug.log'), 'noise');
      assert.equal(await hash(), first);
    });

    it('changes with copied content, new files, the executable bit and extra inputs', async () => {
      const first = await hash();
      await writeFile(join(dir, 'app', 'lib', 'a.js'), 'b');
      const edited = await hash();
      assert.notEqual(edited, first);
      await writeFile(join(dir, 'app', 'new.js'), '');
      const added = await hash();
      assert.notEqual(added, edited);
      await chmod(join(dir, 'top.txt'), 0o755);
      const executable = await hash();
      assert.notEqual(executable, added);
      assert.notEqual(await hash(['BASE_IMAGE=other']), executable);
    });

    it('fails clearly on a missing source or one outside the context', async () => {
      await rm(join(dir, 'top.txt'));
      await assert.rejects(hash(), /COPY source 'top.txt' does not exist/);
      await assert.rejects(
        hashBuildInputs({ contextDir: dir, dockerfile: 'COPY ../etc /x\n', extra: [] }),
        /outside the build context/,
      );
    });
  });
});

describe('cluster images: selection and naming', () => {
  it('selects by full or short name, in build order', () => {
    assert.deepEqual(selectImages(['sluice-echo', 'sluice-pause:dev']), [
      'sluice-pause:dev',
      'sluice-echo:dev',
    ]);
    assert.deepEqual(selectImages(), IMAGE_NAMES);
    assert.deepEqual(selectImages([]), IMAGE_NAMES);
  });

  it('rejects unknown names with the list of known ones', () => {
    assert.throws(() => selectImages(['nginx']), /unknown image 'nginx' \(known: sluice-pause:dev, /);
  });

  it('names images as containerd stores a short docker reference', () => {
    assert.equal(containerdReference('sluice:dev'), 'docker.io/library/sluice:dev');
    assert.equal(
      containerdReference('registry.k8s.io/gateway-api/echo-advanced:v1.5.1'),
      'registry.k8s.io/gateway-api/echo-advanced:v1.5.1',
    );
    assert.equal(containerdReference('localhost/x:1'), 'localhost/x:1');
    assert.equal(containerdReference('library/x:1'), 'docker.io/library/library/x:1');
  });

  it('picks the newest cached npm tarball', () => {
    assert.equal(
      newestNpmTarball(['npm-11.2.0.tgz', 'npm-11.10.1.tgz', 'npm-11.9.9.tgz', 'x.tgz']),
      'npm-11.10.1.tgz',
    );
    assert.equal(newestNpmTarball(['debian-bookworm-minbase.tar']), null);
  });
});

describe('echo image settings', () => {
  it('defaults the name to the pod name and listens on 8080', () => {
    assert.deepEqual(echoSettings([], { HOSTNAME: 'echo-7d9f-abcde' }), {
      name: 'echo-7d9f-abcde',
      pod: 'echo-7d9f-abcde',
      ports: [8080],
      host: '0.0.0.0',
      upstream: undefined,
      shutdownDelaySeconds: 0,
      drainOnSigterm: false,
    });
  });

  it('lets flags win over the environment', () => {
    const env = { ECHO_NAME: 'v1', ECHO_PORTS: '80', POD_NAME: 'echo-1', HOSTNAME: 'ignored' };
    assert.deepEqual(echoSettings(['--name', 'v2', '--ports', '8080,9090,8080', '--host', '::'], env), {
      name: 'v2',
      pod: 'echo-1',
      ports: [8080, 9090],
      host: '::',
      upstream: undefined,
      shutdownDelaySeconds: 0,
      drainOnSigterm: false,
    });
  });

  it('returns an error message for bad input', () => {
    assert.match(echoSettings(['--ports', '8080,70000'], {}) as string, /bad port '70000'/);
    assert.match(echoSettings(['--ports', ''], { ECHO_PORTS: 'x' }) as string, /bad port 'x'/);
    assert.equal(typeof echoSettings(['--bogus'], {}), 'string');
    assert.match(echoSettings([], { ECHO_UPSTREAM: 'reviews:9080' }) as string, /bad upstream/);
    assert.match(echoSettings(['--shutdown-delay-seconds', 'soon'], {}) as string, /bad shutdown delay/);
    assert.match(echoSettings(['--on-sigterm', 'exit'], {}) as string, /bad --on-sigterm/);
  });

  it('takes the shutdown behaviour from flags or the environment', () => {
    const settings = echoSettings(['--on-sigterm', 'drain'], { ECHO_SHUTDOWN_DELAY_SECONDS: '5' });
    assert.ok(typeof settings !== 'string');
    assert.equal(settings.shutdownDelaySeconds, 5);
    assert.equal(settings.drainOnSigterm, true);
  });

  it('takes an upstream to call from the flag or ECHO_UPSTREAM', () => {
    const settings = echoSettings([], { ECHO_NAME: 'front', ECHO_UPSTREAM: 'http://reviews:9080' });
    assert.equal(typeof settings === 'string' ? settings : settings.upstream, 'http://reviews:9080');
  });
});
