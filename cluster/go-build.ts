import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import {
  access,
  chmod,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  utimes,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { processAlive } from '../lib/process-alive.ts';
import { ClusterError } from './errors.ts';
import type { ClusterPaths } from './paths.ts';
import type { Progress } from './progress.ts';

/** Programs built from a Go wrapper module in `cluster/go/<name>/`. */
export interface GoBuild {
  /** Names the cache entry and the build log, e.g. 'kubernetes'. */
  readonly name: string;
  /** The wrapper module; relative paths are taken from the repository root. */
  readonly moduleDir: string;
  readonly packages: readonly string[];
  readonly tags?: readonly string[];
  readonly ldflags?: string;
  /** Default false: static binaries that run in any root filesystem. */
  readonly cgo?: boolean;
  /** File names `go build` must produce; checked after the build and when reusing the cache. */
  readonly binaries: readonly string[];
  /** Shown while building, e.g. 15 for Kubernetes on 2 cores. */
  readonly coldBuildMinutes?: number;
  /**
   * Compile the tests of the one package instead (`go test -c`), into a binary named `binaries[0]`:
   * e.g. a conformance suite that ships as a Go test.
   */
  readonly testBinary?: boolean;
}

/** A file that goes into the cache key: path relative to the module, sha256 of its content. */
export interface ModuleFile {
  readonly path: string;
  readonly sha256: string;
}

const KEEP_PER_NAME = 2;
const LOG_TAIL_LINES = 20;
const HEARTBEAT_MS = 120_000;
/** Bump when the meaning of the key changes, so old cache entries are not reused. */
const KEY_FORMAT = 'sluice-go-build-1';

/**
 * The 12 hex digits that name a build's cache entry. Covers everything that changes the output:
 * the module's files, the packages, tags, ldflags, cgo and the Go toolchain.
 */
export function goBuildKey(build: GoBuild, files: readonly ModuleFile[], goVersion: string): string {
  const sortedFiles = [...files]
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map((f) => [f.path, f.sha256]);
  const canonical = JSON.stringify({
    format: KEY_FORMAT,
    files: sortedFiles,
    // The order of packages and tags does not change what go build produces.
    packages: [...new Set(build.packages)].sort(),
    tags: [...new Set(build.tags ?? [])].sort(),
    ldflags: build.ldflags ?? '',
    cgo: build.cgo ?? false,
    goVersion,
    // Only when set, so the keys of the plain builds (and their cached binaries) stay what they were.
    ...(build.testBinary ? { testBinary: true } : {}),
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 12);
}

/** The name of the cache directory of a build: `<name>-<hash12>`. */
export function cacheEntryName(name: string, key: string): string {
  return `${name}-${key}`;
}

/** The version of the `go` directive of a go.mod file, e.g. '1.26.0', or undefined if there is none. */
export function goDirective(goMod: string): string | undefined {
  return /^go\s+(\d+\.\d+(?:\.\d+)?(?:(?:rc|beta)\d+)?)\s*(?:\/\/.*)?$/m.exec(goMod)?.[1];
}

/**
 * Whether a toolchain (`go env GOVERSION`, e.g. 'go1.26.8', 'go1.27rc1', 'devel go1.27-abc') is at
 * least the version a go.mod asks for ('1.26', '1.26.0'). A release candidate counts as older than
 * the `.0` release of its minor version, as Go itself counts it.
 */
export function goVersionSatisfies(toolchain: string, required: string): boolean {
  const have = parseGoVersion(toolchain.replace(/^.*?go(?=\d)/, ''));
  const want = parseGoVersion(required);
  if (!have || !want) return false;
  for (let i = 0; i < have.length; i++) {
    const h = have[i] ?? 0;
    const w = want[i] ?? 0;
    if (h !== w) return h > w;
  }
  return true;
}

/** [major, minor, patch] where a pre-release or a bare language version ('1.26') has patch -1. */
function parseGoVersion(version: string): [number, number, number] | undefined {
  const match = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(version);
  if (!match) return undefined;
  const patch = match[3] === undefined ? -1 : Number(match[3]);
  return [Number(match[1]), Number(match[2]), patch];
}

/** The go.mod, go.sum and every *.go file of a module directory, sorted by path. */
export async function moduleFiles(moduleDir: string): Promise<ModuleFile[]> {
  const files: ModuleFile[] = [];
  const entries = await readdir(moduleDir, { recursive: true, withFileTypes: true });
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const rel = relative(moduleDir, path).split(sep).join('/');
    if (rel === 'go.mod' || rel === 'go.sum' || rel.endsWith('.go')) {
      files.push({
        path: rel,
        sha256: createHash('sha256')
          .update(await readFile(path))
          .digest('hex'),
      });
    }
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Builds the packages of a Go wrapper module into `<cacheDir>/bin/<name>-<hash12>/` and returns that
 * directory; a build with the same inputs is reused at once. Keeps the newest two builds per name.
 */
export async function goBuild(
  build: GoBuild,
  options: { paths: ClusterPaths; progress: Progress },
): Promise<string> {
  const { paths, progress } = options;
  const moduleDir = resolve(paths.repoDir, build.moduleDir);
  const goMod = await readFile(join(moduleDir, 'go.mod'), 'utf8').catch(() => {
    throw new ClusterError(`go build of ${build.name}: no go.mod in ${moduleDir}`);
  });
  const required = goDirective(goMod) ?? '1.0';
  const goVersion = await installedGoVersion(required, build.name);
  if (!goVersionSatisfies(goVersion, required)) {
    throw new ClusterError(
      `${build.name} needs Go ${required} or newer but \`go\` is ${goVersion}: install Go ${required} or newer and put it first on PATH`,
    );
  }

  const binRoot = join(paths.cacheDir, 'bin');
  const key = goBuildKey(build, await moduleFiles(moduleDir), goVersion);
  const binDir = join(binRoot, cacheEntryName(build.name, key));

  if (await hasBinaries(binDir, build.binaries)) {
    const now = new Date();
    await utimes(binDir, now, now); // newest stays kept by the pruning below
    progress.detail(`${build.name}: reusing ${binDir}`);
    await prune(binRoot, build.name, binDir);
    return binDir;
  }

  await mkdir(binRoot, { recursive: true });
  await mkdir(paths.logDir, { recursive: true });
  await rm(binDir, { recursive: true, force: true }); // an entry with missing binaries
  const tmpDir = await mkdtemp(join(binRoot, `.tmp-${cacheEntryName(build.name, key)}-${process.pid}-`));
  await chmod(tmpDir, 0o755); // mkdtemp makes it 0700
  const logFile = join(paths.logDir, `build-${build.name}.log`);
  const estimate = build.coldBuildMinutes
    ? ` (cold builds take ~${build.coldBuildMinutes} min on 2 cores)`
    : '';
  progress.detail(`building ${build.name} with ${goVersion}${estimate}; log: ${logFile}`);

  try {
    await runGoBuild(build, { moduleDir, outDir: tmpDir, logFile, progress });
    const missing = await missingBinaries(tmpDir, build.binaries);
    if (missing.length > 0) {
      throw new ClusterError(
        `go build of ${build.name} did not produce ${missing.join(', ')} (packages: ${build.packages.join(' ')})`,
      );
    }
    try {
      await rename(tmpDir, binDir);
    } catch (error) {
      // Another run built the same inputs at the same time: its result is as good as ours.
      if (!(await hasBinaries(binDir, build.binaries))) throw error;
    }
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
  await prune(binRoot, build.name, binDir);
  return binDir;
}

async function installedGoVersion(required: string, name: string): Promise<string> {
  const install = `install Go ${required} or newer and put \`go\` on PATH`;
  return new Promise((resolvePromise, reject) => {
    // Outside the module, so a go.mod that asks for a newer Go makes no toolchain download happen.
    execFile(
      'go',
      ['env', 'GOVERSION'],
      { cwd: tmpdir(), env: { ...process.env, GOTOOLCHAIN: 'local' }, encoding: 'utf8', timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error) {
          const notFound = (error as NodeJS.ErrnoException).code === 'ENOENT';
          const why = notFound ? 'Go is not installed' : `\`go env GOVERSION\` failed: ${stderr.trim()}`;
          reject(new ClusterError(`building ${name} needs Go: ${why}; ${install}`));
          return;
        }
        resolvePromise(stdout.trim());
      },
    );
  });
}

function goBuildArgs(build: GoBuild, outDir: string): string[] {
  if (build.testBinary) {
    const [binary] = build.binaries;
    if (build.packages.length !== 1 || binary === undefined) {
      throw new ClusterError(`${build.name}: a test binary is built from one package into one binary`);
    }
    const args = ['test', '-c', '-trimpath', '-buildvcs=false'];
    if (build.tags && build.tags.length > 0) args.push('-tags', build.tags.join(','));
    if (build.ldflags) args.push('-ldflags', build.ldflags);
    return [...args, '-o', join(outDir, binary), ...build.packages];
  }
  const args = ['build', '-trimpath', '-buildvcs=false'];
  if (build.tags && build.tags.length > 0) args.push('-tags', build.tags.join(','));
  if (build.ldflags) args.push('-ldflags', build.ldflags);
  // The trailing separator makes go build write one binary per main package into the directory.
  args.push('-o', outDir + sep, ...build.packages);
  return args;
}

async function runGoBuild(
  build: GoBuild,
  options: { moduleDir: string; outDir: string; logFile: string; progress: Progress },
): Promise<void> {
  const { moduleDir, outDir, logFile, progress } = options;
  const args = goBuildArgs(build, outDir);
  const log = createWriteStream(logFile);
  log.write(`$ go ${args.join(' ')}\n# in ${moduleDir}, CGO_ENABLED=${build.cgo ? '1' : '0'}\n`);
  const started = Date.now();
  const heartbeat = setInterval(() => {
    const minutes = Math.round((Date.now() - started) / 60_000);
    progress.detail(`still building ${build.name} (${minutes} min)`);
  }, HEARTBEAT_MS);

  const exit = await new Promise<{ code: number | null; error?: Error }>((resolvePromise) => {
    const child = spawn('go', args, {
      cwd: moduleDir,
      env: { ...process.env, CGO_ENABLED: build.cgo ? '1' : '0', GOTOOLCHAIN: 'local' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    child.on('error', (error) => {
      resolvePromise({ code: null, error });
    });
    child.on('close', (code) => {
      resolvePromise({ code });
    });
  }).finally(() => {
    clearInterval(heartbeat);
  });
  await new Promise<void>((resolvePromise) => log.end(resolvePromise));

  if (exit.error) throw new ClusterError(`go build of ${build.name} could not start: ${exit.error.message}`);
  if (exit.code !== 0) {
    const lastLines = await logTail(logFile, LOG_TAIL_LINES);
    for (const line of lastLines) progress.detail(`| ${line}`);
    throw new ClusterError(
      `go build of ${build.name} failed (exit ${String(exit.code)}); see ${logFile}: ${lastLines.slice(-3).join(' | ')}`,
    );
  }
}

async function logTail(file: string, lines: number): Promise<string[]> {
  // Only the end of the file: a failed build's log can be long.
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, 64 * 1024);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return buffer
      .toString('utf8')
      .split('\n')
      .map((l) => l.trimEnd())
      .filter((l) => l !== '')
      .slice(-lines);
  } finally {
    await handle.close();
  }
}

async function missingBinaries(dir: string, binaries: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const binary of binaries) {
    try {
      await access(join(dir, binary));
    } catch {
      missing.push(binary);
    }
  }
  return missing;
}

async function hasBinaries(dir: string, binaries: readonly string[]): Promise<boolean> {
  try {
    if (!(await stat(dir)).isDirectory()) return false;
  } catch {
    return false;
  }
  return (await missingBinaries(dir, binaries)).length === 0;
}

/**
 * Removes all but the newest KEEP_PER_NAME builds of a name (binaries are large), and temporary
 * directories left by builds whose process is gone.
 */
async function prune(binRoot: string, name: string, current: string): Promise<void> {
  const entryPattern = new RegExp(`^${escapeRegExp(name)}-[0-9a-f]{12}$`);
  const tmpPattern = new RegExp(`^\\.tmp-${escapeRegExp(name)}-[0-9a-f]{12}-(\\d+)-`);
  const builds: { path: string; mtimeMs: number }[] = [];
  for (const entry of await readdir(binRoot, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const path = join(binRoot, entry.name);
    const tmpOwner = tmpPattern.exec(entry.name)?.[1];
    if (tmpOwner !== undefined) {
      if (!processAlive(Number(tmpOwner))) await rm(path, { recursive: true, force: true });
    } else if (entryPattern.test(entry.name)) {
      const { mtimeMs } = await stat(path);
      builds.push({ path, mtimeMs: path === current ? Infinity : mtimeMs });
    }
  }
  builds.sort((a, b) => b.mtimeMs - a.mtimeMs);
  for (const old of builds.slice(KEEP_PER_NAME)) await rm(old.path, { recursive: true, force: true });
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
