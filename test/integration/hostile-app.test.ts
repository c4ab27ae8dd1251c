import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import { MeshFixture, tearDownMesh, type MeshPod } from '../support/mesh-fixture.ts';
import type { ClientResult } from '../support/mesh-client.ts';
import { podObject, serviceWithEndpoints } from '../support/mesh-manifests.ts';
import { podRef } from '../support/mesh-pods.ts';
import { netnsUnavailableReason, nodeBin } from '../support/netns.ts';
import { waitFor } from '../support/wait-for.ts';

// ADR 0024's upstream client, tried as an attacker through real sidecars: the server pod's app is
// test/support/hostile-app.ts, which misframes its responses; two callers share the server sidecar's one
// pooled connection to it (--max-upstream-connections 1), so a response framed two ways would hand one
// caller's tagged answer to the other. Each case: every caller gets its own answer or a 5xx/cut, never the
// other's, and the sidecar serves a well-behaved request afterwards.

const NS = 'shop';
const VIP = '10.96.0.92';
const APP = 9092;
const IDLE_MS = 2_000;
const CALLERS = ['A', 'B'] as const;
const tag = (caller: string): string => `caller:${caller};`;

describe('the upstream client against a hostile app, through real sidecars', function () {
  this.timeout(120_000);
  const reason = netnsUnavailableReason();
  let mesh: MeshFixture | undefined;
  let server: MeshPod;
  const appLines: string[] = [];
  tearDownMesh(() => mesh);

  before(async function () {
    if (reason) return this.skip();
    mesh = await MeshFixture.create();
    server = await mesh.addPod({
      name: 'server',
      namespace: NS,
      serviceAccount: 'server',
      meshed: true,
      proxyArgs: [
        '--max-upstream-connections',
        '1',
        '--max-upstream-queue',
        '16',
        '--stream-idle-timeout-ms',
        String(IDLE_MS),
      ],
    });
    const client = await mesh.addPod({
      name: 'client',
      namespace: NS,
      serviceAccount: 'client',
      meshed: true,
    });
    const app = mesh.harness.exec(server, nodeBin, ['test/support/hostile-app.ts', String(APP)]);
    createInterface({ input: app.stdout! }).on('line', (line) => appLines.push(line));
    mesh.writeManifests([
      ...[server, client].map((p) => podObject(podRef(p))),
      ...serviceWithEndpoints(NS, 'hostile', VIP, [[80, APP, 'http']], [podRef(server)]),
    ]);
    await mesh.harness.waitForPort(server, server.ip, APP);
    await mesh.startSidecars();
    await wellBehaved('warmup');
  });

  /** Both callers at once, `count` requests each (one after the other). */
  async function callers(kase: string, plan: Record<string, unknown> = {}): Promise<ClientResult[][]> {
    return Promise.all(
      CALLERS.map((c) =>
        mesh!.client('client', { kind: 'http1', url: `http://${VIP}/${kase}/${c}`, count: 2, ...plan }),
      ),
    );
  }

  async function wellBehaved(caller: string): Promise<void> {
    const [r] = await mesh!.client('client', { kind: 'http1', url: `http://${VIP}/good/${caller}` });
    assert.deepEqual([r?.status, r?.text, r?.error], [200, tag(caller), undefined], JSON.stringify(r));
  }

  /**
   * Every caller's answers are its own (`ok`: 200 with exactly its tag) or refused (`refused`: an error
   * status, or a cut); never the other caller's tag. Then the sidecar is alive and serves a good request.
   */
  async function check(
    kase: string,
    results: ClientResult[][],
    expect: { ok?: boolean; refused?: boolean; status?: number },
  ): Promise<void> {
    results.forEach((answers, i) => {
      const own = CALLERS[i]!;
      const other = CALLERS[1 - i]!;
      for (const r of answers) {
        const seen = `${kase} ${own}: ${JSON.stringify(r)}`;
        assert.ok(!(r.text ?? '').includes(tag(other)), `another caller's bytes: ${seen}`);
        assert.ok(!JSON.stringify(r.headers ?? {}).includes(tag(other)), `another caller's head: ${seen}`);
        const good = r.status === 200 && r.error === undefined && r.text === tag(own);
        const refused = r.error !== undefined || (r.status !== undefined && r.status >= 500);
        const expected = r.status === expect.status && r.error === undefined;
        assert.ok(
          (expect.ok === true && good) || (expect.refused === true && refused) || expected,
          `unexpected answer: ${seen}`,
        );
      }
    });
    assert.equal(server.sidecar!.exitCode, null, 'the sidecar is still running');
    await wellBehaved(`after-${kase}`);
  }

  /** The server sidecar logged this upstream error (or a response cut for it) since `from` (a log index). */
  async function logged(from: number, code: string): Promise<void> {
    await waitFor(`an upstream error ${code} in the server sidecar's log`, () =>
      server.sidecarLog
        .slice(from)
        .some(
          (l) =>
            (l.msg === 'upstream error' && l.code === code) ||
            (l.msg === 'upstream response cut' && l.cause === code),
        ),
    );
  }

  for (const kase of [
    'cl-te',
    'two-cl',
    'te-chunked-identity',
    'obs-fold',
    'chunk-sign',
    'chunk-0x',
    'chunk-overlong',
  ]) {
    it(`smuggling: ${kase} is refused (5xx), never another caller's bytes`, async () => {
      const from = server.sidecarLog.length;
      const results = await callers(kase);
      await check(kase, results, { refused: true });
      // 503 once the client sidecar's outlier detection has ejected the endpoint for its 502s.
      assert.ok(
        results.flat().every((r) => r.status === 502 || r.status === 503),
        JSON.stringify(results),
      );
      await logged(from, 'ERR_UPSTREAM_PARSE');
    });
  }

  it('smuggling: a second response appended to a complete one is dropped with its connection', async () => {
    const closedBefore = appLines.length;
    const results = await callers('appended', { count: 3 });
    // The first response is whole and its caller's; what followed closed the connection.
    await check('appended', results, { ok: true, refused: true });
    assert.ok(appLines.length > closedBefore, 'the connection carrying the appended bytes was closed');
  });

  it('an unsolicited response on an idle pooled connection closes it', async () => {
    const closedBefore = appLines.length;
    const [r] = await mesh!.client('client', { kind: 'http1', url: `http://${VIP}/unsolicited/A` });
    assert.deepEqual([r?.status, r?.text], [200, tag('A')]);
    await waitFor('the app to see its connection closed', () => appLines.length > closedBefore);
    await check('unsolicited', [[], []], {});
  });

  it('a head trickled a byte at a time is read whole', async () => {
    await check('trickle', await callers('trickle', { count: 1 }), { ok: true });
  });

  it('a head trickled past the stream idle timeout in all is cut, though never silent', async () => {
    const from = server.sidecarLog.length;
    const results = await callers('trickle-long', { count: 1 });
    await check('trickle-long', results, { refused: true });
    // The inbound request's own stream idle timer may fire first: no head came to its caller either.
    await waitFor('the trickled head cut in the server sidecar', () =>
      server.sidecarLog
        .slice(from)
        .some(
          (l) =>
            (l.msg === 'upstream error' && l.code === 'ERR_UPSTREAM_HEADERS_TIMEOUT') ||
            (l.msg === 'request cancelled by the client' && l.responseStarted === false),
        ),
    );
  });

  it('a head over the limit is refused (502)', async () => {
    const from = server.sidecarLog.length;
    const results = await callers('huge-head', { count: 1 });
    await check('huge-head', results, { refused: true });
    await logged(from, 'ERR_UPSTREAM_PARSE');
  });

  it('endless 103 interim responses are bounded (their heads count against the head limit)', async () => {
    const from = server.sidecarLog.length;
    const results = await callers('endless-103', { count: 1 });
    await check('endless-103', results, { refused: true });
    await logged(from, 'ERR_UPSTREAM_PARSE');
  });

  it('a body that stalls is cut after the stream idle timeout', async () => {
    const from = server.sidecarLog.length;
    const results = await callers('stall-body', { count: 1 });
    await check('stall-body', results, { refused: true });
    await logged(from, 'ERR_UPSTREAM_BODY_TIMEOUT');
  });

  // Each caller's Node client may still be blocked writing its body when the 413 comes: the sidecar's
  // `Connection: close` lets its next POST go on a new connection (sidecar/early-response.ts, ADR 0024).
  it('an answer before the request body was read: the connection is not reused', async () => {
    const results = await callers('early', { method: 'POST', bodyBytes: 4 * 1024 * 1024, count: 2 });
    await check('early', results, { status: 413, refused: true });
  });

  for (const kase of ['close-mid-head', 'close-mid-body', 'close-after-head']) {
    it(`the app closing (${kase}): a 502 or a cut, then a good request`, async () => {
      await check(kase, await callers(kase, { count: 1 }), { refused: true });
    });
  }
});
