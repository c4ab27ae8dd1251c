import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { MeshFixture, tearDownMesh, type MeshPod } from '../support/mesh-fixture.ts';
import { podObject } from '../support/mesh-manifests.ts';
import { netnsUnavailableReason, nodeBin } from '../support/netns.ts';
import { waitFor } from '../support/wait-for.ts';

// What the capture promises at the network level (docs/security.md, "Traffic capture"), tried as an attacker
// in another pod would: real `sluice init-iptables`, real `sluice proxy` processes, network namespaces.
// Pods have IPv4 and only the link-local IPv6 address the kernel gives every interface.

const NS = 'sec';

interface RawResult {
  connected: boolean;
  closed: boolean;
  error?: string;
  received: string;
}

describe('capture guarantees: self-loops, loopback ports, IPv6 (netns + iptables)', function () {
  this.timeout(120_000);
  const reason = netnsUnavailableReason();
  let mesh: MeshFixture;
  let app: MeshPod;
  let attacker: MeshPod;
  let legacy: MeshPod;

  /** Two more apps: one on loopback only (a debug port), one on every IPv4 address. */
  async function startPortApps(pod: MeshPod): Promise<void> {
    const server = (port: number, host: string, answer: string): string =>
      `require('http').createServer((q,s)=>s.end('${answer}')).listen(${port},'${host}')`;
    mesh.harness.exec(pod, nodeBin, [
      '-e',
      `${server(9000, '127.0.0.1', 'private')};${server(9001, '0.0.0.0', 'public')}`,
    ]);
    await mesh.harness.waitForPort(pod, '127.0.0.1', 9000);
    await mesh.harness.waitForPort(pod, '0.0.0.0', 9001);
  }

  before(async function () {
    if (reason) return this.skip();
    mesh = await MeshFixture.create({ ipv6: false });
    app = await mesh.addPod({ name: 'app', namespace: NS, serviceAccount: 'app', meshed: true });
    attacker = await mesh.addPod({ name: 'attacker', namespace: NS, serviceAccount: 'x', meshed: false });
    legacy = await mesh.addPod({
      name: 'legacy',
      namespace: NS,
      serviceAccount: 'legacy',
      meshed: true,
      // what the injector passes for the annotation sluice.dev/inbound-to-localhost: "true"
      proxyArgs: ['--inbound-to-localhost=true'],
    });
    await startPortApps(app);
    await startPortApps(legacy);
    mesh.writeManifests(
      [app, attacker, legacy].map((p) =>
        podObject({
          name: p.name,
          namespace: NS,
          ip: p.ip,
          serviceAccount: p.spec.serviceAccount,
          meshed: p.spec.meshed,
        }),
      ),
    );
    await mesh.startSidecars();
  });

  tearDownMesh(() => mesh);

  async function raw(
    from: MeshPod,
    host: string,
    port: number,
    payload: string,
    guardMs = 10_000,
  ): Promise<RawResult> {
    const out = await mesh.harness.runIn(from, nodeBin, [
      'test/support/raw-request.ts',
      host,
      String(port),
      JSON.stringify(payload),
      String(guardMs),
    ]);
    return JSON.parse(out) as RawResult;
  }

  function openFiles(pod: MeshPod): number {
    return readdirSync(`/proc/${pod.sidecar!.pid}/fd`).length;
  }

  function rssBytes(pod: MeshPod): number {
    const status = readFileSync(`/proc/${pod.sidecar!.pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024;
  }

  async function selfLoopRefusals(pod: MeshPod): Promise<number> {
    const { body } = await mesh.admin(pod, '/metrics');
    return [...body.matchAll(/^sluice_errors_total\{[^}]*cause="self_loop"[^}]*\} (\d+)$/gm)].reduce(
      (sum, m) => sum + Number(m[1]),
      0,
    );
  }

  describe("point 2: a connection to the proxy's own ports is refused, not looped", () => {
    for (const port of [15006, 15001]) {
      it(`one request from another pod to <podIP>:${port} is closed and leaves open files and memory flat`, async () => {
        const refusedBefore = await selfLoopRefusals(app);
        const filesBefore = openFiles(app);
        const rssBefore = rssBytes(app);
        const request = 'GET / HTTP/1.1\r\nHost: loop\r\nX-Pad: 1\r\n\r\n'; // 40 bytes
        assert.equal(request.length, 40);

        const result = await raw(attacker, app.ip, port, request);
        assert.equal(result.closed, true, `the connection to :${port} stayed open`);
        assert.equal(result.received, '', 'nothing answers a self-addressed connection');

        await waitFor(
          `the self-loop refusal on :${port} to be counted`,
          async () => {
            return (await selfLoopRefusals(app)) === refusedBefore + 1;
          },
          { timeoutMs: 30_000, intervalMs: 200 },
        );
        // A loop would keep opening sockets after the client left; the count has to come back down.
        await waitFor(
          `open files of the sidecar back to ${filesBefore}`,
          () => openFiles(app) <= filesBefore + 2,
          {
            detail: () => `open files now ${openFiles(app)}`,
          },
        );
        assert.equal(await selfLoopRefusals(app), refusedBefore + 1, 'exactly one refusal, no rounds');
        assert.ok(openFiles(app) <= filesBefore + 2, `open files ${filesBefore} → ${openFiles(app)}`);
        const grown = rssBytes(app) - rssBefore;
        assert.ok(grown < 32 * 1024 * 1024, `RSS grew by ${Math.round(grown / 1024)} KiB`);
      });
    }
  });

  describe('point 3: inbound traffic goes to the pod IP, so loopback-only ports stay private', () => {
    const get = 'GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n';

    it('an app port bound to 127.0.0.1 is not reachable from another pod through the sidecar (PERMISSIVE)', async () => {
      const result = await raw(attacker, app.ip, 9000, get);
      assert.equal(result.closed, true);
      assert.doesNotMatch(result.received, /private/);
      assert.match(result.received, /^HTTP\/1\.1 50[23] /, 'the sidecar answers: the app is not there');
    });

    it('an app port bound to 0.0.0.0 is, and so is the echo app on ::', async () => {
      const result = await raw(attacker, app.ip, 9001, get);
      assert.match(result.received, /^HTTP\/1\.1 200 [^]*public$/);
      assert.match((await raw(attacker, app.ip, 9080, get)).received, /^HTTP\/1\.1 200 /);
    });

    it('an opaque (non-HTTP) connection to the loopback-only port is closed without reaching it', async () => {
      const result = await raw(attacker, app.ip, 9000, '\x16not http, not tls');
      assert.equal(result.closed, true);
      assert.equal(result.received, '');
    });

    it('with sluice.dev/inbound-to-localhost: "true" the pod keeps the old behaviour (loopback ports reachable)', async () => {
      assert.match((await raw(attacker, legacy.ip, 9000, get)).received, /^HTTP\/1\.1 200 [^]*private$/);
      assert.match((await raw(attacker, legacy.ip, 9001, get)).received, /^HTTP\/1\.1 200 [^]*public$/);
    });
  });

  describe('point 4: a pod without routable IPv6 is not reachable over its link-local address', () => {
    const get = 'GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n';

    /** The pod's link-local address with its zone, once duplicate address detection is over. */
    async function linkLocal(pod: MeshPod): Promise<string> {
      return waitFor(
        `a usable link-local address in ${pod.name}`,
        async () => {
          const out = await mesh.harness.runIn(pod, 'ip', [
            '-6',
            '-o',
            'addr',
            'show',
            'dev',
            'eth0',
            'scope',
            'link',
          ]);
          const match = /inet6 (fe80::[0-9a-f:]+)\/64/.exec(out);
          return match && !/tentative/.test(out) ? `${match[1]}%eth0` : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 100 },
      );
    }

    it('init-iptables (--ipv6 auto) installed the IPv6 guard, and no IPv6 capture', async () => {
      const filter = await mesh.harness.runIn(app, 'ip6tables-save', ['-t', 'filter']);
      assert.match(filter, /^-A INPUT -j SLUICE_IN6_GUARD$/m);
      assert.match(filter, /^-A SLUICE_IN6_GUARD -j DROP$/m);
      assert.doesNotMatch(await mesh.harness.runIn(app, 'ip6tables-save', ['-t', 'nat']), /SLUICE/);
    });

    it('an app listening on :: does not answer another pod over IPv6 link-local', async () => {
      const [appAddress, attackerAddress] = await Promise.all([linkLocal(app), linkLocal(attacker)]);
      // Control: link-local works between the two pods (the attacker is not guarded), and the answers to a
      // connection the guarded pod opened itself come back in (established).
      const control = await raw(app, attackerAddress, 9080, get);
      assert.match(control.received, /^HTTP\/1\.1 200 /, JSON.stringify(control));

      const attack = await raw(attacker, appAddress, 9080, get, 3000);
      assert.equal(attack.connected, false, JSON.stringify(attack));
      assert.equal(attack.received, '');
      // ...while the same app is reachable over IPv4, through the sidecar.
      assert.match((await raw(attacker, app.ip, 9080, get)).received, /^HTTP\/1\.1 200 /);
    });
  });
});
