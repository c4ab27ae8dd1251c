/**
 * What an image build reads, reduced to one hash: the Dockerfile, the build arguments and every file its
 * COPY/ADD instructions take from the build context (minus .dockerignore'd paths). Equal hashes mean the
 * build would produce the same image, so the archive from last time can be reused.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';

/**
 * Sources that COPY and ADD instructions take from the build context (not those with --from=, which come
 * from another stage or image), in order of appearance. Handles line continuations, comments, flags and
 * the JSON array form.
 */
export function contextSources(dockerfile: string): string[] {
  const sources: string[] = [];
  for (const instruction of joinContinuations(dockerfile)) {
    const match = /^(COPY|ADD)\s+(.*)$/i.exec(instruction);
    if (!match) continue;
    let rest = match[2]!.trim();
    let fromStage = false;
    for (let flag = /^--([a-z-]+)(=\S*)?\s+/i.exec(rest); flag; flag = /^--([a-z-]+)(=\S*)?\s+/i.exec(rest)) {
      if (flag[1]!.toLowerCase() === 'from') fromStage = true;
      rest = rest.slice(flag[0].length);
    }
    if (fromStage) continue;
    const words = rest.startsWith('[') ? jsonWords(rest) : rest.split(/\s+/);
    sources.push(...words.slice(0, -1).filter((word) => word !== ''));
  }
  return sources;
}

function joinContinuations(dockerfile: string): string[] {
  const instructions: string[] = [];
  let current = '';
  for (const rawLine of dockerfile.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      current += line.slice(0, -1) + ' ';
      continue;
    }
    current += line;
    if (current.trim() !== '') instructions.push(current.trim());
    current = '';
  }
  if (current.trim() !== '') instructions.push(current.trim());
  return instructions;
}

function jsonWords(text: string): string[] {
  try {
    const parsed: unknown = JSON.parse(text);
    return Array.isArray(parsed) ? parsed.filter((word): word is string => typeof word === 'string') : [];
  } catch {
    return [];
  }
}

/**
 * A matcher for .dockerignore patterns: `*` and `?` within one path segment, `**` across segments, a
 * pattern also excludes everything below a matching directory. Exceptions (`!pattern`) are honoured in
 * order, last match wins, as Docker does.
 */
export function dockerignoreMatcher(text: string): (relativePath: string) => boolean {
  const rules: { exclude: boolean; pattern: RegExp }[] = [];
  for (const rawLine of text.split(/\r?\n/)) {
    let line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const exclude = !line.startsWith('!');
    if (!exclude) line = line.slice(1).trim();
    const cleaned = posix.normalize(line).replace(/^\/+/, '').replace(/\/+$/, '');
    if (cleaned === '' || cleaned === '.') continue;
    rules.push({ exclude, pattern: new RegExp(`^${globToRegExp(cleaned)}(/.*)?$`) });
  }
  return (relativePath) => {
    let excluded = false;
    for (const rule of rules) if (rule.pattern.test(relativePath)) excluded = rule.exclude;
    return excluded;
  };
}

function globToRegExp(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i]!;
    if (char === '*' && glob[i + 1] === '*') {
      out += '.*';
      i++;
      if (glob[i + 1] === '/') i++;
    } else if (char === '*') out += '[^/]*';
    else if (char === '?') out += '[^/]';
    else out += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return out;
}

export interface BuildInputs {
  readonly contextDir: string;
  readonly dockerfile: string;
  /** Everything else the result depends on: build arguments, base image IDs, recipe version. */
  readonly extra: readonly string[];
}

/** sha256 over the Dockerfile, `extra` and each context file COPY/ADD reads (path, executable bit, content). */
export async function hashBuildInputs(inputs: BuildInputs): Promise<string> {
  const hash = createHash('sha256');
  const field = (text: string): void => {
    hash.update(`${text.length}:${text}\n`);
  };
  field(inputs.dockerfile);
  for (const item of inputs.extra) field(item);
  let ignoreText = '';
  try {
    ignoreText = await readFile(join(inputs.contextDir, '.dockerignore'), 'utf8');
  } catch {
    // no .dockerignore: nothing excluded
  }
  const ignored = dockerignoreMatcher(ignoreText);
  for (const source of contextSources(inputs.dockerfile)) {
    for (const path of await expandSource(inputs.contextDir, source)) {
      await hashTree(hash, inputs.contextDir, path, ignored);
    }
  }
  return hash.digest('hex');
}

/** Context-relative paths a COPY source names; a wildcard is expanded within its own directory. */
async function expandSource(contextDir: string, source: string): Promise<string[]> {
  const normalized = posix.normalize(source).replace(/^\/+/, '').replace(/\/+$/, '') || '.';
  if (normalized === '..' || normalized.startsWith('../')) {
    throw new Error(`COPY source '${source}' is outside the build context`);
  }
  if (!/[*?[]/.test(normalized)) return [normalized];
  const dir = posix.dirname(normalized);
  const pattern = new RegExp(`^${globToRegExp(posix.basename(normalized))}$`);
  const names = (await readdir(join(contextDir, dir))).filter((name) => pattern.test(name)).sort();
  return names.map((name) => (dir === '.' ? name : `${dir}/${name}`));
}

async function hashTree(
  hash: ReturnType<typeof createHash>,
  contextDir: string,
  relativePath: string,
  ignored: (path: string) => boolean,
): Promise<void> {
  if (relativePath !== '.' && ignored(relativePath)) return;
  const absolute = join(contextDir, relativePath);
  let stats;
  try {
    stats = await lstat(absolute);
  } catch {
    throw new Error(`COPY source '${relativePath}' does not exist in the build context ${contextDir}`);
  }
  if (stats.isSymbolicLink()) {
    hash.update(`L ${relativePath} -> ${await readlink(absolute)}\n`);
  } else if (stats.isDirectory()) {
    hash.update(`D ${relativePath}\n`);
    for (const name of (await readdir(absolute)).sort()) {
      await hashTree(hash, contextDir, relativePath === '.' ? name : `${relativePath}/${name}`, ignored);
    }
  } else if (stats.isFile()) {
    hash.update(`F ${relativePath} ${stats.mode & 0o111 ? 'x' : '-'} ${stats.size}\n`);
    for await (const chunk of createReadStream(absolute)) hash.update(chunk as Buffer);
  }
}

/** sha256 (hex) of a file's content, streamed. */
export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
