import assert from 'node:assert/strict';
import { normalizePath, normalizeTarget, parseRequestTarget } from '../../mesh-model/request-target.ts';
import { explain } from '../../mesh-model/explain.ts';
import { buildMeshModel } from '../../mesh-model/translate.ts';
import { httpRoute, serviceWithEndpoints } from '../support/mesh-manifests.ts';

describe('request-target normalisation', () => {
  const path = (p: string, mergeSlashes = false): string => {
    const n = normalizePath(p, { mergeSlashes });
    assert.ok(n.ok, `${p}: ${n.ok ? '' : n.reason}`);
    return n.path;
  };
  const refused = (p: string): string => {
    const n = normalizePath(p);
    assert.ok(!n.ok, `${p} should be refused, got ${n.ok ? n.path : ''}`);
    return n.reason;
  };

  it('removes dot segments (RFC 3986 §5.2.4)', () => {
    assert.equal(path('/./admin'), '/admin');
    assert.equal(path('/public/../admin'), '/admin');
    assert.equal(path('/a/b/c/./../../g'), '/a/g');
    assert.equal(path('/a/./'), '/a/');
    assert.equal(path('/a/.'), '/a/');
    assert.equal(path('/a/b/..'), '/a/');
    assert.equal(path('/a/..'), '/');
    assert.equal(path('/.hidden/..x/x..'), '/.hidden/..x/x..');
    assert.equal(path('/'), '/');
  });

  it('decodes escaped unreserved characters, uppercases the others, then removes dot segments', () => {
    assert.equal(path('/%61dmin'), '/admin');
    assert.equal(path('/%41%5a%30%2d%2E%5f%7E'), '/AZ0-._~');
    assert.equal(path('/a%20b%3f%c3%a9'), '/a%20b%3F%C3%A9');
    assert.equal(path('/public/%2e%2e/admin'), '/admin');
    assert.equal(path('/%2E/admin'), '/admin');
    assert.equal(path('/%25%32%65'), '/%252e', 'decoded once: %25 stays an escape');
  });

  it('merges slashes only when asked', () => {
    assert.equal(path('//admin///x'), '//admin///x');
    assert.equal(path('//admin///x', true), '/admin/x');
    assert.equal(path('/a//../admin', true), '/admin');
    assert.equal(path('/a//../admin'), '/a/admin');
  });

  it('refuses what cannot be normalised safely', () => {
    assert.match(refused('/admin%2Fx'), /encoded slash/);
    const keep = normalizePath('/projects/group%2fname/%5c/../x', { escapedSlashes: 'keep' });
    assert.deepEqual(keep, { ok: true, path: '/projects/group%2Fname/x' });
    assert.match(refused('/a%2f..%2fadmin'), /encoded slash/);
    assert.match(refused('/a%5cadmin'), /backslash/);
    assert.match(refused('/a\\admin'), /backslash/);
    assert.match(refused('/a%00'), /control/);
    assert.match(refused('/a\u0000b'), /control/);
    assert.match(refused('/a b'), /space/);
    assert.match(refused('/%zz'), /malformed/);
    assert.match(refused('/%4'), /malformed/);
    assert.match(refused('/..'), /above the root/);
    assert.match(refused('/a/../../admin'), /above the root/);
    assert.match(refused('admin'), /start with \//);
  });

  it('is idempotent', () => {
    for (const p of ['/./admin', '/%61dmin/%2e/x/', '/a%20b/../c', '/x/%7e/..']) {
      const once = path(p);
      assert.equal(path(once), once);
    }
  });

  it('splits origin-form and absolute-form targets; the absolute form carries its authority', () => {
    assert.deepEqual(parseRequestTarget('/a?b=1?c'), {
      ok: true,
      path: '/a',
      query: 'b=1?c',
      authority: undefined,
    });
    assert.deepEqual(parseRequestTarget('http://other/admin?x'), {
      ok: true,
      path: '/admin',
      query: 'x',
      authority: 'other',
    });
    assert.deepEqual(parseRequestTarget('HTTP://other:8080'), {
      ok: true,
      path: '/',
      query: '',
      authority: 'other:8080',
    });
    assert.deepEqual(parseRequestTarget('http://[::1]:80?q'), {
      ok: true,
      path: '/',
      query: 'q',
      authority: '[::1]:80',
    });
    // The asterisk form (OPTIONS *) names nothing to route: 400 with this reason, never a 502.
    assert.deepEqual(parseRequestTarget('*'), {
      ok: false,
      reason: 'the request target * (asterisk form) names no resource a route can match',
    });
    for (const bad of [
      '*?x',
      'host:443',
      'http://user@other/',
      'http:///admin',
      'ftp://x/',
      'other/admin',
      '/a#frag',
      'http://a b/',
    ])
      assert.equal(parseRequestTarget(bad).ok, false, bad);
  });

  it('normalizeTarget keeps the received target when nothing changes', () => {
    const t = '/a/b?x=%2e%2e';
    assert.deepEqual(normalizeTarget(t), {
      ok: true,
      path: '/a/b',
      query: 'x=%2e%2e',
      authority: undefined,
      target: t,
    });
    assert.deepEqual(normalizeTarget('http://other/./admin?q'), {
      ok: true,
      path: '/admin',
      query: 'q',
      authority: 'other',
      target: '/admin?q',
    });
  });

  it('route explain matches and prints the normalised path, as the sidecar does', () => {
    const pod = { name: 'p', namespace: 'app', ip: '10.0.0.1', serviceAccount: 'default', meshed: false };
    const model = buildMeshModel([
      ...serviceWithEndpoints('app', 'svc', '10.96.0.1', [[80, 8080]], [pod]),
      ...serviceWithEndpoints('app', 'admin', '10.96.0.2', [[80, 8080]], [pod]),
      httpRoute('app', 'r', 'svc', [
        {
          matches: [{ path: { type: 'Exact', value: '/admin' } }],
          backendRefs: [{ name: 'admin', port: 80 }],
        },
      ]),
    ]);
    const run = (url: string, mergeSlashes = false) =>
      explain(model, { from: 'app', method: 'GET', url, headers: [], normalize: { mergeSlashes } });
    for (const url of ['http://svc/%61dmin', 'http://svc/x/%2E%2E/admin', 'http://svc/./admin?q=1']) {
      const e = run(url);
      assert.equal(e.action, 'forward', url);
      assert.equal(e.backend?.name, 'admin', url);
      assert.match(e.request.path, /^\/admin(\?q=1)?$/, url);
    }
    assert.equal(run('http://svc//admin').status, 404);
    assert.equal(run('http://svc//admin', true).backend?.name, 'admin');
    const refused = run('http://svc/../admin');
    assert.equal(refused.action, 'reject');
    assert.equal(refused.status, 400);
  });
});
