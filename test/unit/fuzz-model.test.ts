import assert from 'node:assert/strict';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { buildProxyView } from '../../mesh-model/proxy-view.ts';
import {
  applyRequestEdits,
  applyResponseEdits,
  plan,
  type RequestPlan,
} from '../../mesh-model/request-plan.ts';
import type { PortRouting } from '../../mesh-model/port-routing.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import { envCount, fuzzSeed, Prng } from '../support/fuzz/prng.ts';
import { meshObjects, NAMESPACES, planRequest } from '../support/fuzz/route-objects.ts';

// Generated meshes (Services, EndpointSlices, HTTPRoutes and GRPCRoutes, plausible and junk) through the
// model translation and plan(): nothing throws, and every plan is something the sidecar can execute as is.
// Reproduce a failure with the seed and case number it prints: SLUICE_FUZZ_SEED=<seed> (docs/security.md).

const seed = fuzzSeed();
const cases = envCount('SLUICE_FUZZ_MODELS', 1500);
const requestsPerRouting = 4;

/** The objects of a failing case, cut to a size a CI log can hold (the seed reproduces all of them). */
function show(objects: unknown): string {
  const text = JSON.stringify(objects, (_k, v: unknown) =>
    typeof v === 'string' && v.length > 80 ? `${v.slice(0, 40)}…(${v.length})` : v,
  );
  return text.length > 6000 ? `${text.slice(0, 6000)}…` : text;
}

function checkHeaders(headers: Record<string, unknown>, where: string): void {
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    assert.doesNotThrow(() => validateHeaderName(name), `${where}: header name ${JSON.stringify(name)}`);
    for (const v of (Array.isArray(value) ? value : [value]) as unknown[]) {
      assert.ok(typeof v === 'string', `${where}: header ${name} is not a string`);
      assert.doesNotThrow(
        () => validateHeaderValue(name, v),
        `${where}: header ${name}: ${JSON.stringify(v)}`,
      );
    }
  }
}

function checkPlan(p: RequestPlan, where: string): void {
  if (p.kind === 'reply') {
    assert.ok(
      Number.isInteger(p.status) && p.status >= 300 && p.status <= 599,
      `${where}: status ${p.status}`,
    );
    assert.equal(typeof p.message, 'string', where);
    if (p.cause === 'redirect') {
      assert.equal(typeof p.location, 'string', `${where}: a redirect without location`);
      checkHeaders({ location: p.location }, where);
    }
    return;
  }
  assert.equal(p.kind, 'forward', where);
  assert.ok(typeof p.method === 'string' && p.method !== '', `${where}: method`);
  assert.ok(typeof p.path === 'string' && p.path.startsWith('/'), `${where}: path ${JSON.stringify(p.path)}`);
  assert.equal(typeof p.authority, 'string', `${where}: authority`);
  assert.ok(p.backend.namespace !== '' && p.backend.name !== '', `${where}: backend`);
  assert.ok(
    Number.isInteger(p.backend.port) && p.backend.port > 0 && p.backend.port < 65536,
    `${where}: port`,
  );
  for (const m of p.mirrors) assert.ok(m.fraction >= 0 && m.fraction <= 1, `${where}: mirror ${m.fraction}`);
  for (const t of [p.requestTimeoutMs, p.backendRequestTimeoutMs]) {
    assert.ok(t === undefined || (Number.isFinite(t) && t >= 0), `${where}: timeout ${t}`);
  }
  // What the sidecar does with a plan: its header edits must give headers Node accepts.
  const h1 = applyRequestEdits(p, { 'x-request': 'a' }, false);
  checkHeaders(h1, `${where} (request edits)`);
  checkHeaders(applyRequestEdits(p, { 'x-request': 'a' }, true), `${where} (request edits, h2)`);
  checkHeaders(applyResponseEdits(p, { 'content-type': 'text/plain' }), `${where} (response edits)`);
}

function run(kind: 'typed' | 'any', count: number): void {
  const started = Date.now();
  const root = new Prng(seed);
  let plans = 0;
  let forwards = 0;
  for (let i = 0; i < count; i++) {
    const r = root.fork();
    const junkRate = [0, 0.02, 0.1, 0.3][i % 4]!;
    const objects: K8sObject[] = meshObjects(r, junkRate, kind);
    const where = `seed ${seed} case ${i} (${kind})`;
    for (const namespace of NAMESPACES) {
      let view;
      try {
        view = buildProxyView(objects, namespace, 'cluster.local');
      } catch (err) {
        assert.fail(`${where}: buildProxyView threw: ${(err as Error).stack}\nobjects: ${show(objects)}`);
      }
      const seen = new Set<PortRouting>();
      for (const routing of view.byDestination.values()) {
        if (seen.has(routing)) continue;
        seen.add(routing);
        for (let k = 0; k < requestsPerRouting; k++) {
          const req = planRequest(r);
          let p: RequestPlan;
          try {
            p = plan(routing, req, k % 2 === 0 ? r.next() : () => r.next());
          } catch (err) {
            assert.fail(
              `${where}: plan threw for ${JSON.stringify(req)}: ${(err as Error).stack}\nobjects: ${show(objects)}`,
            );
          }
          checkPlan(p, `${where} ${req.method} ${req.path}`);
          plans++;
          if (p.kind === 'forward') forwards++;
        }
      }
    }
  }
  console.log(
    `      fuzz-model: seed ${seed}, ${count} meshes (${kind} junk), ${plans} plans (${forwards} forward), ${Date.now() - started} ms`,
  );
  assert.ok(plans > count, 'the generator should yield routable Services');
}

describe(`fuzz: generated route objects through the model (seed ${seed}, ${cases} meshes)`, () => {
  it(`${cases} meshes whose junk keeps the schema's types: no throw, every plan executable`, function () {
    this.timeout(Math.max(60_000, cases * 50));
    run('typed', cases);
  });

  // A null or wrongly typed item inside a list (`filters: [null]`, `apiVersion: 5`, ...), which the API
  // server's CRD validation keeps out but manifests on disk do not, leaves that object out with a warning.
  it(`${cases} meshes with junk of any type (null items, wrong types): no throw`, function () {
    this.timeout(Math.max(60_000, cases * 50));
    run('any', cases);
  });
});
