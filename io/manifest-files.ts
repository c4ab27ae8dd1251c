import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { isObject, type K8sObject } from '../mesh-model/k8s-objects.ts';

/** A manifest that cannot be read or parsed; the message names the file (and line when known). */
export class ManifestError extends Error {
  override name = 'ManifestError';
}

/** The YAML parser, loaded when a manifest is first parsed: a sidecar fed by the controller never needs it. */
let yaml: typeof import('yaml') | undefined;
const loadYaml = (): typeof import('yaml') =>
  (yaml ??= createRequire(import.meta.url)('yaml') as typeof import('yaml'));

const MANIFEST_FILE = /\.(ya?ml|json)$/i;

/** Lists manifest files: a file as given, a directory recursively (sorted, so results are stable). */
export function listManifestFiles(path: string): string[] {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw new ManifestError(`cannot read ${path}: no such file or directory`);
  }
  if (!stat.isDirectory()) return [path];
  return readdirSync(path, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((e) => {
      const full = join(path, e.name);
      if (e.isDirectory()) return listManifestFiles(full);
      return MANIFEST_FILE.test(e.name) ? [full] : [];
    });
}

/** Parses multi-document YAML or JSON text into objects; `kind: List` is expanded. */
export function parseManifests(text: string, source: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of loadYaml().parseAllDocuments(text, { prettyErrors: true, uniqueKeys: false })) {
    if ('errors' in doc && doc.errors.length > 0) {
      const err = doc.errors[0]!;
      const where = err.linePos?.[0] ? `:${err.linePos[0].line}:${err.linePos[0].col}` : '';
      throw new ManifestError(`${source}${where}: ${err.message.split('\n')[0]!}`);
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) continue;
    if (!isObject(value)) throw new ManifestError(`${source}: a document is not an object`);
    if (
      value.kind === 'List' ||
      (typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items))
    ) {
      for (const item of Array.isArray(value.items) ? value.items : []) if (isObject(item)) out.push(item);
    } else {
      out.push(value);
    }
  }
  return out;
}

/** The text of every manifest file under `paths`, in a stable order. */
export function readManifestTexts(paths: readonly string[]): { file: string; text: string }[] {
  return paths.flatMap(listManifestFiles).map((file) => {
    try {
      return { file, text: readFileSync(file, 'utf8') };
    } catch (err) {
      throw new ManifestError(`cannot read ${file}: ${(err as Error).message}`);
    }
  });
}

export function readManifests(paths: readonly string[]): K8sObject[] {
  return readManifestTexts(paths).flatMap(({ file, text }) => parseManifests(text, file));
}
