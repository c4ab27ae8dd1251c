// The sidecar's admin port as an attacker in another pod sees it: probes and metrics answer on the pod IP,
// the config dump only on loopback. Real server, real sockets.
import assert from 'node:assert/strict';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { createCa, issueWorkloadCert, loadCa } from '../../../pki/ca.ts';
import { generateKeyPair } from '../../../pki/keys.ts';
import { configDump, createAdminServer, isLoopbackAddress } from '../../../sidecar/admin-server.ts';
import { ProxyMetrics } from '../../../sidecar/metrics.ts';

/** A non-loopback address of this machine (what a pod IP is to the admin server), if it has one. */
function nonLoopbackIpv4(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address;
}

describe('sidecar admin port', () => {
  let server: http.Server;
  let port = 0;

  before(async () => {
    server = createAdminServer({
      ready: () => ({ ok: true, reason: 'ready' }),
      metrics: new ProxyMetrics(),
      view: () => undefined,
      identity: () => ({ spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', notAfter: new Date(0) }),
    });
    await new Promise<void>((resolve) => server.listen({ port: 0, host: '::' }, resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const get = async (host: string, path: string): Promise<{ status: number; body: string }> => {
    const res = await fetch(`http://${host}:${port}${path}`, { signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text() };
  };

  it('knows loopback addresses, mapped or not', () => {
    for (const a of ['127.0.0.1', '127.0.0.6', '::ffff:127.0.0.1', '::1', '::FFFF:127.1.2.3']) {
      assert.equal(isLoopbackAddress(a), true, a);
    }
    for (const a of [
      undefined,
      '10.0.0.1',
      '::ffff:10.0.0.1',
      'fe80::1%eth0',
      '::',
      '0.0.0.0',
      '128.0.0.1',
    ]) {
      assert.equal(isLoopbackAddress(a), false, String(a));
    }
  });

  it('answers everything on loopback (kubectl exec / port-forward)', async () => {
    for (const host of ['127.0.0.1', '[::1]']) {
      const dump = await get(host, '/config_dump');
      assert.equal(dump.status, 200, host);
      assert.match(dump.body, /spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web/);
      assert.equal((await get(host, '/live')).status, 200);
    }
  });

  it('names the root that issued the certificate and the roots it trusts (a CA rotation check)', async () => {
    const oldRoot = await createCa({ trustDomain: 'cluster.local' });
    const newRoot = await createCa({ trustDomain: 'cluster.local' });
    const spiffeId = 'spiffe://cluster.local/ns/shop/sa/web';
    const certPem = await issueWorkloadCert({
      ca: await loadCa(newRoot),
      spiffeId,
      publicKey: (await generateKeyPair()).publicKey,
    });
    const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;
    const dump = configDump({
      ready: () => ({ ok: true, reason: 'ready' }),
      metrics: new ProxyMetrics(),
      view: () => undefined,
      identity: () => ({
        spiffeId,
        notAfter: new Date(0),
        certPem,
        bundlePem: oldRoot.certPem + newRoot.certPem,
      }),
    }) as { identity: { issuer: string; trustRoots: string[] } };
    assert.equal(dump.identity.issuer, fingerprint(newRoot.certPem));
    assert.deepEqual(dump.identity.trustRoots, [fingerprint(oldRoot.certPem), fingerprint(newRoot.certPem)]);
  });

  it('reports memory after a full GC on loopback', async () => {
    const r = await get('127.0.0.1', '/memory');
    assert.equal(r.status, 200);
    const m = JSON.parse(r.body) as NodeJS.MemoryUsage;
    assert.ok(m.heapUsed > 0 && m.heapUsed <= m.heapTotal && m.rss > 0, r.body);
  });

  it('on a non-loopback address: probes and metrics yes, config dump no', async function () {
    const ip = nonLoopbackIpv4();
    if (ip === undefined) return this.skip(); // the netns mesh test covers the pod IP too
    assert.equal((await get(ip, '/live')).status, 200);
    assert.equal((await get(ip, '/ready')).status, 200);
    assert.equal((await get(ip, '/metrics')).status, 200);
    for (const path of ['/config_dump', '/config_dump?x=1', '/memory', '/anything']) {
      const r = await get(ip, path);
      assert.equal(r.status, 403, path);
      assert.doesNotMatch(r.body, /spiffe:/);
    }
  });
});
