import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse } from 'yaml';
import { UsageError } from '../lib/usage-error.ts';
import { ManifestError, readManifests } from '../io/manifest-files.ts';
import { buildMeshModel } from '../mesh-model/translate.ts';
import { explain, ExplainInputError, type Explanation } from '../mesh-model/explain.ts';
import { isObject } from '../mesh-model/k8s-objects.ts';

// Test file format: docs/route-test-format.md.
interface TestCase {
  name?: string;
  from?: string;
  request?: { method?: string; url?: string; headers?: Record<string, unknown> };
  expect?: {
    action?: Explanation['action'];
    status?: number;
    route?: string | null;
    ruleIndex?: number;
    backend?: string;
    backends?: Record<string, number>;
    location?: string;
    path?: string;
    authority?: string;
    headers?: Record<string, string | null>;
    responseHeaders?: Partial<Explanation['responseHeaders']>;
  };
}

function backendName(b: { namespace: string; name: string }, namespace: string): string {
  return b.namespace === namespace ? b.name : `${b.namespace}/${b.name}`;
}

/** Differences between what a case expects and what the route engine decided; empty when it passes. */
export function checkCase(e: Explanation, expect: NonNullable<TestCase['expect']>): string[] {
  const diffs: string[] = [];
  const check = (what: string, want: unknown, got: unknown): void => {
    if (JSON.stringify(want) !== JSON.stringify(got))
      diffs.push(`${what}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
  };
  const ns = e.service.namespace;
  if (expect.action !== undefined) check('action', expect.action, e.action);
  if (expect.status !== undefined) check('status', expect.status, e.status);
  if (expect.route !== undefined) {
    const got = e.route
      ? expect.route?.includes('/')
        ? `${e.route.namespace}/${e.route.name}`
        : e.route.name
      : null;
    check('route', expect.route, got);
  }
  if (expect.ruleIndex !== undefined) check('ruleIndex', expect.ruleIndex, e.ruleIndex);
  const live = e.backends.filter((b) => b.weight > 0);
  if (expect.backend !== undefined)
    check(
      'backend',
      [expect.backend],
      live.map((b) => backendName(b, ns)),
    );
  if (expect.backends !== undefined) {
    const got = Object.fromEntries(live.map((b) => [backendName(b, ns), b.weight]));
    check(
      'backends',
      Object.fromEntries(Object.entries(expect.backends).sort()),
      Object.fromEntries(Object.entries(got).sort()),
    );
  }
  if (expect.location !== undefined) check('location', expect.location, e.location);
  if (expect.path !== undefined) check('path', expect.path, e.request.path);
  if (expect.authority !== undefined) check('authority', expect.authority, e.request.authority ?? null);
  for (const [name, want] of Object.entries(expect.headers ?? {})) {
    check(`header ${name.toLowerCase()}`, want, e.request.headers[name.toLowerCase()] ?? null);
  }
  const rh = expect.responseHeaders;
  if (rh?.set) check('responseHeaders.set', rh.set, e.responseHeaders.set);
  if (rh?.add) check('responseHeaders.add', rh.add, e.responseHeaders.add);
  if (rh?.remove) check('responseHeaders.remove', rh.remove, e.responseHeaders.remove);
  return diffs;
}

function loadTestFile(file: string): { manifests: string[]; from: string | undefined; cases: TestCase[] } {
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UsageError(`${file}: ${(err as Error).message.split('\n')[0]!}`);
  }
  if (!isObject(doc) || !Array.isArray(doc.cases))
    throw new UsageError(`${file}: expected a mapping with 'cases'`);
  const manifests = Array.isArray(doc.manifests) ? doc.manifests : [];
  if (manifests.length === 0 || !manifests.every((m) => typeof m === 'string')) {
    throw new UsageError(`${file}: 'manifests' must list files or directories`);
  }
  const base = dirname(file);
  return {
    manifests: manifests.map((m) => resolve(base, m)),
    from: typeof doc.from === 'string' ? doc.from : undefined,
    cases: doc.cases as TestCase[],
  };
}

export function runRouteTests(files: string[]): number {
  let failed = 0;
  let passed = 0;
  for (const file of files) {
    const t = loadTestFile(file);
    let model;
    try {
      model = buildMeshModel(readManifests(t.manifests));
    } catch (err) {
      if (err instanceof ManifestError) throw new UsageError(err.message);
      throw err;
    }
    process.stdout.write(`${file}\n`);
    t.cases.forEach((c, i) => {
      const name = c.name ?? `case ${i + 1}`;
      let diffs: string[];
      try {
        const from = c.from ?? t.from;
        if (!from) throw new ExplainInputError("no client namespace ('from' on the case or the file)");
        if (!c.request?.url) throw new ExplainInputError('request.url is required');
        const e = explain(model, {
          from,
          method: c.request.method ?? 'GET',
          url: c.request.url,
          headers: Object.entries(c.request.headers ?? {}).map(([k, v]) => [k, String(v)] as const),
        });
        diffs = checkCase(e, c.expect ?? {});
      } catch (err) {
        if (!(err instanceof ExplainInputError)) throw err;
        diffs = [`bad case: ${err.message}`];
      }
      if (diffs.length === 0) {
        passed++;
        process.stdout.write(`  ok    ${name}\n`);
      } else {
        failed++;
        process.stdout.write(`  FAIL  ${name}\n${diffs.map((d) => `          ${d}\n`).join('')}`);
      }
    });
  }
  process.stdout.write(`\n${passed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}
