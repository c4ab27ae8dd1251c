import assert from 'node:assert/strict';
import { buildMeshModel } from '../../mesh-model/translate.ts';
import { explain, type Explanation } from '../../mesh-model/explain.ts';
import { pickBackend } from '../../mesh-model/request-filters.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import { backend, route, service } from '../support/manifests.ts';

// Tables below are written from the Gateway API v1.6.1 CRD text and GEP-1294 (GAMMA), not from another mesh.

const base: K8sObject[] = [
  service('app', 'svc', [80, [8080, 'admin']], '10.96.0.10'),
  service('app', 'v1', [80]),
  service('app', 'v2', [80]),
  service('app', 'v3', [80]),
  service('other', 'remote', [80]),
];

function run(
  objects: K8sObject[],
  req: { url?: string; method?: string; from?: string; headers?: Record<string, string> } = {},
) {
  return explain(buildMeshModel([...base, ...objects]), {
    from: req.from ?? 'app',
    method: req.method ?? 'GET',
    url: req.url ?? 'http://svc/',
    headers: Object.entries(req.headers ?? {}),
  });
}

function target(e: Explanation): string {
  if (e.action !== 'forward') return `${e.action}${e.status === null ? '' : ` ${e.status}`}`;
  return e.backends
    .filter((b) => b.weight > 0)
    .map((b) => b.name)
    .join('+');
}

describe('route engine: attachment (GAMMA)', () => {
  const cases: { name: string; parent: Record<string, unknown>; url: string; want: string }[] = [
    { name: 'no port attaches to every port', parent: {}, url: 'http://svc:8080/', want: 'v1' },
    { name: 'port limits to that port', parent: { port: 8080 }, url: 'http://svc/', want: 'passthrough' },
    { name: 'port limits to that port (match)', parent: { port: 8080 }, url: 'http://svc:8080/', want: 'v1' },
    {
      name: 'sectionName names a Service port',
      parent: { sectionName: 'admin' },
      url: 'http://svc:8080/',
      want: 'v1',
    },
    {
      name: 'sectionName other port',
      parent: { sectionName: 'admin' },
      url: 'http://svc/',
      want: 'passthrough',
    },
    { name: 'group core accepted', parent: { group: 'core' }, url: 'http://svc/', want: 'v1' },
    {
      name: 'unknown sectionName attaches nowhere',
      parent: { sectionName: 'nope' },
      url: 'http://svc/',
      want: 'passthrough',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = route('app', 'r', [{ backendRefs: [backend('v1')] }], {
        parentRefs: [{ group: '', kind: 'Service', name: 'svc', ...c.parent }],
      });
      assert.equal(target(run([r], { url: c.url })), c.want);
    });
  }

  it('reports a parent that does not exist', () => {
    const model = buildMeshModel([
      ...base,
      route('app', 'r', [{ backendRefs: [backend('v1')] }], {
        parentRefs: [{ group: '', kind: 'Service', name: 'ghost' }],
      }),
    ]);
    assert.equal(model.routes[0]!.problems[0]!.reason, 'NoMatchingParent');
  });

  it('producer route applies to clients in every namespace', () => {
    const e = run([route('app', 'r', [{ backendRefs: [backend('v2')] }])], {
      from: 'elsewhere',
      url: 'http://svc.app/',
    });
    assert.equal(target(e), 'v2');
    assert.equal(e.route?.type, 'producer');
  });

  it('consumer route applies only to its own namespace and wins over producer routes', () => {
    const producer = route('app', 'p', [{ backendRefs: [backend('v1')] }]);
    const consumer = route('client', 'c', [{ backendRefs: [backend('v2', 1, 80, 'app')] }], {
      parentRefs: [{ group: '', kind: 'Service', name: 'svc', namespace: 'app' }],
    });
    const fromClient = run([producer, consumer], { from: 'client', url: 'http://svc.app/' });
    assert.equal(target(fromClient), 'v2');
    assert.equal(fromClient.route?.type, 'consumer');
    assert.equal(target(run([producer, consumer], { from: 'third', url: 'http://svc.app/' })), 'v1');
  });

  it('consumer route in a namespace without producer routes still only affects that namespace', () => {
    const consumer = route('client', 'c', [{ backendRefs: [backend('v2', 1, 80, 'app')] }], {
      parentRefs: [{ group: '', kind: 'Service', name: 'svc', namespace: 'app' }],
    });
    assert.equal(target(run([consumer], { from: 'third', url: 'http://svc.app/' })), 'passthrough');
  });

  it('mesh backendRefs cross namespaces without a ReferenceGrant', () => {
    assert.equal(
      target(run([route('app', 'r', [{ backendRefs: [backend('remote', 1, 80, 'other')] }])])),
      'remote',
    );
  });

  it('no route → passthrough to the Service; routes but no match → 404', () => {
    const none = run([]);
    assert.equal(none.action, 'passthrough');
    assert.deepEqual(none.backends, [{ namespace: 'app', name: 'svc', port: 80, weight: 1 }]);
    const miss = run([
      route('app', 'r', [
        { matches: [{ path: { type: 'Exact', value: '/only' } }], backendRefs: [backend('v1')] },
      ]),
    ]);
    assert.equal(target(miss), 'reject 404');
    assert.equal(miss.route, null);
  });

  it('resolves the Service by clusterIP and by every DNS form', () => {
    const r = [route('app', 'r', [{ backendRefs: [backend('v1')] }])];
    for (const url of [
      'http://10.96.0.10/',
      'http://svc/',
      'http://svc.app/',
      'http://svc.app.svc/',
      'http://svc.app.svc.cluster.local/',
    ]) {
      assert.equal(target(run(r, { url })), 'v1', url);
    }
  });
});

describe('route engine: match precedence (HTTPRouteRule.matches)', () => {
  const T1 = '2025-01-01T00:00:00Z';
  const T2 = '2025-06-01T00:00:00Z';
  const cases: { name: string; routes: K8sObject[]; req?: Parameters<typeof run>[1]; want: string }[] = [
    {
      name: 'Exact path beats a longer PathPrefix',
      routes: [
        route('app', 'a', [
          { matches: [{ path: { type: 'PathPrefix', value: '/foo/bar' } }], backendRefs: [backend('v1')] },
          { matches: [{ path: { type: 'Exact', value: '/foo/bar' } }], backendRefs: [backend('v2')] },
        ]),
      ],
      req: { url: 'http://svc/foo/bar' },
      want: 'v2',
    },
    {
      name: 'longest PathPrefix wins',
      routes: [
        route('app', 'a', [
          { matches: [{ path: { type: 'PathPrefix', value: '/foo' } }], backendRefs: [backend('v1')] },
          { matches: [{ path: { type: 'PathPrefix', value: '/foo/bar' } }], backendRefs: [backend('v2')] },
        ]),
      ],
      req: { url: 'http://svc/foo/bar/baz' },
      want: 'v2',
    },
    {
      name: 'method match beats none for equal paths',
      routes: [
        route('app', 'a', [
          {
            matches: [{ path: { value: '/x' }, headers: [{ name: 'a', value: '1' }] }],
            backendRefs: [backend('v1')],
          },
          { matches: [{ path: { value: '/x' }, method: 'GET' }], backendRefs: [backend('v2')] },
        ]),
      ],
      req: { url: 'http://svc/x', headers: { a: '1' } },
      want: 'v2',
    },
    {
      name: 'more header matches win',
      routes: [
        route('app', 'a', [
          { matches: [{ headers: [{ name: 'a', value: '1' }] }], backendRefs: [backend('v1')] },
          {
            matches: [
              {
                headers: [
                  { name: 'a', value: '1' },
                  { name: 'b', value: '2' },
                ],
              },
            ],
            backendRefs: [backend('v2')],
          },
        ]),
      ],
      req: { headers: { a: '1', b: '2' } },
      want: 'v2',
    },
    {
      name: 'more query matches win after headers tie',
      routes: [
        route('app', 'a', [
          { matches: [{ queryParams: [{ name: 'q', value: '1' }] }], backendRefs: [backend('v1')] },
          {
            matches: [
              {
                queryParams: [
                  { name: 'q', value: '1' },
                  { name: 'r', value: '2' },
                ],
              },
            ],
            backendRefs: [backend('v2')],
          },
        ]),
      ],
      req: { url: 'http://svc/?q=1&r=2' },
      want: 'v2',
    },
    {
      name: 'oldest route wins a full tie',
      routes: [
        route('app', 'a', [{ backendRefs: [backend('v1')] }], { created: T2 }),
        route('app', 'b', [{ backendRefs: [backend('v2')] }], { created: T1 }),
      ],
      want: 'v2',
    },
    {
      name: 'then namespace/name alphabetical',
      routes: [
        route('app', 'b', [{ backendRefs: [backend('v1')] }]),
        route('app', 'a', [{ backendRefs: [backend('v2')] }]),
      ],
      want: 'v2',
    },
    {
      name: 'then rule order within a route',
      routes: [route('app', 'a', [{ backendRefs: [backend('v3')] }, { backendRefs: [backend('v1')] }])],
      want: 'v3',
    },
    {
      name: 'precedence spans routes: a newer route with a longer prefix wins',
      routes: [
        route('app', 'old', [{ backendRefs: [backend('v1')] }], { created: T1 }),
        route('app', 'new', [{ matches: [{ path: { value: '/api' } }], backendRefs: [backend('v2')] }], {
          created: T2,
        }),
      ],
      req: { url: 'http://svc/api/x' },
      want: 'v2',
    },
    {
      name: 'a rule matches if any of its matches does',
      routes: [
        route('app', 'a', [
          { matches: [{ path: { value: '/a' } }, { path: { value: '/b' } }], backendRefs: [backend('v2')] },
          { backendRefs: [backend('v1')] },
        ]),
      ],
      req: { url: 'http://svc/b' },
      want: 'v2',
    },
  ];
  for (const c of cases) it(c.name, () => assert.equal(target(run(c.routes, c.req)), c.want));
});

describe('route engine: matching semantics', () => {
  const prefix = (value: string) => [
    route('app', 'a', [{ matches: [{ path: { type: 'PathPrefix', value } }], backendRefs: [backend('v1')] }]),
  ];
  const prefixCases: [string, string, boolean][] = [
    ['/v2', '/v2', true],
    ['/v2', '/v2/', true],
    ['/v2', '/v2/x', true],
    ['/v2', '/v2example', false],
    ['/v2/', '/v2', true],
    ['/v2/', '/v2/x', true],
    ['/', '/anything', true],
    ['/a/b', '/a', false],
  ];
  for (const [value, path, matches] of prefixCases) {
    it(`PathPrefix ${value} ${matches ? 'matches' : 'does not match'} ${path}`, () => {
      assert.equal(target(run(prefix(value), { url: `http://svc${path}` })), matches ? 'v1' : 'reject 404');
    });
  }

  it('Exact path does not match a longer path or a trailing slash', () => {
    const r = [
      route('app', 'a', [
        { matches: [{ path: { type: 'Exact', value: '/x' } }], backendRefs: [backend('v1')] },
      ]),
    ];
    assert.equal(target(run(r, { url: 'http://svc/x' })), 'v1');
    assert.equal(target(run(r, { url: 'http://svc/x/' })), 'reject 404');
    assert.equal(target(run(r, { url: 'http://svc/x?y=1' })), 'v1');
  });

  it('header names are case-insensitive, values case-sensitive', () => {
    const r = [
      route('app', 'a', [
        { matches: [{ headers: [{ name: 'X-Env', value: 'Prod' }] }], backendRefs: [backend('v1')] },
      ]),
    ];
    assert.equal(target(run(r, { headers: { 'x-ENV': 'Prod' } })), 'v1');
    assert.equal(target(run(r, { headers: { 'x-env': 'prod' } })), 'reject 404');
  });

  it('only the first of repeated header match names is considered', () => {
    const r = [
      route('app', 'a', [
        {
          matches: [
            {
              headers: [
                { name: 'x', value: '1' },
                { name: 'X', value: '2' },
              ],
            },
          ],
          backendRefs: [backend('v1')],
        },
      ]),
    ];
    assert.equal(target(run(r, { headers: { x: '1' } })), 'v1');
  });

  it('query params use the first value of a repeated name and are case-sensitive', () => {
    const r = [
      route('app', 'a', [
        { matches: [{ queryParams: [{ name: 'v', value: 'a b' }] }], backendRefs: [backend('v1')] },
      ]),
    ];
    assert.equal(target(run(r, { url: 'http://svc/?v=a%20b&v=c' })), 'v1');
    assert.equal(target(run(r, { url: 'http://svc/?v=c&v=a+b' })), 'reject 404');
    assert.equal(target(run(r, { url: 'http://svc/?V=a+b' })), 'reject 404');
  });

  it('method match', () => {
    const r = [route('app', 'a', [{ matches: [{ method: 'POST' }], backendRefs: [backend('v1')] }])];
    assert.equal(target(run(r, { method: 'POST' })), 'v1');
    assert.equal(target(run(r, { method: 'GET' })), 'reject 404');
  });

  it('RegularExpression path, header and query matches (full match)', () => {
    const r = [
      route('app', 'a', [
        {
          matches: [{ path: { type: 'RegularExpression', value: '/users/[0-9]+' } }],
          backendRefs: [backend('v1')],
        },
        {
          matches: [{ headers: [{ type: 'RegularExpression', name: 'x', value: 'canary-.*' }] }],
          backendRefs: [backend('v2')],
        },
        {
          matches: [{ queryParams: [{ type: 'RegularExpression', name: 'id', value: '[a-f]{3}' }] }],
          backendRefs: [backend('v3')],
        },
      ]),
    ];
    assert.equal(target(run(r, { url: 'http://svc/users/42' })), 'v1');
    assert.equal(target(run(r, { url: 'http://svc/users/42/x' })), 'reject 404');
    assert.equal(target(run(r, { headers: { x: 'canary-7' } })), 'v2');
    assert.equal(target(run(r, { url: 'http://svc/?id=abc' })), 'v3');
    assert.equal(target(run(r, { url: 'http://svc/?id=abcd' })), 'reject 404');
  });

  it('catastrophic-backtracking patterns run in linear time', () => {
    const r = [
      route('app', 'a', [
        {
          matches: [{ headers: [{ type: 'RegularExpression', name: 'x', value: '(a+)+$' }] }],
          backendRefs: [backend('v1')],
        },
      ]),
    ];
    const started = process.hrtime.bigint();
    assert.equal(target(run(r, { headers: { x: `${'a'.repeat(50_000)}!` } })), 'reject 404');
    // Not a timing assertion on speed, a guard against exponential blow-up (which would take ages).
    assert.ok(process.hrtime.bigint() - started < 10_000_000_000n);
  });

  it('regex syntax RE2 does not support drops the rule with a problem', () => {
    const model = buildMeshModel([
      ...base,
      route('app', 'a', [
        { matches: [{ path: { type: 'RegularExpression', value: '(a)\\1' } }], backendRefs: [backend('v1')] },
      ]),
    ]);
    assert.equal(model.routes[0]!.problems[0]!.type, 'Accepted');
  });

  it('a rule without matches is PathPrefix / and a backendRef without weight has weight 1', () => {
    const e = run([route('app', 'a', [{ backendRefs: [backend('v1'), backend('v2', 3)] }])], {
      url: 'http://svc/any/path',
    });
    assert.deepEqual(
      e.backends.map((b) => b.weight),
      [1, 3],
    );
  });
});

describe('route engine: backends', () => {
  it('weight 0 never gets traffic; shares follow weights', () => {
    const model = buildMeshModel([
      ...base,
      route('app', 'a', [{ backendRefs: [backend('v1', 90), backend('v2', 10), backend('v3', 0)] }]),
    ]);
    const rule = model.routes[0]!.rules[0]!;
    const counts: Record<string, number> = {};
    for (let i = 0; i < 1000; i++) {
      const b = pickBackend(rule, i / 1000)!;
      counts[b.name] = (counts[b.name] ?? 0) + 1;
    }
    assert.deepEqual(counts, { v1: 900, v2: 100 });
  });

  it('an unknown backend keeps its share (500) and is reported as ResolvedRefs', () => {
    const objs = [route('app', 'a', [{ backendRefs: [backend('v1'), backend('ghost')] }])];
    const e = run(objs);
    assert.equal(e.action, 'forward');
    assert.deepEqual(
      e.backends.map((b) => b.name),
      ['v1', 'ghost'],
    );
    assert.ok(e.warnings.some((w) => w.includes('ghost')));
    const problem = buildMeshModel([...base, ...objs]).routes[0]!.problems.find(
      (p) => p.type === 'ResolvedRefs',
    );
    assert.equal(problem?.reason, 'BackendNotFound');
  });

  const fail500: [string, object[]][] = [
    ['all backends invalid', [backend('ghost'), { name: 'v1', kind: 'Pod', port: 80 }]],
    ['a backendRef without a port', [{ name: 'v1' }]],
    ['no backendRefs at all', []],
    ['every weight 0', [backend('v1', 0)]],
  ];
  for (const [name, refs] of fail500) {
    it(`${name} → 500`, () =>
      assert.equal(target(run([route('app', 'a', [{ backendRefs: refs }])])), 'reject 500'));
  }
});

describe('route engine: filters', () => {
  const withFilters = (filters: object[], extra: object = {}) => [
    route('app', 'a', [
      { matches: [{ path: { value: '/old' } }], filters, backendRefs: [backend('v1')], ...extra },
    ]),
  ];

  it('RequestHeaderModifier set/add/remove (names case-insensitive)', () => {
    const e = run(
      withFilters([
        {
          type: 'RequestHeaderModifier',
          requestHeaderModifier: {
            set: [{ name: 'X-Set', value: 'new' }],
            add: [{ name: 'X-Add', value: 'two' }],
            remove: ['X-Gone'],
          },
        },
      ]),
      { url: 'http://svc/old', headers: { 'x-set': 'old', 'x-add': 'one', 'x-gone': 'bye' } },
    );
    assert.equal(e.request.headers['x-set'], 'new');
    assert.equal(e.request.headers['x-add'], 'one,two');
    assert.equal(e.request.headers['x-gone'], undefined);
  });

  it('ResponseHeaderModifier at rule level is reported', () => {
    const e = run(
      withFilters([
        {
          type: 'ResponseHeaderModifier',
          responseHeaderModifier: { set: [{ name: 'X-A', value: '1' }], remove: ['Server'] },
        },
      ]),
      { url: 'http://svc/old' },
    );
    assert.deepEqual(e.responseHeaders, { set: { 'x-a': '1' }, add: {}, remove: ['server'] });
  });

  it('backendRef-level header modifiers are compiled per backend', () => {
    const model = buildMeshModel([
      ...base,
      route('app', 'a', [
        {
          backendRefs: [
            {
              ...backend('v1'),
              filters: [
                {
                  type: 'RequestHeaderModifier',
                  requestHeaderModifier: { set: [{ name: 'x-b', value: 'v1' }] },
                },
              ],
            },
          ],
        },
      ]),
    ]);
    assert.deepEqual(model.routes[0]!.rules[0]!.backends[0]!.requestHeaders?.set, [['x-b', 'v1']]);
  });

  const redirects: {
    name: string;
    redirect: object;
    url: string;
    matchPath?: string;
    want: [number, string];
  }[] = [
    {
      name: 'default 302 keeps host, port and path',
      redirect: {},
      url: 'http://svc/old/x?q=1',
      want: [302, 'http://svc/old/x?q=1'],
    },
    {
      name: 'hostname',
      redirect: { hostname: 'example.com' },
      url: 'http://svc:8080/old',
      want: [302, 'http://example.com:8080/old'],
    },
    {
      name: 'scheme https uses 443, omitted',
      redirect: { scheme: 'https', statusCode: 301 },
      url: 'http://svc:8080/old',
      want: [301, 'https://svc/old'],
    },
    {
      name: 'explicit port',
      redirect: { port: 8443, scheme: 'https' },
      url: 'http://svc/old',
      want: [302, 'https://svc:8443/old'],
    },
    {
      name: 'explicit port 80 on http omitted',
      redirect: { port: 80 },
      url: 'http://svc:8080/old',
      want: [302, 'http://svc/old'],
    },
    {
      name: 'ReplaceFullPath',
      redirect: { path: { type: 'ReplaceFullPath', replaceFullPath: '/new' }, statusCode: 307 },
      url: 'http://svc/old/x',
      want: [307, 'http://svc/new'],
    },
    {
      name: 'ReplacePrefixMatch',
      redirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' }, statusCode: 308 },
      url: 'http://svc/old/x',
      want: [308, 'http://svc/new/x'],
    },
    {
      name: 'ReplacePrefixMatch with /',
      redirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' }, statusCode: 303 },
      url: 'http://svc/old/x',
      want: [303, 'http://svc/x'],
    },
    {
      name: 'ReplacePrefixMatch of the whole path',
      redirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new/' } },
      url: 'http://svc/old',
      want: [302, 'http://svc/new'],
    },
  ];
  for (const c of redirects) {
    it(`RequestRedirect: ${c.name}`, () => {
      const objs = [
        route('app', 'a', [
          {
            matches: [{ path: { value: '/old' } }],
            filters: [{ type: 'RequestRedirect', requestRedirect: c.redirect }],
          },
        ]),
      ];
      const e = run(objs, { url: c.url });
      assert.equal(e.action, 'redirect');
      assert.deepEqual([e.status, e.location], c.want);
    });
  }

  const rewrites: [string, object, string, string][] = [
    [
      'ReplaceFullPath',
      { path: { type: 'ReplaceFullPath', replaceFullPath: '/v2/all' } },
      'http://svc/old/x?q=1',
      '/v2/all?q=1',
    ],
    [
      'ReplacePrefixMatch',
      { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } },
      'http://svc/old/x',
      '/new/x',
    ],
    [
      'ReplacePrefixMatch trailing slash',
      { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new/' } },
      'http://svc/old/',
      '/new/',
    ],
    [
      'ReplacePrefixMatch to /',
      { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } },
      'http://svc/old',
      '/',
    ],
  ];
  for (const [name, rewrite, url, path] of rewrites) {
    it(`URLRewrite: ${name}`, () => {
      const e = run(withFilters([{ type: 'URLRewrite', urlRewrite: rewrite }]), { url });
      assert.equal(e.request.path, path);
    });
  }

  it('URLRewrite hostname sets Host', () => {
    const e = run(withFilters([{ type: 'URLRewrite', urlRewrite: { hostname: 'internal.example' } }]), {
      url: 'http://svc/old',
    });
    assert.equal(e.request.headers.host, 'internal.example');
  });

  it('RequestMirror percent and fraction; timeouts; retry', () => {
    const e = run(
      withFilters(
        [
          { type: 'RequestMirror', requestMirror: { backendRef: backend('v2'), percent: 25 } },
          {
            type: 'RequestMirror',
            requestMirror: { backendRef: backend('v3'), fraction: { numerator: 1, denominator: 8 } },
          },
        ],
        {
          timeouts: { request: '10s', backendRequest: '2s500ms' },
          retry: { attempts: 3, backoff: '100ms', codes: [503] },
        },
      ),
      { url: 'http://svc/old' },
    );
    assert.deepEqual(
      e.details.mirrors.map((m) => [m.backend.name, m.percent]),
      [
        ['v2', 25],
        ['v3', 12.5],
      ],
    );
    assert.equal(e.details.requestTimeoutMs, 10_000);
    assert.equal(e.details.backendRequestTimeoutMs, 2500);
    assert.deepEqual(e.details.retry, { attempts: 3, backoffMs: 100, codes: [503] });
  });

  const invalid: [string, object][] = [
    [
      'redirect together with backendRefs',
      {
        matches: [{ path: { value: '/old' } }],
        filters: [{ type: 'RequestRedirect', requestRedirect: {} }],
        backendRefs: [backend('v1')],
      },
    ],
    [
      'redirect and rewrite together',
      {
        filters: [
          { type: 'RequestRedirect', requestRedirect: {} },
          { type: 'URLRewrite', urlRewrite: {} },
        ],
      },
    ],
    [
      'repeated RequestHeaderModifier',
      {
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: {} },
          { type: 'RequestHeaderModifier', requestHeaderModifier: {} },
        ],
        backendRefs: [backend('v1')],
      },
    ],
    [
      'ReplacePrefixMatch without a PathPrefix match',
      {
        matches: [{ path: { type: 'Exact', value: '/x' } }],
        filters: [
          {
            type: 'URLRewrite',
            urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/y' } },
          },
        ],
        backendRefs: [backend('v1')],
      },
    ],
    ['unsupported filter type', { filters: [{ type: 'CORS', cors: {} }], backendRefs: [backend('v1')] }],
    [
      'backendRequest longer than request timeout',
      { timeouts: { request: '1s', backendRequest: '2s' }, backendRefs: [backend('v1')] },
    ],
    ['invalid duration', { timeouts: { request: '1 second' }, backendRefs: [backend('v1')] }],
    [
      'invalid path value',
      { matches: [{ path: { type: 'Exact', value: '/a//b' } }], backendRefs: [backend('v1')] },
    ],
    [
      'redirect status not allowed',
      { filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 200 } }] },
    ],
    ['weight out of range', { backendRefs: [backend('v1', -1)] }],
  ];
  for (const [name, rule] of invalid) {
    it(`invalid rule is dropped and reported: ${name}`, () => {
      const model = buildMeshModel([...base, route('app', 'a', [rule, { backendRefs: [backend('v3')] }])]);
      const r = model.routes[0]!;
      assert.equal(r.rules.length, 1);
      assert.equal(r.problems[0]!.type, 'PartiallyInvalid');
      assert.match(r.problems[0]!.message, /^Dropped Rule/);
    });
  }

  it('a route whose every rule is invalid is not accepted and does not attach', () => {
    const objs = [route('app', 'a', [{ filters: [{ type: 'CORS' }], backendRefs: [backend('v1')] }])];
    assert.equal(buildMeshModel([...base, ...objs]).routes[0]!.problems[0]!.type, 'Accepted');
    assert.equal(run(objs).action, 'passthrough');
  });

  it('ExtensionRef cannot be resolved: the rule answers 500 instead of skipping the filter', () => {
    assert.equal(
      target(
        run([
          route('app', 'a', [
            { filters: [{ type: 'ExtensionRef', extensionRef: {} }], backendRefs: [backend('v1')] },
          ]),
        ]),
      ),
      'reject 500',
    );
  });
});

describe('route engine: GRPCRoute', () => {
  const grpc = (name: string, rules: object[], created?: string) =>
    route('app', name, rules, { kind: 'GRPCRoute', ...(created ? { created } : {}) });

  const cases: {
    name: string;
    rules: object[];
    path: string;
    headers?: Record<string, string>;
    want: string;
  }[] = [
    {
      name: 'service and method exact',
      rules: [
        { matches: [{ method: { service: 'shop.Cart', method: 'Add' } }], backendRefs: [backend('v1')] },
      ],
      path: '/shop.Cart/Add',
      want: 'v1',
    },
    {
      name: 'service only matches every method',
      rules: [{ matches: [{ method: { service: 'shop.Cart' } }], backendRefs: [backend('v1')] }],
      path: '/shop.Cart/Remove',
      want: 'v1',
    },
    {
      name: 'service is not a prefix match',
      rules: [{ matches: [{ method: { service: 'shop.Cart' } }], backendRefs: [backend('v1')] }],
      path: '/shop.CartV2/Add',
      want: 'reject 404',
    },
    {
      name: 'longer service match wins, then method',
      rules: [
        { matches: [{ method: { method: 'Add' } }], backendRefs: [backend('v1')] },
        { matches: [{ method: { service: 'shop.Cart' } }], backendRefs: [backend('v2')] },
        { matches: [{ method: { service: 'shop.Cart', method: 'Add' } }], backendRefs: [backend('v3')] },
      ],
      path: '/shop.Cart/Add',
      want: 'v3',
    },
    {
      name: 'more header matches win on a tie',
      rules: [
        { matches: [{ method: { service: 's.S' } }], backendRefs: [backend('v1')] },
        {
          matches: [{ method: { service: 's.S' }, headers: [{ name: 'env', value: 'canary' }] }],
          backendRefs: [backend('v2')],
        },
      ],
      path: '/s.S/M',
      headers: { env: 'canary' },
      want: 'v2',
    },
    {
      name: 'regular expression on service and method',
      rules: [
        {
          matches: [{ method: { type: 'RegularExpression', service: 'shop\\..*', method: 'Get.*' } }],
          backendRefs: [backend('v1')],
        },
      ],
      path: '/shop.Cart/GetAll',
      want: 'v1',
    },
    {
      name: 'no matches matches every request',
      rules: [{ backendRefs: [backend('v2')] }],
      path: '/any.Svc/Any',
      want: 'v2',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const e = run([grpc('g', c.rules)], {
        method: 'POST',
        url: `http://svc${c.path}`,
        headers: { 'content-type': 'application/grpc', ...c.headers },
      });
      assert.equal(target(e), c.want);
    });
  }

  it('GRPCRoute takes precedence over HTTPRoute on the same Service port; they never merge', () => {
    const objs = [
      grpc('g', [{ matches: [{ method: { service: 'a.B' } }], backendRefs: [backend('v1')] }]),
      route('app', 'h', [{ backendRefs: [backend('v2')] }]),
    ];
    const e = run(objs, { method: 'POST', url: 'http://svc/other.Svc/X' });
    assert.equal(target(e), 'reject 404');
    assert.ok(
      run(objs, { method: 'POST', url: 'http://svc/a.B/M' }).warnings.some((w) =>
        w.includes('HTTPRoute app/h ignored'),
      ),
    );
  });

  it('HTTPRoute-only filters on a GRPCRoute drop the rule', () => {
    const model = buildMeshModel([
      ...base,
      grpc('g', [{ filters: [{ type: 'URLRewrite', urlRewrite: {} }], backendRefs: [backend('v1')] }]),
    ]);
    assert.equal(model.routes[0]!.problems[0]!.type, 'Accepted');
  });
});

describe('route engine: untrusted input never throws', () => {
  const junk: unknown[] = [
    null,
    42,
    { kind: 'HTTPRoute', apiVersion: 'gateway.networking.k8s.io/v1' },
    { kind: 'HTTPRoute', apiVersion: 'gateway.networking.k8s.io/v1', metadata: { name: 'x' }, spec: 'nope' },
    {
      kind: 'HTTPRoute',
      apiVersion: 'gateway.networking.k8s.io/v1',
      metadata: { name: 'x' },
      spec: { rules: [null, 1, { matches: 'x' }], parentRefs: [null, 'svc'] },
    },
    {
      kind: 'Service',
      apiVersion: 'v1',
      metadata: { name: 's' },
      spec: { ports: [null, { port: 'eighty' }, { port: 99999 }] },
    },
    {
      kind: 'HTTPRoute',
      apiVersion: 'gateway.networking.k8s.io/v1',
      metadata: { name: 'y', namespace: 'app' },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'svc' }],
        rules: [
          {
            matches: [{ headers: [{ name: 5 }] }],
            filters: [
              {
                type: 'RequestHeaderModifier',
                requestHeaderModifier: { set: [{ name: 'bad name', value: 1 }] },
              },
            ],
          },
        ],
      },
    },
  ];
  it('builds a model from junk objects', () => {
    assert.doesNotThrow(() =>
      buildMeshModel([...base, ...(junk.filter((j) => typeof j === 'object' && j !== null) as K8sObject[])]),
    );
    assert.equal(
      run(junk.filter((j) => typeof j === 'object' && j !== null) as K8sObject[]).action,
      'passthrough',
    );
  });
});
