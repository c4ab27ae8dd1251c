import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';

// The CLI as users run it: a real process, the contract on stdout, exit codes, stderr one line.
function sluice(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/sluice.js', ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const KEYS = [
  'service',
  'route',
  'ruleIndex',
  'action',
  'status',
  'location',
  'backends',
  'request',
  'responseHeaders',
  'warnings',
  // extensions
  'backend',
];

describe('sluice route explain (CLI contract)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
    writeFileSync(join(dir, 'broken.yaml'), 'kind: Service\nmetadata: {name: [\n');
    writeFileSync(
      join(dir, 'gateway.yaml'),
      `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: sluice.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: sluice
  listeners: [{name: web, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: v1
kind: Service
metadata: {name: front, namespace: shop}
spec: {clusterIP: 10.96.1.2, ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: front, namespace: shop}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  hostnames: [shop.example.com]
  rules: [{backendRefs: [{name: front, port: 80}]}]
`,
    );
    writeFileSync(
      join(dir, 'grpc.yaml'),
      `apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {clusterIP: 10.96.1.1, ports: [{port: 50051, name: grpc}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: cart, namespace: shop}
spec:
  parentRefs: [{group: '', kind: Service, name: cart}]
  rules:
    - matches: [{method: {service: shop.Cart, method: Add}}]
      backendRefs: [{name: cart, port: 50051}]
`,
    );
    writeFileSync(
      join(dir, 'not-ready.yaml'),
      `apiVersion: v1
kind: Service
metadata: {name: echo, namespace: app}
spec: {clusterIP: 10.96.0.10, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: app, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: false, serving: false, terminating: false}
  targetRef: {kind: Pod, name: echo-a, namespace: app}
- addresses: [10.0.0.2]
  conditions: {ready: false, serving: false, terminating: false}
  targetRef: {kind: Pod, name: echo-b, namespace: app}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-a, namespace: app}
spec: {containers: [{name: echo}]}
status: {conditions: [{type: Ready, status: "False"}, {type: ContainersReady, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-b, namespace: app}
spec: {containers: [{name: echo}]}
status: {conditions: [{type: Ready, status: "False"}, {type: ContainersReady, status: "False"}]}
`,
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const explainGrpc = (url: string) =>
    sluice(
      'route',
      'explain',
      '-f',
      join(dir, 'grpc.yaml'),
      '--from',
      'shop',
      '--output',
      'json',
      'POST',
      url,
    );

  it('prints exactly one JSON object with the contract keys', () => {
    const r = sluice(
      'route',
      'explain',
      '-f',
      'examples/reviews',
      '--from',
      'shop',
      '-H',
      'X-Tester: true',
      '--output',
      'json',
      'GET',
      'http://reviews/x?y=1',
    );
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(out), KEYS);
    assert.deepEqual(out.route, { kind: 'HTTPRoute', namespace: 'shop', name: 'reviews', type: 'producer' });
    assert.deepEqual(out.request, {
      method: 'GET',
      path: '/x?y=1',
      headers: { host: 'reviews', 'x-tester': 'true' },
      authority: 'reviews',
    });
  });

  it('explains GRPCRoute requests', () => {
    const r = explainGrpc('http://cart:50051/shop.Cart/Add');
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { route: { kind: string }; action: string };
    assert.equal(out.route.kind, 'GRPCRoute');
    assert.equal(out.action, 'forward');
  });

  it("lists each backend's endpoints with their tier (no ready one: the node-unreachable ones are used)", () => {
    const r = sluice(
      'route',
      'explain',
      '-f',
      join(dir, 'not-ready.yaml'),
      '--from',
      'app',
      'GET',
      'http://echo/',
    );
    assert.equal(r.code, 0, r.stderr);
    const endpoints = [
      'Endpoints:',
      '  app/echo:80  10.0.0.1:8080  node-unreachable (pod app/echo-a)',
      '  app/echo:80  10.0.0.2:8080  unused (pod app/echo-b)',
    ];
    assert.ok(r.stdout.includes(`${endpoints.join('\n')}\n`), r.stdout);
  });

  it('a 404 is an explained request (exit 0)', () => {
    const r = explainGrpc('http://cart:50051/shop.Cart/Remove');
    assert.equal(r.code, 0);
    assert.equal((JSON.parse(r.stdout) as { status: number }).status, 404);
  });

  it('explains a request entering a Gateway (--gateway): listener and plan as YAML', () => {
    const explainAtGateway = (url: string) =>
      sluice('route', 'explain', '-f', join(dir, 'gateway.yaml'), '--gateway', 'infra/gw', 'GET', url);
    const r = explainAtGateway('http://shop.example.com:8080/a?b=1');
    assert.equal(r.code, 0, r.stderr);
    const out = parse(r.stdout) as { listener: string; forward: { backend: string; path: string } };
    assert.equal(out.listener, 'web');
    assert.deepEqual([out.forward.backend, out.forward.path], ['shop/front:80', '/a?b=1']);
    const miss = explainAtGateway('http://other.test:8080/');
    assert.equal((parse(miss.stdout) as { reply: { status: number } }).reply.status, 404);
  });

  const bad: [string, string[], RegExp][] = [
    [
      'unknown Gateway',
      ['-f', 'GATEWAY', '--gateway', 'infra/nope', 'GET', 'http://a/'],
      /Gateway infra\/nope not found/,
    ],
    ['malformed --gateway', ['-f', 'GATEWAY', '--gateway', 'gw', 'GET', 'http://a/'], /NAMESPACE\/NAME/],
    ['unparseable YAML', ['-f', 'BROKEN', '--from', 'x', 'GET', 'http://a/'], /broken\.yaml:\d+:\d+/],
    [
      'unknown Service',
      ['-f', 'examples/reviews', '--from', 'shop', 'GET', 'http://nope/'],
      /unknown Service shop\/nope/,
    ],
    ['malformed URL', ['-f', 'examples/reviews', '--from', 'shop', 'GET', 'not a url'], /malformed URL/],
    [
      'unknown port',
      ['-f', 'examples/reviews', '--from', 'shop', 'GET', 'http://reviews:81/'],
      /has no port 81/,
    ],
    ['missing file', ['-f', '/nonexistent', '--from', 'shop', 'GET', 'http://reviews/'], /no such file/],
    ['missing --from', ['-f', 'examples/reviews', 'GET', 'http://reviews/'], /--from/],
    [
      'malformed header',
      ['-f', 'examples/reviews', '--from', 'shop', '-H', 'novalue', 'GET', 'http://reviews/'],
      /malformed header/,
    ],
    ['unknown flag', ['--bogus'], /Unknown option/],
  ];
  for (const [name, args, message] of bad) {
    it(`${name} → exit 2, one line on stderr, nothing on stdout`, () => {
      const r = sluice(
        'route',
        'explain',
        ...args.map((a) =>
          a === 'BROKEN' ? join(dir, 'broken.yaml') : a === 'GATEWAY' ? join(dir, 'gateway.yaml') : a,
        ),
      );
      assert.equal(r.code, 2);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    });
  }
});

describe('sluice route test', () => {
  it('runs the shipped example and passes', () => {
    const r = sluice('route', 'test', 'examples/reviews/routes.test.yaml');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /5 passed, 0 failed/);
  });

  it("passes the demo storefront's route tests", () => {
    const r = sluice('route', 'test', 'demo/storefront/routes.test.yaml');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /3 passed, 0 failed/);
  });

  it('fails with a readable diff when an expectation is wrong', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-rt-'));
    try {
      const file = join(dir, 't.yaml');
      writeFileSync(
        file,
        `manifests: [${join(process.cwd(), 'examples/reviews/mesh.yaml')}]\nfrom: shop\ncases:\n  - name: wrong\n    request: {url: http://reviews/}\n    expect: {backend: reviews-v1}\n`,
      );
      const r = sluice('route', 'test', file);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /FAIL {2}wrong/);
      assert.match(r.stdout, /backend: expected \["reviews-v1"\]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sluice proxy limit flags', () => {
  it('a malformed limit is a usage error (exit 2) naming the flag, before anything starts', () => {
    const r = sluice('proxy', '--header-timeout-ms', '5s');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--header-timeout-ms must be a whole number, got '5s'/);
  });

  it('--help lists the limits', () => {
    const r = sluice('proxy', '--help');
    for (const flag of ['--header-timeout-ms', '--max-upstream-connections', '--merge-slashes'])
      assert.ok(r.stdout.includes(flag), flag);
  });
});
