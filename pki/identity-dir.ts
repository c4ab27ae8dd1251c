import { statSync, watch, type FSWatcher } from 'node:fs';
import { mkdir, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PkiError } from './errors.ts';
import { parseIdentity, type Identity, type IdentityPem } from './identity.ts';

/** File names inside an identity directory (docs/identity-dir.md). */
export const IDENTITY_FILES = { cert: 'cert.pem', key: 'key.pem', bundle: 'bundle.pem' } as const;

const MAX_FILE_BYTES = 1024 * 1024;

async function readBounded(path: string): Promise<string> {
  let file;
  try {
    file = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new PkiError(`cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : code}`);
  }
  try {
    const { size } = await file.stat();
    if (size > MAX_FILE_BYTES) throw new PkiError(`${path}: larger than ${MAX_FILE_BYTES} bytes`);
    return await file.readFile('utf8');
  } finally {
    await file.close();
  }
}

/** Reads the three PEM files of an identity directory, unchecked. */
export async function readIdentityDir(dir: string): Promise<IdentityPem> {
  const reads = await Promise.allSettled([
    readBounded(join(dir, IDENTITY_FILES.cert)),
    readBounded(join(dir, IDENTITY_FILES.key)),
    readBounded(join(dir, IDENTITY_FILES.bundle)),
  ]);
  // The first failure in file order, not whichever read failed first: the error names the same file each time.
  const [certPem, keyPem, bundlePem] = reads.map((read) => {
    if (read.status === 'rejected') throw read.reason;
    return read.value;
  }) as [string, string, string];
  return { certPem, keyPem, bundlePem };
}

/** Reads and checks an identity directory (see parseIdentity). Throws PkiError. */
export async function loadIdentityDir(dir: string, now?: Date): Promise<Identity> {
  const pem = await readIdentityDir(dir);
  try {
    return parseIdentity(pem, now);
  } catch (err) {
    if (err instanceof PkiError) throw new PkiError(`${dir}: ${err.message}`);
    throw err;
  }
}

/**
 * mkdir -p, one level at a time. (fs.mkdir's recursive mode spins forever on some paths, such as one
 * under /proc, where mkdir reports ENOENT although the parent exists.)
 */
export async function ensureDir(path: string, mode: number): Promise<void> {
  const absolute = resolve(path);
  const parts = absolute.split(sep).filter((p) => p !== '');
  let current: string = sep;
  for (const part of parts) {
    current = join(current, part);
    try {
      await mkdir(current, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  if (!(await stat(absolute)).isDirectory()) {
    throw Object.assign(new Error(`${absolute} is not a directory`), { code: 'ENOTDIR' });
  }
}

/** Writes a file so that readers see either the old or the new content, never a partial one. */
export async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    await writeFile(tmp, data, { mode, flag: 'wx' });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Writes an identity directory (created if missing). Each file is replaced atomically; key.pem is 0600.
 * A reader may still see a new key with an old certificate between two renames: loadIdentityDir rejects
 * that pair and the watcher keeps the previous identity until the set is consistent.
 */
export async function writeIdentityDir(dir: string, pem: IdentityPem): Promise<void> {
  await ensureDir(dir, 0o755);
  await writeFileAtomic(join(dir, IDENTITY_FILES.bundle), pem.bundlePem, 0o644);
  await writeFileAtomic(join(dir, IDENTITY_FILES.key), pem.keyPem, 0o600);
  await writeFileAtomic(join(dir, IDENTITY_FILES.cert), pem.certPem, 0o644);
}

export interface WatchIdentityOptions {
  /** The identity in use now; changes are reported relative to it. */
  readonly initial: Identity;
  /** Called with each new, checked identity. */
  readonly onChange: (identity: Identity) => void;
  /** Called when the directory holds an unusable identity; the previous one stays in use. */
  readonly onError?: (err: Error) => void;
  /** Quiet time after the last file event before reloading (writers touch three files). */
  readonly debounceMs?: number;
  /** Reload this often even without events (fs.watch can miss some, e.g. a replaced directory). */
  readonly pollMs?: number;
}

export interface IdentityWatcher {
  readonly current: Identity;
  /** Reloads now (after pending events settle); resolves when done. */
  reload(): Promise<void>;
  close(): void;
}

function sameIdentity(a: IdentityPem, b: IdentityPem): boolean {
  return a.certPem === b.certPem && a.keyPem === b.keyPem && a.bundlePem === b.bundlePem;
}

/**
 * Watches an identity directory for rotation (fs.watch on the directory, which also sees Kubernetes'
 * atomic ..data symlink swap, plus a slow poll). Each settled change is loaded and checked; a valid new
 * identity is passed to onChange, an invalid one to onError.
 */
export function watchIdentityDir(dir: string, options: WatchIdentityOptions): IdentityWatcher {
  const debounceMs = options.debounceMs ?? 100;
  const pollMs = options.pollMs ?? 30_000;
  let current = options.initial;
  let closed = false;
  let debounce: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let requests = 0;
  let watcher: FSWatcher | undefined;
  let watchedIno = -1;

  const report = (err: unknown): void => {
    options.onError?.(err instanceof Error ? err : new Error(String(err)));
  };

  const loadOnce = async (): Promise<void> => {
    try {
      const next = await loadIdentityDir(dir);
      if (closed || sameIdentity(next, current)) return;
      current = next;
      options.onChange(next);
    } catch (err) {
      if (!closed) report(err);
    }
  };

  // One load at a time; events during a load cause exactly one more.
  const reload = (): Promise<void> => {
    requests++;
    if (running) return running;
    running = (async () => {
      let handled;
      do {
        handled = requests;
        await loadOnce();
      } while (handled !== requests && !closed);
      running = undefined;
    })();
    return running;
  };

  const schedule = (): void => {
    if (closed) return;
    clearTimeout(debounce);
    debounce = setTimeout(() => void reload(), debounceMs);
  };

  const stopWatcher = (): void => {
    watcher?.close();
    watcher = undefined;
  };

  // (Re)starts fs.watch when there is none or the directory was replaced (a watch follows the inode).
  const startWatcher = (): void => {
    if (closed) return;
    let ino: number;
    try {
      ino = statSync(dir).ino;
    } catch {
      return; // missing for now: the next poll tries again
    }
    if (watcher && ino === watchedIno) return;
    stopWatcher();
    try {
      watchedIno = ino;
      watcher = watch(dir, { persistent: false }, schedule);
      watcher.on('error', (err) => {
        stopWatcher();
        report(err);
      });
    } catch (err) {
      report(err);
    }
  };

  startWatcher();
  const poll = setInterval(() => {
    startWatcher();
    void reload();
  }, pollMs);
  poll.unref();

  return {
    get current() {
      return current;
    },
    reload: async () => {
      clearTimeout(debounce);
      await reload();
    },
    close: () => {
      closed = true;
      clearTimeout(debounce);
      clearInterval(poll);
      stopWatcher();
    },
  };
}
