/**
 * Transparent capture end to end: real network namespaces, real iptables (sluice init-iptables) and
 * SO_ORIGINAL_DST read by sidecar/original-dst.ts in a stand-in proxy.
 *
 * Pods: `app` runs init-iptables, a stand-in proxy (uid 1337) listening on the outbound, inbound and admin
 * ports, and an application (uid 1000) on 8080 and on the excluded inbound port 7070. `peer` and `excluded`
 * run plain servers without capture. Every server answers with a JSON report saying which listener took the
 * connection and what its original destination was.
 */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { NetnsHarness, netnsUnavailableReason, nodeBin, repoRoot, type Pod } from '../support/netns.ts';
import type { Report } from '../support/report-server.ts';

const PROXY_UID = 1337;
const APP_UID = 1000;
const CLUSTER_IP = '10.96.0.10';
const CLUSTER_IP6 = 'fd96::10';
const sluice = resolve(repoRoot, 'bin/sluice.js');
const reportServer = resolve(repoRoot, 'test/support/report-server.ts');
const probeClient = resolve(repoRoot, 'test/support/probe-client.ts');

const skipReason = netnsUnavailableReason();

describe('transparent capture (netns + iptables)', function () {
  this.timeout(60000);
  let h: NetnsHarness;
  let app: Pod;
  let peer: Pod;
  let excluded: Pod;
  let initArgs: string[];

  before(async function () {
    if (skipReason !== undefined) {
      console.log(`      skipping capture tests: ${skipReason}`);
      this.skip();
    }
    h = await NetnsHarness.create();
    app = await h.createPod('app');
    peer = await h.createPod('peer');
    excluded = await h.createPod('excluded');
    initArgs = [
      'init-iptables',
      '--exclude-inbound-ports',
      '7070',
      '--exclude-outbound-ports',
      '9091',
      '--exclude-outbound-cidrs',
      `${excluded.ip}/32,${excluded.ip6}`,
    ];
    const out = await h.runIn(app, nodeBin, [sluice, ...initArgs]);
    const line = JSON.parse(out) as Record<string, unknown>;
    assert.equal(line.component, 'init-iptables');
    assert.equal(line.msg, 'capturing TCP');
    assert.deepEqual(line.ipFamilies, ['IPv4', 'IPv6'], 'auto mode must detect the pod IPv6 address');

    await Promise.all([
      startServer(app, ['outbound=15001', 'inbound=15006', 'admin=15021'], PROXY_UID),
      startServer(app, ['app=8080', 'excluded-inbound=7070'], APP_UID),
      startServer(peer, ['peer=9090', 'peer-excluded-port=9091']),
      startServer(excluded, ['excluded-cidr=9090']),
    ]);
  });

  after(async () => {
    await (h as NetnsHarness | undefined)?.destroy(); // unset when skipped or when creation failed
  });

  async function startServer(pod: Pod, listeners: string[], uid?: number): Promise<ChildProcess> {
    const child = h.exec(pod, nodeBin, [reportServer, ...listeners], uid === undefined ? {} : { uid });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    await new Promise<void>((ready, fail) => {
      let stdout = '';
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        if (stdout.includes('ready\n')) ready();
      });
      child.on('exit', (code) => {
        fail(new Error(`report server in ${pod.name} exited ${code}: ${stderr}`));
      });
    });
    return child;
  }

  async function probe(
    from: Pod,
    host: string,
    port: number,
    options: { uid?: number; gid?: number; source?: string } = {},
  ) {
    const args = [probeClient, host, String(port), ...(options.source ? [options.source] : [])];
    const { uid, gid } = options;
    const result = await h.run(from, nodeBin, args, {
      ...(uid === undefined ? {} : { uid }),
      ...(gid === undefined ? {} : { gid }),
    });
    assert.equal(result.code, 0, `probe ${host}:${port} from ${from.name}: ${result.stdout}${result.stderr}`);
    return JSON.parse(result.stdout) as Report;
  }

  async function natTables(): Promise<string> {
    const strip = (text: string) =>
      text
        .split('\n')
        .filter((line) => !line.startsWith('#'))
        .join('\n');
    const v4 = await h.runIn(app, 'iptables-save', ['-t', 'nat']);
    const v6 = await h.runIn(app, 'ip6tables-save', ['-t', 'nat']);
    return `${strip(v4)}\n${strip(v6)}`;
  }

  it('redirects app traffic to a ClusterIP to the outbound port and reports the original destination', async () => {
    const report = await probe(app, CLUSTER_IP, 80, { uid: APP_UID });
    assert.equal(report.label, 'outbound');
    assert.deepEqual(report.original, { address: CLUSTER_IP, port: 80, family: 4 });
  });

  it('captures app traffic to another pod', async () => {
    const report = await probe(app, peer.ip, 9090, { uid: APP_UID });
    assert.equal(report.label, 'outbound');
    assert.deepEqual(report.original, { address: peer.ip, port: 9090, family: 4 });
  });

  it('captures root-owned app traffic too (only the proxy uid is exempt)', async () => {
    const report = await probe(app, CLUSTER_IP, 443);
    assert.equal(report.label, 'outbound');
    assert.deepEqual(report.original, { address: CLUSTER_IP, port: 443, family: 4 });
  });

  it('does not capture traffic from the proxy uid', async () => {
    const report = await probe(app, peer.ip, 9090, { uid: PROXY_UID });
    assert.equal(report.label, 'peer');
    assert.equal(report.remote.replace(/^::ffff:/, '').split(':')[0], app.ip);
  });

  it('leaves loopback app-to-app traffic alone', async () => {
    assert.equal((await probe(app, '127.0.0.1', 8080, { uid: APP_UID })).label, 'app');
    assert.equal((await probe(app, '::1', 8080, { uid: APP_UID })).label, 'app');
    assert.equal((await probe(app, app.ip, 8080, { uid: APP_UID })).label, 'app', 'app to its own pod IP');
  });

  it('redirects inbound traffic from another pod to the inbound port, keeping the original port', async () => {
    const report = await probe(peer, app.ip, 8080);
    assert.equal(report.label, 'inbound');
    assert.deepEqual(report.original, { address: app.ip, port: 8080, family: 4 });
  });

  it('does not redirect inbound traffic to the admin port or excluded inbound ports', async () => {
    assert.equal((await probe(peer, app.ip, 15021)).label, 'admin');
    assert.equal((await probe(peer, app.ip, 7070)).label, 'excluded-inbound');
  });

  it('does not redirect outbound traffic to excluded ports or CIDRs', async () => {
    assert.equal((await probe(app, peer.ip, 9091, { uid: APP_UID })).label, 'peer-excluded-port');
    assert.equal((await probe(app, excluded.ip, 9090, { uid: APP_UID })).label, 'excluded-cidr');
    assert.equal((await probe(app, excluded.ip6!, 9090, { uid: APP_UID })).label, 'excluded-cidr');
  });

  it('sends the proxy calling its own pod IP (Service hairpin) through the inbound port', async () => {
    const report = await probe(app, app.ip, 8080, { uid: PROXY_UID });
    assert.equal(report.label, 'inbound');
    assert.deepEqual(report.original, { address: app.ip, port: 8080, family: 4 });
    // ...but not the inbound hand-off to the application, from 127.0.0.6 or to loopback
    assert.equal((await probe(app, app.ip, 8080, { uid: PROXY_UID, source: '127.0.0.6' })).label, 'app');
    assert.equal((await probe(app, '127.0.0.1', 8080, { uid: PROXY_UID })).label, 'app');
    // ...and the hairpin to the admin port is not redirected either
    assert.equal((await probe(app, app.ip, 15021, { uid: PROXY_UID })).label, 'admin');
  });

  it('captures IPv6 outbound and inbound traffic', async () => {
    const out = await probe(app, CLUSTER_IP6, 80, { uid: APP_UID });
    assert.equal(out.label, 'outbound');
    assert.deepEqual(out.original, { address: CLUSTER_IP6, port: 80, family: 6 });

    const inbound = await probe(peer, app.ip6!, 8080);
    assert.equal(inbound.label, 'inbound');
    assert.deepEqual(inbound.original, { address: app.ip6, port: 8080, family: 6 });

    assert.equal((await probe(app, peer.ip6!, 9090, { uid: PROXY_UID })).label, 'peer');
  });

  it('is idempotent: a re-run leaves identical tables, and changed flags replace the old rules', async () => {
    const before = await natTables();
    assert.equal(before.match(/-j SLUICE_OUTPUT/g)?.length, 2, 'one OUTPUT hook per family');

    await h.runIn(app, nodeBin, [sluice, ...initArgs]);
    assert.equal(await natTables(), before);

    // New flags: proxy gid 1400 exempt too, 9091 no longer excluded.
    await h.runIn(app, nodeBin, [sluice, 'init-iptables', '--proxy-gid', '1400']);
    const changed = await natTables();
    assert.equal(changed.match(/-j SLUICE_OUTPUT/g)?.length, 2);
    assert.doesNotMatch(changed, /9091/);
    assert.equal((await probe(app, peer.ip, 9090, { uid: 2000, gid: 1400 })).label, 'peer');
    assert.equal((await probe(app, peer.ip, 9091, { uid: APP_UID })).label, 'outbound');

    await h.runIn(app, nodeBin, [sluice, ...initArgs]);
    assert.equal(await natTables(), before);
  });

  it('--remove takes every Sluice rule out, and re-installing works', async () => {
    await h.runIn(app, nodeBin, [sluice, 'init-iptables', '--remove']);
    assert.doesNotMatch(await natTables(), /SLUICE/);
    assert.equal((await probe(app, '127.0.0.1', 15001, { uid: APP_UID })).label, 'outbound'); // still listening
    await h.runIn(app, nodeBin, [sluice, ...initArgs]);
    assert.equal((await probe(app, CLUSTER_IP, 80, { uid: APP_UID })).label, 'outbound');
  });

  it('fails with one line and exit code 1 without permission or without iptables', async () => {
    const denied = await h.run(app, nodeBin, [sluice, 'init-iptables', '--ipv6', 'off'], { uid: APP_UID });
    assert.equal(denied.code, 1);
    assert.equal(denied.stdout.split('\n').length, 2, denied.stdout);
    assert.deepEqual(pick(denied.stdout), {
      level: 'error',
      component: 'init-iptables',
      msg: 'iptables-save: permission denied (needs root or CAP_NET_ADMIN in the pod)',
    });

    const missing = await h.run(app, '/usr/bin/env', ['PATH=/nonexistent', nodeBin, sluice, 'init-iptables']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout.split('\n').length, 2, missing.stdout);
    const line = pick(missing.stdout);
    assert.equal(line.level, 'error');
    assert.match(String(line.msg), /^iptables-save not found: install iptables /);
  });
});

function pick(text: string): Record<string, unknown> {
  const line = JSON.parse(text) as Record<string, unknown>;
  return { level: line.level, component: line.component, msg: line.msg };
}
