import assert from 'node:assert/strict';
import { buildMeshModel } from '../../mesh-model/translate.ts';
import { buildPortRouting } from '../../mesh-model/port-routing.ts';
import { explain } from '../../mesh-model/explain.ts';
import { plan, type PlanRequest } from '../../mesh-model/request-plan.ts';
import type { K8sObject, RouteFilter, RouteRuleSpec } from '../../mesh-model/k8s-objects.ts';
import { backend, route, service } from '../support/manifests.ts';

// The request plan's decisions where explain and the sidecar used to disagree (the golden corpus in
// test/golden covers the filters one by one).

const base: K8sObject[] = [
  service('app', 'svc', [80], '10.96.0.10'),
  service('app', 'v1', [80]),
  service('app', 'v2', [80]),
];

function model(rules: RouteRuleSpec[], parentRefs?: Parameters<typeof route>[3]) {
  return buildMeshModel([...base, route('app', 'r', rules, parentRefs)]);
}

function request(path: string): PlanRequest {
  return { method: 'GET', path, query: '', scheme: 'http', authority: 'svc', headers: { host: 'svc' } };
}

const setHost: RouteFilter = {
  type: 'RequestHeaderModifier',
  requestHeaderModifier: { set: [{ name: 'Host', value: 'upstream.example' }] },
};

describe('request plan', () => {
  it('a Host set by RequestHeaderModifier is the upstream authority, in explain too', () => {
    const m = model([{ filters: [setHost], backendRefs: [backend('v1')] }]);
    const svc = m.services.get('app/svc')!;
    const p = plan(buildPortRouting(m, 'app', svc, 80), request('/'), 0);
    assert.ok(p.kind === 'forward');
    assert.equal(p.authority, 'upstream.example');
    const e = explain(m, { from: 'app', method: 'GET', url: 'http://svc/', headers: [] });
    assert.equal(e.request.authority, 'upstream.example');
    assert.equal(e.request.headers.host, 'upstream.example');
  });

  it('a redirect without scheme keeps http, even when explain is given an https:// URL (with a warning)', () => {
    const m = model([{ filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'b.example' } }] }]);
    const e = explain(m, { from: 'app', method: 'GET', url: 'https://svc:80/x', headers: [] });
    assert.equal(e.location, 'http://b.example/x');
    assert.ok(e.warnings.some((w) => w.includes('plaintext HTTP')));
  });

  it('the random source is consulted only when several backends can be chosen', () => {
    let calls = 0;
    const random = (): number => {
      calls++;
      return 0.99;
    };
    const one = model([{ backendRefs: [backend('v1')] }]);
    plan(buildPortRouting(one, 'app', one.services.get('app/svc')!, 80), request('/'), random);
    assert.equal(calls, 0);
    const split = model([{ backendRefs: [backend('v1', 50), backend('v2', 50)] }]);
    const p = plan(buildPortRouting(split, 'app', split.services.get('app/svc')!, 80), request('/'), random);
    assert.equal(calls, 1);
    assert.equal(p.kind === 'forward' && p.backend.name, 'v2');
  });

  it('explain applies backend-level filters when one backend can be chosen, not when several can', () => {
    const withFilter = (name: string, weight?: number) => ({
      ...backend(name, weight),
      filters: [
        { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-b', value: name }] } },
      ],
    });
    const single = explain(model([{ backendRefs: [withFilter('v1'), withFilter('v2', 0)] }]), {
      from: 'app',
      method: 'GET',
      url: 'http://svc/',
      headers: [],
    });
    assert.equal(single.request.headers['x-b'], 'v1');
    assert.deepEqual(single.backend, { namespace: 'app', name: 'v1', port: 80, weight: 1 });
    const split = explain(model([{ backendRefs: [withFilter('v1'), withFilter('v2')] }]), {
      from: 'app',
      method: 'GET',
      url: 'http://svc/',
      headers: [],
    });
    assert.equal(split.request.headers['x-b'], undefined);
    assert.equal(split.backend, null);
    assert.equal(split.details.backendFilters.length, 2);
  });

  it('a Service parentRef without group does not attach (CRD default), and explain says why', () => {
    const m = model([{ backendRefs: [backend('v1')] }], { parentRefs: [{ kind: 'Service', name: 'svc' }] });
    const e = explain(m, { from: 'app', method: 'GET', url: 'http://svc/', headers: [] });
    assert.equal(e.action, 'passthrough');
    assert.ok(
      e.warnings.some((w) =>
        w.includes(
          'parentRef without group defaults to gateway.networking.k8s.io; write group: "" for a Service',
        ),
      ),
      e.warnings.join('\n'),
    );
    const core = model([{ backendRefs: [backend('v1')] }], {
      parentRefs: [{ group: 'core', kind: 'Service', name: 'svc' }],
    });
    assert.equal(
      explain(core, { from: 'app', method: 'GET', url: 'http://svc/', headers: [] }).action,
      'forward',
    );
  });

  it('an invalid backend among several is a 500 for its share in the plan, a warning in explain', () => {
    const m = model([{ backendRefs: [backend('ghost'), backend('v1')] }]);
    const routing = buildPortRouting(m, 'app', m.services.get('app/svc')!, 80);
    const bad = plan(routing, request('/'), 0.1);
    assert.equal(bad.kind === 'reply' && bad.status, 500);
    assert.equal(plan(routing, request('/'), 0.9).kind, 'forward');
    const e = explain(m, { from: 'app', method: 'GET', url: 'http://svc/', headers: [] });
    assert.equal(e.action, 'forward');
    assert.equal(e.status, null);
  });

  it('explain takes the authority from a Host header given with -H, as the sidecar does', () => {
    const m = model([{ filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 301 } }] }]);
    const e = explain(m, {
      from: 'app',
      method: 'GET',
      url: 'http://svc/a',
      headers: [['Host', 'front.example']],
    });
    assert.equal(e.location, 'http://front.example/a');
  });
});
