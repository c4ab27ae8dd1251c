import assert from 'node:assert/strict';
import { MeshFixture, tearDownMesh, APP_PORT, type MeshPod } from '../support/mesh-fixture.ts';
import { podObject, serviceWithEndpoints } from '../support/mesh-manifests.ts';
import { addPods } from '../support/mesh-pods.ts';
import { netnsUnavailableReason, nodeBin } from '../support/netns.ts';
import { waitFor } from '../support/wait-for.ts';

// Upstream connections have connect timeouts: an endpoint whose pod drops every new connection (iptables
// DROP on SYNs: a black hole, not a refusal, like the address of a pod that is gone) gets the request a 503
// naming the cause, counted, within the TCP connect bound (--upstream-tcp-connect-timeout-ms) instead of a
// wait for the kernel's SYN retries and then the stream idle timeout. Both kinds of upstream: a meshed
// endpoint (mTLS to its sidecar) and a plain one (an un-meshed pod). A peer whose TCP connection comes up
// but whose TLS handshake does not is given the whole bound (--upstream-connect-timeout-ms, ADR 0020).

const NS = 'shop';
const MESHED_VIP = '10.96.0.31';
const PLAIN_VIP = '10.96.0.32';
const H2C_VIP = '10.96.0.33';
const STALLED_VIP = '10.96.0.34';
/** The client sidecar's bounds: TCP connect, and the whole connection (TCP and TLS handshake). */
const TCP_MS = 500;
const READY_MS = 1500;

describe('upstream connect timeout: black-holed endpoints get 503, in network namespaces', function () {
  this.timeout(120_000);
  const reason = netnsUnavailableReason();
  let mesh: MeshFixture;
  const pod = (name: string): MeshPod => mesh.pods.get(name)!;

  before(async function () {
    if (reason) return this.skip();
    mesh = await MeshFixture.create();
    const specs = [
      {
        name: 'client',
        serviceAccount: 'client',
        meshed: true,
        // Pooled connections from the warm-up close at once, so the requests below need new ones.
        proxyArgs: [
          ...['--upstream-tcp-connect-timeout-ms', String(TCP_MS)],
          ...['--upstream-connect-timeout-ms', String(READY_MS)],
          ...['--upstream-idle-timeout-ms', '100'],
        ],
      },
      { name: 'meshed', serviceAccount: 'meshed', meshed: true },
      { name: 'plain', serviceAccount: 'plain', meshed: false },
      { name: 'stalled', serviceAccount: 'stalled', meshed: true },
    ];
    const refs = await addPods(mesh, NS, specs);
    mesh.writeManifests([
      ...refs.map(podObject),
      ...serviceWithEndpoints(NS, 'meshed', MESHED_VIP, [[80, APP_PORT, 'http']], [refs[1]!]),
      ...serviceWithEndpoints(NS, 'plain', PLAIN_VIP, [[80, APP_PORT, 'http']], [refs[2]!]),
      // The same meshed pod as an h2c Service: its sidecars talk HTTP/2 (one session, its own connector).
      ...serviceWithEndpoints(NS, 'grpcish', H2C_VIP, [[80, APP_PORT, 'h2c']], [refs[1]!]),
      ...serviceWithEndpoints(NS, 'stalled', STALLED_VIP, [[80, APP_PORT, 'http']], [refs[3]!]),
    ]);
    await mesh.startSidecars();
    // Both answer while they are reachable.
    assert.equal((await get(`http://${MESHED_VIP}/`)).status, 200, mesh.logs());
    assert.equal((await get(`http://${PLAIN_VIP}/`)).status, 200, mesh.logs());
    assert.equal((await get(`http://${STALLED_VIP}/`)).status, 200, mesh.logs());
    // Then new connections from outside the pods vanish (loopback, e.g. the admin port, still works).
    for (const name of ['meshed', 'plain'])
      await mesh.harness.runIn(pod(name), 'iptables', [
        '-w',
        '-I',
        'INPUT',
        '-i',
        'eth0',
        '-p',
        'tcp',
        '--syn',
        '-j',
        'DROP',
      ]);
    // The stalled pod answers SYNs (its kernel does) but drops everything after: TCP comes up on the
    // client's side, the TLS handshake never does.
    await mesh.harness.runIn(pod('stalled'), 'iptables', [
      ...['-w', '-I', 'INPUT', '-i', 'eth0', '-p', 'tcp', '!', '--syn', '-j', 'DROP'],
    ]);
  });

  before(async function () {
    if (reason) return this.skip();
    await waitFor('the warm-up connections to the two pods to close', async () => {
      const table = await mesh.harness.runIn(pod('client'), 'ss', ['-Htn', 'state', 'established']);
      const ips = [pod('meshed').ip, pod('plain').ip, pod('stalled').ip];
      return ips.every((ip) => !table.includes(`${ip}:`)) || undefined;
    });
  });

  tearDownMesh(() => mesh);

  /** One GET from the client pod, as its app would send it (captured by its sidecar), and its ms. */
  async function get(url: string): Promise<{ status: number; body: string; ms: number }> {
    const out = await mesh.harness.runIn(pod('client'), nodeBin, [
      '-e',
      `const t=performance.now(),ms=()=>Math.round(performance.now()-t);fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(60000)}).then(async r=>console.log(JSON.stringify({status:r.status,body:await r.text(),ms:ms()})),e=>console.log(JSON.stringify({status:0,body:String(e),ms:ms()})))`,
    ]);
    return JSON.parse(out) as { status: number; body: string; ms: number };
  }

  /** Whether the client sidecar logged a connect timeout whose error says `text`. */
  const timeoutLogged = (text: string): boolean =>
    pod('client').sidecarLog.some(
      (l) =>
        l.msg === 'upstream error' &&
        l.code === 'ERR_UPSTREAM_CONNECT_TIMEOUT' &&
        String(l.error).includes(text),
    );

  it('a meshed endpoint that drops SYNs: 503 "upstream connect timeout" within the TCP bound', async () => {
    const r = await get(`http://${MESHED_VIP}/held`);
    assert.equal(r.status, 503, r.body);
    assert.ok(r.ms >= TCP_MS && r.ms < READY_MS - 100, `answered after ${r.ms} ms`);
    assert.ok(timeoutLogged(`upstream TCP connect not done within ${TCP_MS} ms`), mesh.logs());
    assert.match(r.body, /upstream connect timeout \(shop\/meshed:80\)/);
    assert.doesNotMatch(r.body, /10\.248\.|spiffe:/); // no address or identity in the body
  });

  it('HTTP/2 to a meshed endpoint that drops SYNs: 503 "upstream connect timeout" too', async () => {
    // An h2c client in the client pod (prior knowledge), as a gRPC app would be.
    const out = await mesh.harness.runIn(pod('client'), nodeBin, [
      '-e',
      `const s=require('node:http2').connect('http://${H2C_VIP}:80');s.on('error',()=>{});` +
        `const r=s.request({':path':'/held'});let b='';r.on('response',h=>{r.on('data',d=>b+=d);` +
        `r.on('end',()=>{console.log(JSON.stringify({status:h[':status'],body:b}));s.close()})});` +
        `r.on('error',e=>{console.log(JSON.stringify({status:0,body:String(e)}));s.close()});r.end()`,
    ]);
    const r = JSON.parse(out) as { status: number; body: string };
    assert.equal(r.status, 503, r.body);
    assert.match(r.body, /upstream connect timeout \(shop\/grpcish:80\)/);
  });

  it('a plain (un-meshed) endpoint that drops SYNs: the same', async () => {
    const r = await get(`http://${PLAIN_VIP}/held`);
    assert.equal(r.status, 503, r.body);
    assert.match(r.body, /upstream connect timeout \(shop\/plain:80\)/);
    const metrics = (await mesh.admin(pod('client'), '/metrics')).body;
    assert.match(metrics, /sluice_errors_total\{direction="outbound",cause="connect_timeout"\} 3/);
    assert.ok(
      pod('client').sidecarLog.some(
        (l) => l.msg === 'upstream error' && l.code === 'ERR_UPSTREAM_CONNECT_TIMEOUT',
      ),
      'the sidecar logs the endpoint and the cause',
    );
  });

  it('a peer whose TCP connection comes up but not its TLS handshake: 503 after the whole bound', async () => {
    const r = await get(`http://${STALLED_VIP}/held`);
    assert.equal(r.status, 503, r.body);
    assert.match(r.body, /upstream connect timeout \(shop\/stalled:80\)/);
    assert.ok(r.ms >= READY_MS, `answered after ${r.ms} ms`);
    const whole = `upstream connect and TLS handshake not done within ${READY_MS} ms`;
    assert.ok(timeoutLogged(whole), mesh.logs());
  });
});
