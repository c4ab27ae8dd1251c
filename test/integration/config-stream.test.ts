// Controller → sidecar config stream on loopback (ADR 0005): real mTLS with test CAs, the controller's hub and
// HTTP/2 server, and ControllerConfigSource clients in several namespaces.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { setImmediate } from 'node:timers/promises';
import { ConfigHub } from '../../controller/config-hub.ts';
import { ConfigServer } from '../../controller/config-server.ts';
import { CONFIG_PATH, controllerSpiffeId } from '../../protocol/config-protocol.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import type { ProxyView } from '../../mesh-model/proxy-view.ts';
import { createCa, issueWorkloadCert, loadCa, type CertificateAuthority } from '../../pki/ca.ts';
import { parseIdentity, type Identity } from '../../pki/identity.ts';
import { generateKeyPair, privateKeyToPem, SIGNING_ALGORITHM } from '../../pki/keys.ts';
import { x509 } from '../../pki/x509-lib.ts';
import { clientTlsOptions, createMeshSecureContext, MeshTlsCredentials } from '../../pki/tls-options.ts';
import {
  ControllerConfigSource,
  type ControllerConfigSourceOptions,
} from '../../sidecar/controller-config-source.ts';
import { podObject, serviceWithEndpoints } from '../support/mesh-manifests.ts';
import { waitFor } from '../support/wait-for.ts';

const TD = 'cluster.local';
const CONTROLLER_ID = controllerSpiffeId(TD);
const REVIEWS = '10.96.0.10:80';

async function identityFor(ca: CertificateAuthority, spiffeId: string, bundlePem: string): Promise<Identity> {
  const keys = await generateKeyPair();
  const certPem = await issueWorkloadCert({ ca, spiffeId, publicKey: keys.publicKey });
  return parseIdentity({ certPem, keyPem: await privateKeyToPem(keys.privateKey), bundlePem });
}

function route(
  namespace: string,
  name: string,
  parent: [string, string],
  path: string,
  extra = {},
): K8sObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { namespace, name, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', namespace: parent[0], name: parent[1] }],
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: path } }],
          backendRefs: [{ name: 'reviews-v2', namespace: 'shop', port: 80 }],
        },
      ],
      ...extra,
    },
  };
}

function meshObjects(): K8sObject[] {
  const pod = (name: string, ip: string): Parameters<typeof podObject>[0] => ({
    name,
    namespace: 'shop',
    ip,
    serviceAccount: 'reviews',
    meshed: true,
  });
  return [
    ...serviceWithEndpoints(
      'shop',
      'reviews',
      '10.96.0.10',
      [[80, 8080, 'http']],
      [pod('reviews-1', '10.0.0.1')],
    ),
    ...serviceWithEndpoints(
      'shop',
      'reviews-v2',
      '10.96.0.11',
      [[80, 8080, 'http']],
      [pod('reviews-v2-1', '10.0.0.2')],
    ),
    podObject(pod('reviews-1', '10.0.0.1')),
    podObject(pod('reviews-v2-1', '10.0.0.2')),
    route('shop', 'producer', ['shop', 'reviews'], '/v1'),
    route('a', 'consumer-a', ['shop', 'reviews'], '/from-a'),
  ];
}

/** TLS material signed by the mesh CA but without a SPIFFE ID (a DNS name only): not a workload. */
async function nonWorkloadPem(ca: CertificateAuthority): Promise<Identity> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '0badc0de01',
    subject: 'CN=not-a-workload',
    issuer: ca.issuerName,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.AuthorityKeyIdentifierExtension(ca.authorityKeyId),
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'not-a-workload.example' }]),
    ],
  });
  // Only the PEM fields are used (createMeshSecureContext); parseIdentity would refuse this certificate.
  return {
    certPem: cert.toString('pem'),
    keyPem: await privateKeyToPem(keys.privateKey),
    bundlePem: ca.certPem,
  } as Identity;
}

/** A ControllerConfigSource with what it reported. */
class Client {
  readonly source: ControllerConfigSource;
  view: ProxyView | undefined;
  views = 0;
  readonly errors: string[] = [];

  constructor(port: number, identity: Identity, extra: Partial<ControllerConfigSourceOptions> = {}) {
    this.source = new ControllerConfigSource({
      address: `127.0.0.1:${port}`,
      identity,
      backoffMinMs: 20,
      backoffMaxMs: 200,
      watchdogMs: 3000,
      rebuildDelayMs: 5,
      ...extra,
    });
    this.source.start(
      (view) => {
        this.view = view;
        this.views++;
      },
      (err) => this.errors.push(err.message),
    );
  }

  routePaths(): string[] {
    const r = this.view?.byDestination.get(REVIEWS);
    return (r?.routes ?? []).flatMap((x) =>
      x.rules.flatMap((rule) =>
        rule.route.entries.map((e) => (e.match.kind === 'HTTPRoute' ? e.match.path : '')),
      ),
    );
  }

  routeNames(): string[] {
    return (this.view?.model.routes ?? []).map((r) => `${r.namespace}/${r.name}`).sort();
  }

  stop(): void {
    this.source.stop();
  }
}

/** A raw HTTP/2 request to the controller, for status checks and the slow subscriber. */
function rawRequest(
  port: number,
  identity: Identity,
  headers: http2.OutgoingHttpHeaders,
): { session: http2.ClientHttp2Session; req: http2.ClientHttp2Stream } {
  const session = http2.connect(
    `https://127.0.0.1:${port}`,
    clientTlsOptions({
      secureContext: createMeshSecureContext(identity),
      expectedSpiffeId: CONTROLLER_ID,
      alpnProtocols: ['h2'],
    }),
  );
  session.on('error', () => undefined);
  const req = session.request(headers, { endStream: true });
  req.on('error', () => undefined);
  return { session, req };
}

async function statusOf(
  port: number,
  identity: Identity,
  headers: http2.OutgoingHttpHeaders,
): Promise<[number, string]> {
  const { session, req } = rawRequest(port, identity, headers);
  try {
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    await new Promise((resolve) => req.on('close', resolve));
    return [status, body];
  } finally {
    session.destroy();
  }
}

describe('config stream: controller → sidecars over mTLS (loopback)', function () {
  this.timeout(10_000);
  let ca: CertificateAuthority;
  let foreignCa: CertificateAuthority;
  let rogueCa: CertificateAuthority;
  let controller: Identity;
  const ids = new Map<string, Identity>();
  let hub: ConfigHub;
  let server: ConfigServer;
  let port: number;
  const clients: Client[] = [];

  const startServer = async (h: ConfigHub, listenPort = 0): Promise<ConfigServer> => {
    const s = new ConfigServer({
      hub: h,
      credentials: new MeshTlsCredentials(controller),
      port: listenPort,
      host: '127.0.0.1',
      pingIntervalMs: 200,
      closeTimeoutMs: 500,
    });
    await s.listen();
    return s;
  };
  const newHub = (epoch: string, objects: K8sObject[]): ConfigHub => {
    const h = new ConfigHub({ epoch, debounceMs: 10, maxDelayMs: 50, maxQueuedBytes: 256 * 1024 });
    for (const o of objects) h.upsert(o);
    h.markSynced();
    return h;
  };
  const client = (ns: string, extra = {}): Client => {
    const c = new Client(port, ids.get(ns)!, extra);
    clients.push(c);
    return c;
  };

  before(async () => {
    ca = await loadCa(await createCa({ trustDomain: TD }));
    foreignCa = await loadCa(await createCa({ trustDomain: 'evil.example' }));
    rogueCa = await loadCa(await createCa({ trustDomain: TD }));
    // The controller trusts the foreign trust domain's CA too, so its workloads get past TLS (and then a 403).
    controller = await identityFor(ca, CONTROLLER_ID, ca.certPem + foreignCa.certPem);
    for (const ns of ['a', 'b', 'shop', 'slow']) {
      ids.set(ns, await identityFor(ca, `spiffe://${TD}/ns/${ns}/sa/app`, ca.certPem));
    }
    ids.set(
      'foreign',
      await identityFor(foreignCa, 'spiffe://evil.example/ns/a/sa/app', foreignCa.certPem + ca.certPem),
    );
    ids.set('rogue', await identityFor(rogueCa, `spiffe://${TD}/ns/a/sa/app`, rogueCa.certPem + ca.certPem));
    hub = newHub('one', meshObjects());
    server = await startServer(hub);
    port = server.port;
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.stop();
  });

  after(async () => {
    await server.close();
    hub.close();
  });

  it('streams a snapshot that builds the expected view in each namespace, then deltas to all', async () => {
    const [a, b, shop] = [client('a'), client('b'), client('shop')];
    await waitFor('three views', () => a.view && b.view && shop.view);
    assert.equal(a.view!.byDestination.get(REVIEWS)!.type, 'consumer');
    assert.deepEqual(a.routePaths(), ['/from-a']);
    for (const c of [b, shop]) {
      assert.equal(c.view!.byDestination.get(REVIEWS)!.type, 'producer');
      assert.deepEqual(c.routePaths(), ['/v1']);
      assert.deepEqual(c.routeNames(), ['shop/producer']);
    }
    assert.equal(a.view!.namespace, 'a');
    assert.equal(a.view!.endpoints.get('shop/reviews:80')![0]!.identity, `spiffe://${TD}/ns/shop/sa/reviews`);
    assert.equal(a.source.state.connected, true);
    assert.equal(a.source.state.objects, 8);
    assert.equal(b.source.state.objects, 7);

    hub.upsert(route('shop', 'producer', ['shop', 'reviews'], '/v2'));
    await waitFor(
      'the change in b and shop',
      () => b.routePaths()[0] === '/v2' && shop.routePaths()[0] === '/v2',
    );
    // a keeps its consumer route, but has the new producer route object too
    await waitFor('the delta in a', () => a.source.state.deltas === 1);
    for (const c of [a, b, shop]) {
      assert.equal(c.source.state.snapshots, 1);
      assert.equal(c.source.state.deltas, 1);
      assert.equal(c.source.state.version, hub.version);
    }
    assert.deepEqual(a.routePaths(), ['/from-a']);

    // a new consumer route in a: a gets it, b does not (b syncs past it with a change for everybody)
    hub.upsert(route('a', 'consumer-a2', ['shop', 'reviews'], '/also-from-a'));
    hub.upsert(route('shop', 'producer', ['shop', 'reviews'], '/v3'));
    await waitFor('a sees consumer-a2', () => a.routePaths().includes('/also-from-a'));
    await waitFor('b sees /v3', () => b.routePaths()[0] === '/v3');
    assert.deepEqual(b.routeNames(), ['shop/producer']);
    assert.equal(b.source.state.objects, 7);
    assert.equal(a.source.state.objects, 9);
  });

  it('refuses clients without a usable identity: another CA, another trust domain', async () => {
    const rogue = new Client(port, ids.get('rogue')!);
    const foreign = new Client(port, ids.get('foreign')!, { controllerSpiffeId: CONTROLLER_ID });
    clients.push(rogue, foreign);
    await waitFor('both refused', () => rogue.errors.length > 0 && foreign.errors.length > 0);
    assert.match(rogue.errors[0]!, /closed before the controller answered/);
    assert.equal(rogue.view, undefined);
    assert.equal(rogue.source.state.connected, false);
    assert.match(
      foreign.errors[0]!,
      /controller answered 403: forbidden: .*not in trust domain 'cluster.local'/,
    );
    assert.equal(foreign.view, undefined);
    // the server still serves others
    const a = client('a');
    await waitFor('a view', () => a.view);
  });

  it('answers 403 to a certificate without a SPIFFE ID, 404 for other paths, 405 for other methods', async () => {
    const [s403, body403] = await statusOf(port, await nonWorkloadPem(ca), { ':path': CONFIG_PATH });
    assert.equal(s403, 403);
    assert.match(body403, /^forbidden: peer certificate must have exactly one URI SAN, it has 0\n$/);
    const id = ids.get('b')!;
    const [s404, body404] = await statusOf(port, id, { ':path': '/v1/other' });
    assert.equal(s404, 404);
    assert.match(body404, /^not found/);
    const [s405] = await statusOf(port, id, { ':method': 'POST', ':path': CONFIG_PATH });
    assert.equal(s405, 405);
  });

  it('keeps the last view while the controller is gone and converges after it restarts', async () => {
    const a = client('a');
    const b = client('b');
    await waitFor('views', () => a.view && b.view);
    const lastA = a.view;
    const viewsB = b.views;
    await server.close();
    hub.close();
    await waitFor('disconnected', () => !a.source.state.connected && !b.source.state.connected);
    const disconnects = a.source.state.disconnects;
    await waitFor('a few failed reconnects', () => a.source.state.disconnects >= disconnects + 2);
    assert.equal(a.view, lastA, 'the last view stays in use');
    assert.equal(b.views, viewsB);
    assert.ok(
      a.errors.some((e) => /controller ended the stream|connection/.test(e)),
      a.errors.join('; '),
    );

    // A new controller process (new epoch) with changed objects, on the same port.
    const objects = meshObjects().filter((o) => o.metadata?.name !== 'consumer-a');
    objects.push(route('shop', 'producer', ['shop', 'reviews'], '/after-restart'));
    hub = newHub('two', objects);
    server = await startServer(hub, port);
    await waitFor('a converged', () => a.routePaths()[0] === '/after-restart');
    await waitFor('b converged', () => b.routePaths()[0] === '/after-restart');
    assert.equal(a.view!.byDestination.get(REVIEWS)!.type, 'producer');
    assert.equal(a.source.state.snapshots, 2);
    assert.match(a.source.state.version!, /^two:/);
  });

  it('drops a subscriber that does not read once its queue passes the limit', async () => {
    const a = client('a');
    await waitFor('a view', () => a.view);
    const { session, req } = rawRequest(port, ids.get('slow')!, { ':path': CONFIG_PATH });
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.pause();
    const closed = new Promise<number>((resolve) => req.on('close', () => resolve(req.rstCode)));
    await waitFor('slow subscribed', () => status === 200 && hub.stats().subscribers === 2);
    // Big consumer routes of namespace "slow": only the slow subscriber's scope gets them.
    for (let i = 0; i < 40 && hub.stats().dropped === 0; i++) {
      hub.upsert(
        route('slow', `big-${i}`, ['shop', 'reviews'], `/big${i}`, { padding: 'x'.repeat(64 * 1024) }),
      );
      hub.flush();
      await setImmediate(); // let the session write what it can
    }
    assert.equal(hub.stats().dropped, 1);
    assert.equal(await closed, http2.constants.NGHTTP2_CANCEL);
    session.destroy();
    // everybody else is unaffected
    hub.upsert(route('shop', 'producer', ['shop', 'reviews'], '/after-drop'));
    await waitFor('a still updated', () => a.source.state.deltas > 0);
    assert.equal(a.source.state.connected, true);
    assert.equal(a.source.state.snapshots, 1);
  });

  describe('against a misbehaving controller', () => {
    let fake: http2.Http2SecureServer;
    let fakePort: number;
    const behaviours: ((stream: http2.ServerHttp2Stream) => void)[] = [];
    let requests = 0;

    const snapshot = (version: string, path: string): string =>
      `${JSON.stringify({ type: 'snapshot', version, objects: [...meshObjects().slice(0, 4), route('shop', 'producer', ['shop', 'reviews'], path)] })}\n`;

    before(async () => {
      fake = http2.createSecureServer({
        ...new MeshTlsCredentials(controller).serverOptions({ alpnProtocols: ['h2'] }),
      });
      fake.on('stream', (stream) => {
        stream.on('error', () => undefined);
        const behave = behaviours[Math.min(requests, behaviours.length - 1)]!;
        requests++;
        stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
        behave(stream);
      });
      fake.on('session', (s) => s.on('error', () => undefined));
      await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
      fakePort = (fake.address() as AddressInfo).port;
    });

    after(async () => {
      await new Promise((resolve) => fake.close(resolve));
    });

    it('reconnects after malformed, oversized, out-of-order and missing frames, and never crashes', async () => {
      behaviours.push(
        (s) => s.write(`${snapshot('x:1', '/one')}{"type":"delta",\n`),
        // a frame split over writes, then one larger than the limit without a newline
        (s) => {
          const text = snapshot('x:2', '/two');
          s.write(text.slice(0, 10));
          setTimeout(() => s.write(text.slice(10) + 'y'.repeat(30_000)), 20);
        },
        (s) =>
          s.write(
            `${snapshot('x:3', '/three')}${JSON.stringify({ type: 'delta', version: 'x:5', base: 'x:4', upserts: [], removals: [] })}\n`,
          ),
        (s) => s.write(`${snapshot('x:6', '/four')}[1,2]\n`),
        (s) =>
          s.write(
            `${snapshot('x:7', '/five')}{"type":"snapshot","version":"x:8","objects":[{"kind":"Pod"}]}\n`,
          ),
        (s) => s.write(snapshot('x:9', '/silent')), // then nothing: the watchdog ends it
        (s) => s.write(`{"type":"ping"}\n{"type":"future-kind"}\n${snapshot('x:10', '/final')}`),
      );
      const c = new Client(fakePort, ids.get('a')!, { maxFrameBytes: 20_000, watchdogMs: 300 });
      clients.push(c);
      await waitFor('the final snapshot', () => c.routePaths()[0] === '/final', 8000);
      assert.equal(requests, 7);
      const reasons = c.errors.join('\n');
      for (const re of [
        /malformed frame: frame is not JSON/,
        /malformed frame: frame larger than 20000 bytes/,
        /delta based on x:4 but the current version is x:3/,
        /malformed frame: frame is not an object with a type/,
        /malformed frame: snapshot frame: objects must be/,
        /no frame from the controller for 0.3 s/,
      ]) {
        assert.match(reasons, re);
      }
      assert.equal(c.source.state.version, 'x:10');
      assert.equal(c.source.state.connected, true);
    });

    it('refuses a controller with the wrong SPIFFE ID', async () => {
      const c = new Client(fakePort, ids.get('a')!, {
        controllerSpiffeId: `spiffe://${TD}/ns/x/sa/impostor`,
      });
      clients.push(c);
      await waitFor('refused', () => c.errors[0]);
      assert.match(c.errors[0]!, /server SPIFFE ID is .*sluice-controller, expected .*impostor/);
      assert.equal(c.view, undefined);
    });
  });
});
