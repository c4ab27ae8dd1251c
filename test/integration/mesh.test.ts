import assert from 'node:assert/strict';
import { MeshFixture, tearDownMesh, APP_PORT, TRUST_DOMAIN, type MeshPod } from '../support/mesh-fixture.ts';
import { httpRoute, podObject, serviceWithEndpoints, type PodRef } from '../support/mesh-manifests.ts';
import { netnsUnavailableReason, nodeBin } from '../support/netns.ts';
import { waitFor } from '../support/wait-for.ts';
import { addPods } from '../support/mesh-pods.ts';
import { countAnswers } from '../support/answer-counts.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';

// The sidecar data plane end to end: pods are network namespaces with real iptables capture, sidecars are
// `sluice proxy` processes running as the proxy uid, apps are echo servers. Clients call Service ClusterIPs.

const NS = 'shop';
const VIP = {
  reviews: '10.96.0.10',
  v1: '10.96.0.11',
  v2: '10.96.0.12',
  plain: '10.96.0.20',
  strict: '10.96.0.30',
  cart: '10.96.0.40',
  tcp: '10.96.0.50',
  nomatch: '10.96.0.60',
  client: '10.96.0.70',
  impostor: '10.96.0.80',
  ipv6: 'fd96::10',
};

describe('sidecar data plane in network namespaces', function () {
  this.timeout(120_000);
  const reason = netnsUnavailableReason();
  let mesh: MeshFixture;
  const refs = new Map<string, PodRef>();
  const ipv6Of = new Map<string, string>();

  function manifests(reviewsRules?: unknown[]): K8sObject[] {
    const r = (name: string): PodRef => refs.get(name)!;
    const svc = (
      name: string,
      vip: string,
      pods: string[],
      ports: [number, number, string?][] = [[80, APP_PORT, 'http']],
      appProtocol?: string,
    ) => serviceWithEndpoints(NS, name, vip, ports, pods.map(r), appProtocol);
    return [
      ...[...refs.values()].map(podObject),
      ...svc('reviews', VIP.reviews, ['v1', 'v2']),
      ...svc('reviews-v1', VIP.v1, ['v1']),
      ...svc('reviews-v2', VIP.v2, ['v2']),
      ...svc('plain', VIP.plain, ['plain']),
      ...svc('strict', VIP.strict, ['strict']),
      ...svc('cart', VIP.cart, ['v1', 'v2'], [[50051, APP_PORT, 'grpc']]),
      ...svc('tcp', VIP.tcp, ['v1'], [[7000, 7000, 'tcp']]),
      ...svc('nomatch', VIP.nomatch, ['v1']),
      ...svc('client', VIP.client, ['client']),
      ...svc('impostor', VIP.impostor, ['impostor']),
      ...serviceWithEndpoints(
        NS,
        'reviews-ipv6',
        VIP.ipv6,
        [[80, APP_PORT, 'http']],
        [{ ...r('v2'), ip: ipv6Of.get('v2')! }],
      ),
      httpRoute(
        NS,
        'reviews',
        'reviews',
        reviewsRules ?? [
          {
            matches: [{ headers: [{ name: 'x-canary', value: 'always' }] }],
            backendRefs: [{ name: 'reviews-v2', port: 80 }],
          },
          {
            matches: [{ path: { type: 'PathPrefix', value: '/v1-only' } }],
            backendRefs: [{ name: 'reviews-v1', port: 80 }],
          },
          {
            matches: [{ queryParams: [{ name: 'pin', value: 'v2' }] }],
            backendRefs: [{ name: 'reviews-v2', port: 80 }],
          },
          {
            matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
            filters: [
              {
                type: 'RequestRedirect',
                requestRedirect: {
                  path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' },
                  statusCode: 301,
                },
              },
            ],
          },
          {
            matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
            filters: [
              {
                type: 'URLRewrite',
                urlRewrite: {
                  hostname: 'reviews.internal',
                  path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2/api' },
                },
              },
              {
                type: 'RequestHeaderModifier',
                requestHeaderModifier: {
                  set: [{ name: 'x-set', value: 'yes' }],
                  add: [{ name: 'x-add', value: 'b' }],
                  remove: ['x-drop'],
                },
              },
              {
                type: 'ResponseHeaderModifier',
                responseHeaderModifier: { set: [{ name: 'x-resp', value: 'from-route' }] },
              },
            ],
            backendRefs: [{ name: 'reviews-v1', port: 80 }],
          },
          {
            backendRefs: [
              { name: 'reviews-v1', port: 80, weight: 70 },
              { name: 'reviews-v2', port: 80, weight: 30 },
            ],
          },
        ],
      ),
      httpRoute(NS, 'nomatch', 'nomatch', [
        {
          matches: [{ path: { type: 'Exact', value: '/only' } }],
          backendRefs: [{ name: 'reviews-v1', port: 80 }],
        },
      ]),
      httpRoute(
        NS,
        'cart',
        'cart',
        [
          {
            matches: [{ method: { service: 'shop.Cart', method: 'Add' } }],
            backendRefs: [{ name: 'reviews-v2', port: 80 }],
          },
          { backendRefs: [{ name: 'reviews-v1', port: 80 }] },
        ],
        'GRPCRoute',
      ),
    ];
  }

  before(async function () {
    if (reason) return this.skip();
    mesh = await MeshFixture.create({ ipv6: true });
    const specs = [
      { name: 'client', serviceAccount: 'client', meshed: true },
      { name: 'v1', serviceAccount: 'reviews', meshed: true, tcpPort: 7000 },
      { name: 'v2', serviceAccount: 'reviews', meshed: true },
      { name: 'plain', serviceAccount: 'plain', meshed: false },
      { name: 'strict', serviceAccount: 'strict', meshed: true, mode: 'STRICT' as const },
      { name: 'impostor', serviceAccount: 'impostor', certServiceAccount: 'someone-else', meshed: true },
    ];
    for (const ref of await addPods(mesh, NS, specs)) {
      refs.set(ref.name, ref);
      const ip6 = mesh.pods.get(ref.name)!.ip6;
      if (ip6) ipv6Of.set(ref.name, ip6);
    }
    mesh.writeManifests(manifests());
    await mesh.startSidecars();
  });

  tearDownMesh(() => mesh);

  const get = (path: string, headers: Record<string, string> = {}, vip = VIP.reviews, port = 80) =>
    mesh.client('client', { kind: 'http1', url: `http://${vip}:${port}${path}`, headers });

  it('weighted split 70/30 within tolerance over 400 requests', async () => {
    const results = await mesh.client('client', {
      kind: 'http1',
      url: `http://${VIP.reviews}/`,
      count: 400,
      concurrency: 8,
    });
    const counts = countAnswers(results);
    const v1 = counts['200:v1'] ?? 0;
    const v2 = counts['200:v2'] ?? 0;
    assert.equal(v1 + v2, 400, JSON.stringify(counts));
    assert.ok(v1 / 400 > 0.6 && v1 / 400 < 0.8, `v1 share ${v1 / 400}: ${JSON.stringify(counts)}`);
  });

  it('header, path and query matches select backends', async () => {
    assert.deepEqual(countAnswers(await get('/', { 'x-canary': 'always' })), { '200:v2': 1 });
    assert.deepEqual(countAnswers(await get('/v1-only/x')), { '200:v1': 1 });
    assert.deepEqual(countAnswers(await get('/?pin=v2')), { '200:v2': 1 });
  });

  it('routes exist but none matches → 404; no routes → passthrough to the Service', async () => {
    const [miss] = await get('/elsewhere', {}, VIP.nomatch);
    assert.equal(miss!.status, 404);
    assert.match(miss!.text ?? '', /no route rule matches/);
    const [pass] = await get('/x', {}, VIP.plain);
    assert.equal(pass!.status, 200);
    assert.equal((pass!.json as { name: string }).name, 'plain');
  });

  it('request and response header filters, URL rewrite', async () => {
    const [r] = await get('/api/items?q=1', { 'x-add': 'a', 'x-drop': 'gone' });
    const echo = r!.json as { path: string; authority: string; headers: Record<string, string> };
    assert.equal(echo.path, '/v2/api/items?q=1');
    assert.equal(echo.authority, 'reviews.internal');
    assert.equal(echo.headers['x-set'], 'yes');
    assert.equal(echo.headers['x-add'], 'a,b');
    assert.equal(echo.headers['x-drop'], undefined);
    assert.equal(r!.headers?.['x-resp'], 'from-route');
  });

  it('redirects', async () => {
    const [r] = await get('/old/page?x=1');
    assert.equal(r!.status, 301);
    assert.equal(r!.headers?.location, `http://${VIP.reviews}/new/page?x=1`);
  });

  it('mTLS: the server app sees the client workload identity; plaintext to un-meshed endpoints', async () => {
    const [meshed] = await get('/v1-only');
    assert.equal(
      (meshed!.json as { peerIdentity: string }).peerIdentity,
      `spiffe://${TRUST_DOMAIN}/ns/${NS}/sa/client`,
    );
    const [plain] = await get('/', {}, VIP.plain);
    assert.equal((plain!.json as { peerIdentity: string | null }).peerIdentity, null);
  });

  it('a forged identity header from an un-meshed client is stripped', async () => {
    const out = await mesh.harness.runIn(mesh.pods.get('plain')!, nodeBin, [
      '-e',
      `fetch('http://${refs.get('v1')!.ip}:${APP_PORT}/',{headers:{'x-sluice-peer-identity':'spiffe://${TRUST_DOMAIN}/ns/${NS}/sa/admin'}}).then(r=>r.json()).then(j=>process.stdout.write(JSON.stringify(j)))`,
    ]);
    assert.equal((JSON.parse(out) as { peerIdentity: string | null }).peerIdentity, null);
  });

  it('request and response bodies stream through both sidecars (HTTP/1.1 and HTTP/2)', async () => {
    const bytes = 8 * 1024 * 1024;
    for (const kind of ['http1', 'h2']) {
      const [r] = await mesh.client('client', {
        kind,
        method: 'POST',
        url: `http://${VIP.v1}/echo-body`,
        bodyBytes: bytes,
      });
      assert.equal(r!.status, 200, `${kind}: ${JSON.stringify(r).slice(0, 300)}`);
      assert.equal(r!.text?.length, bytes, kind);
    }
  });

  it('IPv6: an IPv6 ClusterIP is captured, routed and reaches an IPv6 endpoint over mTLS', async () => {
    const [r] = await mesh.client('client', { kind: 'http1', url: `http://[${VIP.ipv6}]/` });
    assert.equal(r!.status, 200, JSON.stringify(r));
    const echo = r!.json as { name: string; peerIdentity: string };
    assert.equal(echo.name, 'v2');
    assert.equal(echo.peerIdentity, `spiffe://${TRUST_DOMAIN}/ns/${NS}/sa/client`);
  });

  it('HTTP/2 (h2c) through the mesh', async () => {
    const [r] = await mesh.client('client', { kind: 'h2', url: `http://${VIP.reviews}/v1-only` });
    assert.equal(r!.status, 200);
    assert.equal((r!.json as { protocol: string; name: string }).protocol, 'HTTP/2');
  });

  it('gRPC through the mesh with GRPCRoute method matching and trailers', async () => {
    const [add] = await mesh.client('client', {
      kind: 'grpc',
      url: `http://${VIP.cart}:50051/shop.Cart/Add`,
    });
    assert.equal(add!.grpcStatus, 0, JSON.stringify(add));
    assert.equal((add!.json as { name: string }).name, 'v2');
    const [other] = await mesh.client('client', {
      kind: 'grpc',
      url: `http://${VIP.cart}:50051/shop.Cart/List`,
    });
    assert.equal((other!.json as { name: string }).name, 'v1');
  });

  it('WebSocket upgrade through the mesh', async () => {
    const [r] = await mesh.client('client', { kind: 'ws', url: `http://${VIP.reviews}/v1-only/ws` });
    assert.equal(r!.status, 101, JSON.stringify(r));
    assert.equal(r!.text, 'hello through the mesh');
  });

  it('opaque TCP passes through (mTLS tunnel to a meshed endpoint)', async () => {
    const [r] = await mesh.client('client', {
      kind: 'tcp',
      url: `tcp://${VIP.tcp}:7000`,
      body: 'not http at all',
    });
    assert.equal(r!.text, 'tcp-echo:NOT HTTP AT ALL');
    // Both sidecars count the relayed connection and its bytes (15 sent by the client, 24 answered),
    // labelled with the mTLS peer's identity (the caller inbound, the endpoint outbound).
    for (const [pod, direction] of [
      ['client', 'outbound'],
      ['v1', 'inbound'],
    ] as const) {
      await waitFor(`the ${direction} TCP connection closed in ${pod}'s metrics`, async () => {
        const m = (await mesh.admin(mesh.pods.get(pod)!, '/metrics')).body;
        const closed = new RegExp(
          `^sluice_tcp_connections_closed_total\\{direction="${direction}",[^}]*sluice_peer_identity="spiffe://[^"]+"\\} [1-9]`,
          'm',
        );
        return (
          closed.test(m) &&
          new RegExp(
            `^sluice_tcp_io_bytes_total\\{direction="${direction}",[^}]*network_io_direction="receive"\\} [1-9]`,
            'm',
          ).test(m)
        );
      });
    }
  });

  it('an app calling its own Service goes through the proxy', async () => {
    const [r] = await get('/', {}, VIP.client);
    assert.equal((r!.json as { name: string }).name, 'client');
    assert.equal(
      (r!.json as { peerIdentity: string }).peerIdentity,
      `spiffe://${TRUST_DOMAIN}/ns/${NS}/sa/client`,
    );
  });

  it('STRICT mode refuses plaintext and accepts mesh mTLS', async () => {
    const [viaMesh] = await get('/', {}, VIP.strict);
    assert.equal((viaMesh!.json as { name: string }).name, 'strict');
    const out = await mesh.harness.run(mesh.pods.get('plain')!, nodeBin, [
      '-e',
      `fetch('http://${refs.get('strict')!.ip}:${APP_PORT}/').then(r=>console.log('status',r.status),e=>console.log('refused',e.cause?.code??e.message))`,
    ]);
    assert.match(out.stdout, /^refused/);
  });

  it('STRICT mode refuses a client certificate from another CA', async () => {
    const { createCa, loadCa, issueWorkloadCert } = await import('../../pki/ca.ts');
    const { generateKeyPair, privateKeyToPem } = await import('../../pki/keys.ts');
    const other = await loadCa(await createCa({ trustDomain: TRUST_DOMAIN }));
    const keys = await generateKeyPair();
    const cert = await issueWorkloadCert({
      ca: other,
      spiffeId: `spiffe://${TRUST_DOMAIN}/ns/${NS}/sa/client`,
      publicKey: keys.publicKey,
    });
    const script = `const tls=require('tls');const s=tls.connect({host:'${refs.get('strict')!.ip}',port:${APP_PORT},cert:${JSON.stringify(cert)},key:${JSON.stringify(await privateKeyToPem(keys.privateKey))},ca:${JSON.stringify(other.certPem)},ALPNProtocols:['http/1.1','sluice/1'],minVersion:'TLSv1.3',rejectUnauthorized:false},()=>{s.write('GET / HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n')});let d='';s.on('data',c=>d+=c);s.on('close',()=>console.log(d.startsWith('HTTP/1.1 200')?'accepted':'refused'));s.on('error',()=>{})`;
    const out = await mesh.harness.run(mesh.pods.get('plain')!, nodeBin, ['-e', script]);
    assert.match(out.stdout, /refused/);
  });

  it('a server whose certificate is not the identity the config names gets no traffic (502)', async () => {
    const [r] = await get('/', {}, VIP.impostor);
    assert.equal(r!.status, 502);
    // The cause, without the endpoint's address or either identity (issue 13, point 9): those are logged.
    assert.match(r!.text ?? '', /^upstream ERR_SPIFFE_ID_MISMATCH \(shop\/impostor:80\)\n$/);
    assert.doesNotMatch(r!.text ?? '', /spiffe:|\d+\.\d+\.\d+\.\d+/);
    const client = mesh.pods.get('client')!;
    await waitFor('the mismatch in the client sidecar log', () =>
      client.sidecarLog.some(
        (l) =>
          l.msg === 'upstream error' &&
          /spiffe:\/\//.test(String(l.error)) &&
          /\d+\.\d+\.\d+\.\d+/.test(String(l.endpoint)),
      ),
    );
  });

  it('config reload under load: zero failed requests', async () => {
    const client = mesh.pods.get('client') as MeshPod;
    const metric = async (pattern: RegExp): Promise<number> => {
      const body = (await mesh.admin(client, '/metrics')).body;
      return [...body.matchAll(pattern)].reduce((sum, m) => sum + Number(m[1]), 0);
    };
    const handled = () =>
      metric(/^sluice_requests_total\{direction="outbound",route="shop\/reviews",.*\} (\d+)$/gm);
    const reloads = () => metric(/^sluice_config_reloads_total\{source="manifests"\} (\d+)$/gm);
    const before = await handled();
    const load = mesh.client('client', {
      kind: 'http1',
      url: `http://${VIP.reviews}/`,
      durationMs: 6000,
      concurrency: 4,
    });
    await waitFor('the load to reach the sidecar', async () => (await handled()) > before, {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    for (let i = 0; i < 4; i++) {
      const applied = await reloads();
      const w = i % 2 === 0 ? 1 : 99;
      mesh.writeManifests(
        manifests([
          {
            backendRefs: [
              { name: 'reviews-v1', port: 80, weight: w },
              { name: 'reviews-v2', port: 80, weight: 100 - w },
            ],
          },
        ]),
      );
      await waitFor(`reload ${i + 1} applied`, async () => (await reloads()) > applied, {
        timeoutMs: 30_000,
        intervalMs: 50,
      });
    }
    const results = await load;
    const failed = results.filter((r) => r.error || r.status !== 200);
    assert.ok(results.length > 50, `only ${results.length} requests`);
    assert.equal(failed.length, 0, JSON.stringify(failed.slice(0, 3)));
    mesh.writeManifests(manifests());
  });

  it('admin endpoints: live, ready, metrics, config dump', async () => {
    const client = mesh.pods.get('client') as MeshPod;
    assert.equal((await mesh.admin(client, '/live')).status, 200);
    assert.equal((await mesh.admin(client, '/ready')).status, 200);
    const metrics = (await mesh.admin(client, '/metrics')).body;
    assert.match(
      metrics,
      /sluice_requests_total\{direction="outbound",route="shop\/reviews",backend="shop\/reviews-v1:80",code="200"\} \d+/,
    );
    assert.match(metrics, /sluice_request_duration_seconds_bucket\{/);
    const dump = JSON.parse((await mesh.admin(client, '/config_dump')).body) as {
      config: { namespace: string };
    };
    assert.equal(dump.config.namespace, NS);
  });

  it('admin port from another pod: probes and metrics answer, /config_dump does not (issue 13, point 5)', async () => {
    const target = refs.get('strict')!.ip;
    const from = async (path: string): Promise<{ status: number; body: string }> =>
      JSON.parse(
        await mesh.harness.runIn(mesh.pods.get('plain')!, nodeBin, [
          '-e',
          `fetch('http://${target}:15021${path}').then(async r=>process.stdout.write(JSON.stringify({status:r.status,body:await r.text()})))`,
        ]),
      ) as { status: number; body: string };
    assert.equal((await from('/ready')).status, 200);
    assert.equal((await from('/metrics')).status, 200);
    const dump = await from('/config_dump');
    assert.equal(dump.status, 403);
    assert.doesNotMatch(dump.body, /spiffe:|\d+\.\d+\.\d+\.\d+/);
  });

  it('SIGTERM drains: not ready, in-flight requests finish, then the sidecar exits', async () => {
    const strict = mesh.pods.get('strict')!;
    // Held by the app long enough to check /ready while the sidecar drains (up to 10 s in the fixture).
    const path = '/?delay=4000&test=drain';
    const inflight = get(path, {}, VIP.strict);
    const logs = () => strict.logs.join('');
    await waitFor('the request to reach the app', () => logs().includes(`holding GET ${path}`), {
      timeoutMs: 30_000,
      detail: logs,
    });
    const exited = new Promise((r) => strict.sidecar!.once('exit', r));
    strict.sidecar!.kill('SIGTERM');
    await waitFor(
      'the sidecar to start draining',
      () => strict.sidecarLog.some((l) => l.msg === 'draining'),
      {
        timeoutMs: 30_000,
        detail: logs,
      },
    );
    assert.equal((await mesh.admin(strict, '/ready')).status, 503);
    const [r] = await inflight;
    assert.equal(r!.status, 200, JSON.stringify(r));
    assert.equal(await exited, 0);
  });
});
