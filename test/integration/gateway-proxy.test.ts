// `sluice proxy --mode gateway` as a real process on loopback, configured from standalone manifests: a
// Gateway with an HTTP listener and two HTTPS listeners on one port (SNI picks the certificate), HTTPRoutes
// attached by sectionName, plaintext backends on 127.0.0.1. Covers HTTP/1.1, h2c, TLS with ALPN h2, SNI
// with two certificates, a rotated certificate Secret picked up without a restart, the misdirected-request
// guard, the stripping of the mesh identity header and the idle memory release.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
import { stringify } from 'yaml';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import { createCa, issueWorkloadCert, loadCa, type CertificateAuthority } from '../../pki/ca.ts';
import { writeIdentityDir } from '../../pki/identity-dir.ts';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.ts';
import { freePort } from '../support/free-port.ts';
import { serverCert, tlsSecret, type ServerCert } from '../support/server-cert.ts';
import { upstream, type Upstream } from '../support/scripted-upstream.ts';
import { serviceWithEndpoints } from '../support/mesh-manifests.ts';
import { sluiceGateway, sluiceGatewayClass } from '../support/gateway-manifests.ts';
import { waitFor } from '../support/wait-for.ts';

const TD = 'cluster.local';
const GW_NS = 'infra';
const APP_NS = 'shop';

function gatewayObjects(httpPort: number, httpsPort: number): K8sObject[] {
  const listener = (name: string, hostname: string, secret: string): unknown => ({
    name,
    port: httpsPort,
    protocol: 'HTTPS',
    hostname,
    tls: { mode: 'Terminate', certificateRefs: [{ kind: 'Secret', group: '', name: secret }] },
    allowedRoutes: { namespaces: { from: 'All' } },
  });
  return [
    sluiceGatewayClass(),
    sluiceGateway(GW_NS, 'gw', [
      { name: 'http', port: httpPort, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'All' } } },
      listener('https-a', 'a.example.com', 'a-cert'),
      listener('https-b', 'b.example.com', 'b-cert'),
    ]),
  ];
}

function route(name: string, sectionName: string, hostnames: string[], backend: string): K8sObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name, namespace: APP_NS, generation: 1, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: {
      parentRefs: [
        { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: GW_NS, name: 'gw', sectionName },
      ],
      ...(hostnames.length > 0 ? { hostnames } : {}),
      rules: [{ backendRefs: [{ name: backend, port: 80 }] }],
    },
  };
}

interface Answer {
  status: number;
  body: string;
  /** The DNS SAN of the certificate the gateway presented (TLS only). */
  san?: string;
  serial?: string;
  alpn?: string | false | null;
}

function httpGet(port: number, host: string, headers: http.OutgoingHttpHeaders = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: '/hello', headers: { host, ...headers }, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
  });
}

function httpsGet(port: number, serverName: string, host: string, ca: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      {
        host: '127.0.0.1',
        port,
        path: '/hello',
        servername: serverName,
        headers: { host },
        ca,
        agent: false,
        // Without SNI there is no name to check the certificate against; the test checks its SAN itself.
        ...(serverName === '' ? { checkServerIdentity: () => undefined } : {}),
      },
      (res) => {
        const socket = res.socket as unknown as TLSSocket;
        const peer = socket.getPeerCertificate();
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            san: peer.subjectaltname?.split(', ').find((s) => s.startsWith('DNS:')),
            serial: peer.serialNumber,
            alpn: socket.alpnProtocol,
          }),
        );
      },
    );
    req.on('error', reject);
  });
}

async function h2Get(
  authority: string,
  options: http2.SecureClientSessionOptions,
  host: string,
): Promise<Answer> {
  const session = http2.connect(authority, options);
  try {
    const stream = session.request({ ':path': '/hello', ':authority': host });
    const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
    let body = '';
    stream.setEncoding('utf8').on('data', (c: string) => (body += c));
    await once(stream, 'end');
    return { status: Number(headers[':status']), body, alpn: session.alpnProtocol ?? false };
  } finally {
    session.close();
  }
}

describe('gateway proxy (loopback, standalone manifests)', function () {
  this.timeout(60_000);
  let dir: string;
  let manifests: string;
  let ca: CertificateAuthority;
  let caPem: string;
  let web: Upstream;
  let api: Upstream;
  let grpc: http2.Http2Server;
  let grpcPort: number;
  let child: ChildProcess | undefined;
  let httpPort: number;
  let httpsPort: number;
  let adminPort: number;
  let output = '';
  let certA: ServerCert;
  let certB: ServerCert;

  const writeManifests = (a: ServerCert): void => {
    const objects = [
      ...gatewayObjects(httpPort, httpsPort),
      tlsSecret(GW_NS, 'a-cert', a),
      tlsSecret(GW_NS, 'b-cert', certB),
      // A GRPCRoute and an HTTPRoute may not share a hostname on one listener (GEP-1016).
      route('plain', 'http', ['anything.test'], 'web'),
      route('site-a', 'https-a', ['a.example.com'], 'web'),
      route('site-b', 'https-b', ['b.example.com'], 'api'),
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'GRPCRoute',
        metadata: {
          name: 'rpc',
          namespace: APP_NS,
          generation: 1,
          creationTimestamp: '2026-01-01T00:00:00Z',
        },
        spec: {
          parentRefs: [{ kind: 'Gateway', namespace: GW_NS, name: 'gw', sectionName: 'http' }],
          hostnames: ['rpc.example.com'],
          rules: [
            { matches: [{ method: { service: 'demo.Echo' } }], backendRefs: [{ name: 'rpc', port: 9000 }] },
          ],
        },
      } as K8sObject,
      ...serviceWithEndpoints(
        APP_NS,
        'rpc',
        '10.96.0.12',
        [[9000, grpcPort, 'grpc']],
        [{ name: 'rpc-1', namespace: APP_NS, ip: '127.0.0.1', serviceAccount: 'rpc', meshed: false }],
        'kubernetes.io/h2c',
      ),
      ...serviceWithEndpoints(
        APP_NS,
        'web',
        '10.96.0.10',
        [[80, web.port, 'http']],
        [{ name: 'web-1', namespace: APP_NS, ip: '127.0.0.1', serviceAccount: 'web', meshed: false }],
      ),
      ...serviceWithEndpoints(
        APP_NS,
        'api',
        '10.96.0.11',
        [[80, api.port, 'http']],
        [{ name: 'api-1', namespace: APP_NS, ip: '127.0.0.1', serviceAccount: 'api', meshed: false }],
      ),
    ];
    writeFileSync(join(dir, 'gw.tmp'), objects.map((o) => stringify(o)).join('---\n'));
    renameSync(join(dir, 'gw.tmp'), join(manifests, 'gateway.yaml'));
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-gateway-'));
    manifests = join(dir, 'manifests');
    mkdirSync(manifests);
    ca = await loadCa(await createCa({ trustDomain: TD }));
    caPem = ca.certPem;
    const keys = await generateKeyPair();
    await writeIdentityDir(join(dir, 'identity'), {
      certPem: await issueWorkloadCert({
        ca,
        spiffeId: `spiffe://${TD}/ns/${GW_NS}/sa/gw-sluice`,
        publicKey: keys.publicKey,
      }),
      keyPem: await privateKeyToPem(keys.privateKey),
      bundlePem: ca.certPem,
    });
    web = await upstream(
      (_n, req, res) => res.end(`web ${String(req.headers['x-sluice-peer-identity'] ?? '-')}`),
      // An upgrade: 101, then the bytes sent back in upper case.
      (req, socket) => {
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${String(req.headers.upgrade)}\r\n\r\n`,
        );
        socket.on('data', (chunk: Buffer) => socket.write(chunk.toString().toUpperCase()));
        socket.on('end', () => socket.end()); // an upgraded socket is half-open: close with the proxy
      },
    );
    api = await upstream((_n, _req, res) => res.end('api'));
    // A gRPC server in miniature: h2c, answers every call with an empty message and grpc-status 0.
    grpc = http2.createServer();
    grpc.on('stream', (stream, headers) => {
      stream.resume();
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () =>
          stream.sendTrailers({ 'grpc-status': '0', 'x-path': String(headers[':path']) }),
        );
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      });
    });
    await new Promise<void>((r) => grpc.listen(0, '127.0.0.1', r));
    grpcPort = (grpc.address() as AddressInfo).port;
    [httpPort, httpsPort, adminPort] = [await freePort(), await freePort(), await freePort()];
    certA = await serverCert(ca, 'a.example.com');
    certB = await serverCert(ca, 'b.example.com');
    writeManifests(certA);
    child = spawn(
      process.execPath,
      [
        'bin/sluice.js',
        'proxy',
        '--mode',
        'gateway',
        '--gateway',
        'gw',
        '--manifests',
        manifests,
        '--identity',
        join(dir, 'identity'),
        '--admin-port',
        String(adminPort),
        '--bind',
        '127.0.0.1',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        // The idle memory release checked every 200 ms with no threshold: due after any load (ADR 0016).
        env: { ...process.env, SLUICE_IDLE_MEMORY_CHECK_MS: '200', SLUICE_IDLE_MEMORY_SLACK_MB: '0' },
      },
    );
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    await waitFor(
      'the gateway proxy to be ready',
      async () => {
        const ready = await fetch(`http://127.0.0.1:${adminPort}/ready`).catch(() => undefined);
        return ready?.status === 200;
      },
      { timeoutMs: 20_000, intervalMs: 100, detail: () => output.slice(-3000) },
    );
  });

  afterEach(async function () {
    if (this.currentTest?.state !== 'failed') return;
    process.stderr.write(output.slice(-4000));
    const m = await fetch(`http://127.0.0.1:${adminPort}/metrics`)
      .then((r) => r.text())
      .catch(() => '');
    process.stderr.write(
      m
        .split('\n')
        .filter((l) => l.includes('gateway'))
        .join('\n'),
    );
  });

  after(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    await new Promise((r) => grpc.close(r));
    await web.close();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('routes plain HTTP/1.1 by listener and route, dropping a client-sent identity header', async () => {
    const r = await httpGet(httpPort, 'anything.test', {
      'x-sluice-peer-identity': 'spiffe://evil/ns/x/sa/y',
    });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'web -');
  });

  it('joins an HTTP/1.1 Upgrade (WebSocket) to the routed backend', async () => {
    const req = http.request({
      host: '127.0.0.1',
      port: httpPort,
      path: '/ws',
      headers: { host: 'anything.test', connection: 'upgrade', upgrade: 'websocket' },
    });
    req.end();
    const [res, socket] = (await once(req, 'upgrade')) as [http.IncomingMessage, Socket];
    try {
      assert.equal(res.statusCode, 101);
      assert.equal(res.headers.upgrade, 'websocket');
      socket.write('ping through the gateway');
      const [echoed] = (await once(socket, 'data')) as [Buffer];
      assert.equal(echoed.toString(), 'PING THROUGH THE GATEWAY');
    } finally {
      socket.destroy();
    }
    assert.equal(web.hits.at(-1)?.url, '/ws');
  });

  it('takes h2c with prior knowledge on an HTTP port', async () => {
    const r = await h2Get(`http://127.0.0.1:${httpPort}`, {}, 'anything.test');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'web -');
  });

  it('routes gRPC by GRPCRoute over h2c to an h2c backend, trailers included', async () => {
    const session = http2.connect(`http://127.0.0.1:${httpPort}`);
    try {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/demo.Echo/Say',
        ':authority': 'rpc.example.com',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      stream.end(Buffer.from([0, 0, 0, 0, 0]));
      const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
      const trailers = new Promise<http2.IncomingHttpHeaders>((r) => stream.once('trailers', r));
      stream.resume();
      assert.equal(headers[':status'], 200);
      const t = await trailers;
      assert.equal(t['grpc-status'], '0');
      assert.equal(t['x-path'], '/demo.Echo/Say');
    } finally {
      session.close();
    }
  });

  it('terminates TLS with the certificate SNI selects, one port, two listeners', async () => {
    const a = await httpsGet(httpsPort, 'a.example.com', 'a.example.com', caPem);
    assert.equal(a.status, 200);
    assert.equal(a.san, 'DNS:a.example.com');
    assert.equal(a.body, 'web -');
    const b = await httpsGet(httpsPort, 'b.example.com', 'b.example.com', caPem);
    assert.equal(b.san, 'DNS:b.example.com');
    assert.equal(b.body, 'api');
  });

  it('answers a client that sends no SNI with a certificate of the port', async () => {
    // servername '' sends no server_name extension (an https:// URL with an IP address does the same).
    const r = await httpsGet(httpsPort, '', 'a.example.com', caPem).catch((e: unknown) => e as Error);
    assert.ok(!(r instanceof Error), r instanceof Error ? r.message : '');
    assert.ok(['DNS:a.example.com', 'DNS:b.example.com'].includes(r.san ?? ''), r.san);
  });

  it('speaks h2 over TLS when the client offers it', async () => {
    const r = await h2Get(
      `https://127.0.0.1:${httpsPort}`,
      { servername: 'b.example.com', ca: caPem },
      'b.example.com',
    );
    assert.equal(r.alpn, 'h2');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'api');
  });

  it('answers 421 to a request for another listener on a connection SNI gave to one', async () => {
    const r = await httpsGet(httpsPort, 'a.example.com', 'b.example.com', caPem);
    assert.equal(r.status, 421);
  });

  it('gives memory back once idle after load, as the sidecar does', async () => {
    for (let i = 0; i < 100; i++) assert.equal((await httpGet(httpPort, 'anything.test')).status, 200);
    await waitFor('the idle memory release', () => output.includes('idle after load, memory released'), {
      timeoutMs: 15_000,
      intervalMs: 100,
      detail: () => output.slice(-2000),
    });
    assert.equal(child!.exitCode, null);
  });

  it('serves a rotated certificate Secret from the next handshake, without a restart', async () => {
    const pid = child!.pid;
    const rotated = await serverCert(ca, 'a.example.com');
    assert.notEqual(rotated.serial, certA.serial);
    writeManifests(rotated);
    await waitFor(
      'the rotated certificate',
      async () =>
        (await httpsGet(httpsPort, 'a.example.com', 'a.example.com', caPem)).serial === rotated.serial,
      { timeoutMs: 15_000, intervalMs: 100, detail: () => output.slice(-2000) },
    );
    assert.equal(child!.pid, pid);
    assert.equal(child!.exitCode, null);
    const b = await httpsGet(httpsPort, 'b.example.com', 'b.example.com', caPem);
    assert.equal(b.serial, certB.serial);
  });
});
