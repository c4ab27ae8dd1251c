import assert from 'node:assert/strict';
import { APP_PORT, MeshFixture, tearDownMesh, TRUST_DOMAIN } from '../support/mesh-fixture.ts';
import { podObject, serviceWithEndpoints } from '../support/mesh-manifests.ts';
import { netnsUnavailableReason, nodeBin } from '../support/netns.ts';
import { waitFor } from '../support/wait-for.ts';
import { addPods } from '../support/mesh-pods.ts';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.ts';
import { issueWorkloadCert } from '../../pki/ca.ts';

// Forged identities and oversized headers, tried as an attacker would (issue 13, points 1 and 9): pods are
// network namespaces with real `sluice init-iptables` and `sluice proxy` processes; the apps behind the
// sidecars record the exact bytes they receive.

const NS = 'shop';
const APP = 8080; // a Service port named "http": declared HTTP
const WEB = 8081; // a Service port named "web": undeclared, detected
const SMTP = 2525; // a server-first protocol on an undeclared port
const VIP = {
  permissive: '10.96.0.10',
  strict: '10.96.0.11',
  permissiveWeb: '10.96.0.12',
  strictWeb: '10.96.0.13',
  strictSmtp: '10.96.0.14',
  permissiveEcho: '10.96.0.15',
  strictEcho: '10.96.0.16',
};
const DETECT_MS = 300;
const id = (sa: string): string => `spiffe://${TRUST_DOMAIN}/ns/${NS}/sa/${sa}`;
const FORGED = id('admin');
// Repeated, in two spellings: none of it may reach the app.
const FORGERY = `x-sluice-peer-identity: ${FORGED}\r\nX-SLUICE-Peer-Identity: ${FORGED}\r\n`;

interface Chunk {
  delayMs?: number;
  data: string;
}
interface Variant {
  name: string;
  method: string;
  path: string;
  chunks: Chunk[];
}

function variants(tag: string): Variant[] {
  const rest = `host: app\r\n${FORGERY}connection: close\r\n\r\n`;
  return [
    {
      name: 'a request starting with CRLF',
      method: 'GET',
      path: `/crlf-${tag}`,
      chunks: [{ data: `\r\nGET /crlf-${tag} HTTP/1.1\r\n${rest}` }],
    },
    {
      name: 'method M-SEARCH',
      method: 'M-SEARCH',
      path: `/msearch-${tag}`,
      chunks: [{ data: `M-SEARCH /msearch-${tag} HTTP/1.1\r\n${rest}` }],
    },
    {
      name: 'first bytes after the detection timeout',
      method: 'GET',
      path: `/slow-${tag}`,
      // The attacker is slow on purpose: well past the sidecars' --detect-timeout-ms.
      chunks: [{ delayMs: DETECT_MS * 5, data: `GET /slow-${tag} HTTP/1.1\r\n${rest}` }],
    },
  ];
}

/** Exactly what the app must receive: the request the sidecar parsed, with the real identity or none. */
function expectedHead(v: Variant, identity: string | undefined): string {
  const who = identity === undefined ? '' : `x-sluice-peer-identity: ${identity}\r\n`;
  return `${v.method} ${v.path} HTTP/1.1\r\nhost: app\r\n${who}\r\n`;
}

describe('identity an app can trust (netns, attacker)', function () {
  this.timeout(180_000);
  const reason = netnsUnavailableReason();
  let mesh: MeshFixture;
  const recorded = new Map<string, { conn: number; data: string }[]>();
  let attackerCert: { cert: string; key: string; ca: string };

  before(async function () {
    if (reason) return this.skip();
    mesh = await MeshFixture.create();
    const proxyArgs = ['--detect-timeout-ms', String(DETECT_MS)];
    const specs = [
      { name: 'attacker', serviceAccount: 'attacker', meshed: false },
      { name: 'meshed', serviceAccount: 'meshed', meshed: true, proxyArgs },
      { name: 'permissive', serviceAccount: 'permissive', meshed: true, proxyArgs },
      { name: 'strict', serviceAccount: 'strict', meshed: true, mode: 'STRICT' as const, proxyArgs },
    ];
    const refs = new Map((await addPods(mesh, NS, specs)).map((ref) => [ref.name, ref]));
    for (const [name, port] of [
      ['permissive', APP],
      ['strict', APP],
      ['permissive', WEB],
      ['strict', WEB],
    ] as const) {
      const pod = mesh.pods.get(name)!;
      const lines: { conn: number; data: string }[] = [];
      recorded.set(port === APP ? name : `${name}:${port}`, lines);
      const child = mesh.harness.exec(pod, nodeBin, ['test/support/raw-recorder.ts', String(port)]);
      let buffer = '';
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        buffer += chunk;
        let nl;
        while ((nl = buffer.indexOf('\n')) !== -1) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (line.startsWith('{')) lines.push(JSON.parse(line) as { conn: number; data: string });
        }
      });
      await mesh.harness.waitForPort(pod, pod.ip, port);
    }
    const strictPod = mesh.pods.get('strict')!;
    mesh.harness.exec(strictPod, nodeBin, [
      '-e',
      `require('net').createServer(s=>{s.write('220 ready\\r\\n');s.on('data',d=>s.end('250 '+String(d).toUpperCase()))}).listen(${SMTP})`,
    ]);
    await mesh.harness.waitForPort(strictPod, strictPod.ip, SMTP);
    mesh.writeManifests([
      ...[...refs.values()].map(podObject),
      ...serviceWithEndpoints(
        NS,
        'permissive-web',
        VIP.permissiveWeb,
        [[81, WEB, 'web']],
        [refs.get('permissive')!],
      ),
      ...serviceWithEndpoints(NS, 'strict-web', VIP.strictWeb, [[81, WEB, 'web']], [refs.get('strict')!]),
      // The fixture's echo app (HTTP/1.1 and h2c) on APP_PORT, declared h2c.
      ...serviceWithEndpoints(
        NS,
        'permissive-echo',
        VIP.permissiveEcho,
        [[80, APP_PORT, 'h2c']],
        [refs.get('permissive')!],
      ),
      ...serviceWithEndpoints(
        NS,
        'strict-echo',
        VIP.strictEcho,
        [[80, APP_PORT, 'h2c']],
        [refs.get('strict')!],
      ),
      ...serviceWithEndpoints(NS, 'strict-smtp', VIP.strictSmtp, [[25, SMTP, 'smtp']], [refs.get('strict')!]),
      ...serviceWithEndpoints(
        NS,
        'permissive',
        VIP.permissive,
        [[80, APP, 'http']],
        [refs.get('permissive')!],
      ),
      ...serviceWithEndpoints(NS, 'strict', VIP.strict, [[80, APP, 'http']], [refs.get('strict')!]),
    ]);
    await mesh.startSidecars();
    const keys = await generateKeyPair();
    attackerCert = {
      cert: await issueWorkloadCert({ ca: mesh.ca, spiffeId: id('attacker'), publicKey: keys.publicKey }),
      key: await privateKeyToPem(keys.privateKey),
      ca: mesh.ca.certPem,
    };
  });

  tearDownMesh(() => mesh);

  async function send(
    from: string,
    plan: Record<string, unknown>,
  ): Promise<{ response?: string; status?: number; error?: string }> {
    const out = await mesh.harness.runIn(mesh.pods.get(from)!, nodeBin, [
      'test/support/raw-client.ts',
      JSON.stringify(plan),
    ]);
    return JSON.parse(out.split('\n')[0]!) as { response?: string; status?: number; error?: string };
  }

  /** Everything the app behind `pod` received on the connection that carried `path`. */
  async function receivedBy(pod: string, path: string): Promise<string> {
    const lines = recorded.get(pod)!;
    const conn = (): number | undefined => lines.find((l) => l.data.includes(` ${path} `))?.conn;
    const whole = (): string =>
      lines
        .filter((l) => l.conn === conn())
        .map((l) => l.data)
        .join('');
    await waitFor(
      `the app in ${pod} to receive ${path}`,
      () => conn() !== undefined && whole().includes('\r\n\r\n'),
      {
        timeoutMs: 30_000,
        intervalMs: 20,
      },
    );
    return whole();
  }

  const strictIp = (): string => mesh.pods.get('strict')!.ip;
  const permissiveIp = (): string => mesh.pods.get('permissive')!.ip;

  describe('from an un-meshed pod into a PERMISSIVE pod (plaintext)', () => {
    for (const v of variants('plain')) {
      it(`${v.name}: parsed, the forged header never arrives, no identity`, async () => {
        const r = await send('attacker', { host: permissiveIp(), port: APP, chunks: v.chunks });
        assert.match(r.response ?? '', /^HTTP\/1.1 200/, JSON.stringify(r));
        assert.equal(await receivedBy('permissive', v.path), expectedHead(v, undefined));
      });
    }
    it('garbage on an HTTP port gets 400 and nothing reaches the app', async () => {
      const before = recorded.get('permissive')!.length;
      const r = await send('attacker', {
        host: permissiveIp(),
        port: APP,
        chunks: [{ data: `hello\r\n${FORGERY}\r\n` }],
      });
      assert.match(r.response ?? '', /^HTTP\/1.1 400/, JSON.stringify(r));
      await marker('permissive', 'attacker', { host: permissiveIp(), port: APP }, undefined, before);
    });
  });

  describe('from a meshed pod through its own sidecar over mTLS into a STRICT pod', () => {
    for (const v of variants('mesh')) {
      it(`${v.name}: the app sees the caller's real identity, never the forged one`, async () => {
        const r = await send('meshed', { host: VIP.strict, port: 80, chunks: v.chunks });
        assert.match(r.response ?? '', /^HTTP\/1.1 200/, JSON.stringify(r));
        assert.equal(await receivedBy('strict', v.path), expectedHead(v, id('meshed')));
      });
    }
  });

  describe('a peer with a mesh certificate that declares opaque TCP to a STRICT pod’s HTTP port', () => {
    for (const alpn of ['sluice/tcp', 'sluice/1']) {
      for (const v of variants(alpn.replace('/', '-'))) {
        it(`ALPN ${alpn}, ${v.name}: still parsed as HTTP, real identity only`, async () => {
          const r = await send('attacker', {
            host: strictIp(),
            port: APP,
            chunks: v.chunks,
            tls: { ...attackerCert, alpn: [alpn] },
          });
          assert.match(r.response ?? '', /^HTTP\/1.1 200/, JSON.stringify(r));
          assert.equal(await receivedBy('strict', v.path), expectedHead(v, id('attacker')));
        });
      }
    }
  });

  describe('on an undeclared port (detected): a request whose first bytes come after the detection timeout', () => {
    const slow = (tag: string): Variant => variants(tag)[2]!;
    it('from an un-meshed pod into a PERMISSIVE pod: parsed, no identity', async () => {
      const v = slow('web-plain');
      const r = await send('attacker', { host: permissiveIp(), port: WEB, chunks: v.chunks });
      assert.match(r.response ?? '', /^HTTP\/1.1 200/, JSON.stringify(r));
      assert.equal(await receivedBy(`permissive:${WEB}`, v.path), expectedHead(v, undefined));
    });
    it('from a meshed pod over mTLS into a STRICT pod: the real identity', async () => {
      const v = slow('web-mesh');
      const r = await send('meshed', { host: VIP.strictWeb, port: 81, chunks: v.chunks });
      assert.match(r.response ?? '', /^HTTP\/1.1 200/, JSON.stringify(r));
      assert.equal(await receivedBy(`strict:${WEB}`, v.path), expectedHead(v, id('meshed')));
    });
    it('from a peer with a mesh certificate declaring sluice/tcp: the real identity', async () => {
      const v = slow('web-tcp');
      const tls = { ...attackerCert, alpn: ['sluice/tcp'] };
      const r = await send('attacker', { host: strictIp(), port: WEB, chunks: v.chunks, tls });
      assert.match(r.response ?? '', /^HTTP\/1.1 200/, JSON.stringify(r));
      assert.equal(await receivedBy(`strict:${WEB}`, v.path), expectedHead(v, id('attacker')));
    });
    it('a server-first protocol still works (the server speaks first, then bytes flow as they are)', async () => {
      const r = await send('meshed', {
        host: VIP.strictSmtp,
        port: 25,
        chunks: [{ waitFor: '220 ready\r\n', data: 'ehlo x\r\n' }],
      });
      assert.equal(r.response, '220 ready\r\n250 EHLO X\r\n');
    });
  });

  describe('HTTP/2 (h2c) with a forged identity header, repeated', () => {
    const forged = { 'x-sluice-peer-identity': [FORGED, `${FORGED}-2`] };
    const echoOf = (r: { response?: string }) =>
      JSON.parse(r.response ?? '{}') as { peerIdentity: string | null; headers: Record<string, unknown> };
    it('from an un-meshed pod into a PERMISSIVE pod: no identity', async () => {
      const r = await send('attacker', { kind: 'h2', host: permissiveIp(), port: APP_PORT, headers: forged });
      assert.equal(r.status, 200, JSON.stringify(r));
      assert.equal(echoOf(r).peerIdentity, null);
      assert.equal(echoOf(r).headers['x-sluice-peer-identity'], undefined);
    });
    it('from a meshed pod over mTLS into a STRICT pod: the real identity only', async () => {
      const r = await send('meshed', { kind: 'h2', host: VIP.strictEcho, port: 80, headers: forged });
      assert.equal(r.status, 200, JSON.stringify(r));
      assert.equal(echoOf(r).peerIdentity, id('meshed'));
      assert.equal(echoOf(r).headers['x-sluice-peer-identity'], id('meshed'));
    });
  });

  /** A good request after the bad ones: once it arrived, nothing else did since `before`, byte for byte. */
  async function marker(
    pod: string,
    from: string,
    target: { host: string; port: number },
    identity: string | undefined,
    before: number,
  ): Promise<void> {
    const path = `/marker-${recorded.get(pod)!.length}`;
    const r = await send(from, {
      ...target,
      chunks: [{ data: `GET ${path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n` }],
    });
    assert.match(r.response ?? '', /^HTTP\/1.1 200/, JSON.stringify(r));
    await receivedBy(pod, path);
    const since = recorded
      .get(pod)!
      .slice(before)
      .map((l) => l.data)
      .join('');
    assert.equal(since, expectedHead({ method: 'GET', path, name: '', chunks: [] }, identity));
  }

  const manyHeaders = (n: number, size = 8): string =>
    Array.from({ length: n }, (_, i) => `x-h${i}: ${'v'.repeat(size)}\r\n`).join('');
  const manyH2 = (n: number, size = 8): Record<string, string> =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-h${i}`, 'v'.repeat(size)]));

  it('header limits, inbound listener: 101 headers and a 62 KiB header block get 431 (HTTP/1.1 and h2c)', async () => {
    const before = recorded.get('permissive')!.length;
    const target = { host: permissiveIp(), port: APP };
    const h1 = (headers: string) =>
      send('attacker', {
        ...target,
        chunks: [{ data: `GET /limits HTTP/1.1\r\nhost: app\r\n${headers}\r\n` }],
      });
    assert.match((await h1(manyHeaders(100))).response ?? '', /^HTTP\/1.1 431/);
    assert.match((await h1(manyHeaders(62, 1024))).response ?? '', /^HTTP\/1.1 431/);
    assert.equal((await send('attacker', { ...target, kind: 'h2', headers: manyH2(101) })).status, 431);
    assert.equal((await send('attacker', { ...target, kind: 'h2', headers: manyH2(62, 1024) })).status, 431);
    await marker('permissive', 'attacker', { host: permissiveIp(), port: APP }, undefined, before);
  });

  it('header limits, outbound listener: 101 headers and a 62 KiB header block get 431 (HTTP/1.1 and h2c)', async () => {
    const before = recorded.get('strict')!.length;
    const target = { host: VIP.strict, port: 80 };
    const h1 = (headers: string) =>
      send('meshed', {
        ...target,
        chunks: [{ data: `GET /limits HTTP/1.1\r\nhost: app\r\n${headers}\r\n` }],
      });
    assert.match((await h1(manyHeaders(100))).response ?? '', /^HTTP\/1.1 431/);
    assert.match((await h1(manyHeaders(62, 1024))).response ?? '', /^HTTP\/1.1 431/);
    assert.equal((await send('meshed', { ...target, kind: 'h2', headers: manyH2(101) })).status, 431);
    assert.equal((await send('meshed', { ...target, kind: 'h2', headers: manyH2(62, 1024) })).status, 431);
    await marker('strict', 'meshed', { host: VIP.strict, port: 80 }, id('meshed'), before);
  });
});
