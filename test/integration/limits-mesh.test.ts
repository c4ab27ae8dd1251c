import assert from 'node:assert/strict';
import { MeshFixture, tearDownMesh, APP_PORT, type MeshPod } from '../support/mesh-fixture.ts';
import { httpRoute, podObject, serviceWithEndpoints } from '../support/mesh-manifests.ts';
import { addPods } from '../support/mesh-pods.ts';
import { netnsUnavailableReason, nodeBin } from '../support/netns.ts';
import { waitFor } from '../support/wait-for.ts';

// Issue 13 points 6 and 7, tried as an attacker in network namespaces: real `sluice init-iptables`
// capture, real `sluice proxy` processes started with short limits, raw TCP clients in the pods.

const NS = 'shop';
const VIP = '10.96.0.10';
const SHORT = [
  '--header-timeout-ms',
  '500',
  '--request-body-idle-timeout-ms',
  '500',
  '--idle-timeout-ms',
  '500',
];

interface Attack {
  data: string;
  closedAfterMs: number;
  heldClosed?: number;
}

interface Echo {
  name: string;
  path: string;
  authority: string | null;
  headers: Record<string, string>;
}

/** Status and body of a raw HTTP/1.1 response (Content-Length or chunked). */
function parseResponse(data: string): { status: number; body: string } {
  const end = data.indexOf('\r\n\r\n');
  assert.ok(end !== -1, `no complete response head in ${JSON.stringify(data)}`);
  const head = data.slice(0, end);
  let body = data.slice(end + 4);
  if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
    let out = '';
    for (;;) {
      const eol = body.indexOf('\r\n');
      const size = parseInt(body.slice(0, eol), 16);
      if (!size) break;
      out += body.slice(eol + 2, eol + 2 + size);
      body = body.slice(eol + 2 + size + 2);
    }
    body = out;
  }
  return { status: Number(head.split(' ')[1]), body };
}

describe('limits and path normalisation, as an attacker, in network namespaces', function () {
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
        proxyArgs: [...SHORT, '--max-upstream-connections', '1', '--max-upstream-queue', '0'],
      },
      { name: 'v1', serviceAccount: 'reviews', meshed: true, proxyArgs: ['--header-timeout-ms', '500'] },
      {
        name: 'capped',
        serviceAccount: 'capped',
        meshed: true,
        proxyArgs: ['--max-downstream-connections', '2'],
      },
      { name: 'plain', serviceAccount: 'plain', meshed: false },
    ];
    const refs = await addPods(mesh, NS, specs);
    const tag = (value: string) => ({
      type: 'RequestHeaderModifier',
      requestHeaderModifier: { set: [{ name: 'x-rule', value }] },
    });
    mesh.writeManifests([
      ...refs.map(podObject),
      ...serviceWithEndpoints(NS, 'reviews', VIP, [[80, APP_PORT, 'http']], [refs[1]!]),
      httpRoute(NS, 'reviews', 'reviews', [
        {
          matches: [{ path: { type: 'Exact', value: '/admin' } }],
          filters: [tag('admin')],
          backendRefs: [{ name: 'reviews', port: 80 }],
        },
        { filters: [tag('other')], backendRefs: [{ name: 'reviews', port: 80 }] },
      ]),
    ]);
    await mesh.startSidecars();
  });

  tearDownMesh(() => mesh);

  async function attack(from: string, plan: Record<string, unknown>): Promise<Attack> {
    const out = await mesh.harness.runIn(
      pod(from),
      nodeBin,
      ['test/support/raw-attacker.ts', JSON.stringify(plan)],
      {
        timeoutMs: 30_000,
      },
    );
    return JSON.parse(out) as Attack;
  }

  const metric = async (name: string, line: RegExp): Promise<boolean> =>
    line.test((await mesh.admin(pod(name), '/metrics')).body);

  it('headers trickled one line every 200 ms past --header-timeout-ms: 408 and closed, outbound and inbound', async () => {
    const trickle = { send: 'GET / HTTP/1.1\r\nHost: reviews\r\n', trickle: 'x-slow: 1\r\n', everyMs: 200 };
    const outbound = await attack('client', { host: VIP, port: 80, ...trickle });
    assert.match(outbound.data, /^HTTP\/1\.1 408 /);
    assert.ok(outbound.closedAfterMs < 5000, `closed after ${outbound.closedAfterMs} ms`);
    const inbound = await attack('plain', { host: pod('v1').ip, port: APP_PORT, ...trickle });
    assert.match(inbound.data, /^HTTP\/1\.1 408 /);
    assert.ok(inbound.closedAfterMs < 5000, `closed after ${inbound.closedAfterMs} ms`);
    assert.ok(await metric('client', /sluice_timeouts_total\{direction="outbound",timeout="header"\} 1/));
    assert.ok(await metric('v1', /sluice_timeouts_total\{direction="inbound",timeout="header"\} 1/));
  });

  it('a request body that stalls past --request-body-idle-timeout-ms: closed, not held', async () => {
    const r = await attack('client', {
      host: VIP,
      port: 80,
      send: 'POST / HTTP/1.1\r\nHost: reviews\r\nContent-Length: 100\r\n\r\nonly-a-little',
    });
    assert.doesNotMatch(r.data, /^HTTP\/1\.1 200 /);
    assert.ok(r.closedAfterMs < 5000, `closed after ${r.closedAfterMs} ms`);
    assert.ok(
      await metric('client', /sluice_timeouts_total\{direction="outbound",timeout="request_body_idle"\} 1/),
    );
  });

  it('an idle keep-alive connection is closed after --idle-timeout-ms', async () => {
    const r = await attack('client', {
      host: VIP,
      port: 80,
      send: 'GET / HTTP/1.1\r\nHost: reviews\r\n\r\n',
    });
    assert.equal(parseResponse(r.data).status, 200);
    assert.ok(r.closedAfterMs < 5000, `closed after ${r.closedAfterMs} ms`);
    assert.ok(await metric('client', /sluice_timeouts_total\{direction="outbound",timeout="idle"\} 1/));
  });

  it('N+1 connections to a listener capped at N: the extra one is closed, the others stay', async () => {
    const r = await attack('plain', { host: pod('capped').ip, port: APP_PORT, send: '', connections: 2 });
    assert.equal(r.data, '');
    assert.equal(r.heldClosed, 0);
    assert.ok(
      await metric('capped', /sluice_overflow_total\{direction="inbound",limit="downstream_connections"\} 1/),
    );
  });

  it('upstream connections per endpoint capped at 1: a second concurrent request gets 503, counted', async () => {
    const v1 = pod('v1');
    const first = mesh.client('client', { kind: 'http1', url: `http://${VIP}/hold?delay=4000` });
    await waitFor('the first request held by the app', () =>
      v1.logs.some((l) => l.includes('holding GET /hold')),
    );
    const [second] = await mesh.client('client', { kind: 'http1', url: `http://${VIP}/second` });
    assert.equal(second!.status, 503);
    assert.ok(
      await metric('client', /sluice_overflow_total\{direction="outbound",limit="upstream_connections"\} 1/),
    );
    const [held] = await first;
    assert.equal(held!.status, 200);
  });

  it('/./admin, /public/../admin, /%61dmin and GET http://other/admin match the /admin rule; the app sees /admin', async () => {
    const send = async (
      target: string,
    ): Promise<{ status: number; echo: Echo | undefined; body: string }> => {
      const r = await attack('client', {
        host: VIP,
        port: 80,
        send: `GET ${target} HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n`,
      });
      const { status, body } = parseResponse(r.data);
      return { status, body, echo: status === 200 ? (JSON.parse(body) as Echo) : undefined };
    };
    for (const target of ['/admin', '/./admin', '/public/../admin', '/%61dmin', '/public/%2e%2e/admin']) {
      const { status, echo } = await send(target);
      assert.equal(status, 200, target);
      assert.equal(echo!.headers['x-rule'], 'admin', target);
      assert.equal(echo!.path, '/admin', target);
      assert.equal(echo!.authority, 'reviews', target);
    }
    const absolute = await send('http://other/admin');
    assert.equal(absolute.echo!.headers['x-rule'], 'admin');
    assert.equal(absolute.echo!.path, '/admin');
    assert.equal(absolute.echo!.authority, 'other');
    const other = await send('/public/x');
    assert.equal(other.echo!.headers['x-rule'], 'other');
    for (const target of ['/public%2F..%2Fadmin', '/../admin', '/admin%00']) {
      const refused = await send(target);
      assert.equal(refused.status, 400, target);
      assert.match(refused.body, /^bad request: /, target);
    }
  });
});
