import assert from 'node:assert/strict';
import { createCa, issueWorkloadCert, loadCa } from '../../../pki/ca.ts';
import { parseIdentity } from '../../../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../../../pki/keys.ts';
import { buildGatewayConfig, type GatewayConfig } from '../../../sidecar/gateway-config.ts';
import { GatewayProxy } from '../../../sidecar/gateway-proxy.ts';
import type { ConfigSource } from '../../../sidecar/config-source.ts';
import { sluiceGateway, sluiceGatewayClass } from '../../support/gateway-manifests.ts';
import { freePort } from '../../support/free-port.ts';
import { waitFor } from '../../support/wait-for.ts';

const TD = 'cluster.local';
const silent = { info: () => {}, warn: () => {}, error: () => {} };

describe('gateway proxy ports (loopback)', () => {
  it('reports a listener port as open, and itself ready, only once the port is bound', async () => {
    const ca = await loadCa(await createCa({ trustDomain: TD }));
    const keys = await generateKeyPair();
    const identity = parseIdentity({
      certPem: await issueWorkloadCert({
        ca,
        spiffeId: `spiffe://${TD}/ns/edge/sa/gw-sluice`,
        publicKey: keys.publicKey,
      }),
      keyPem: await privateKeyToPem(keys.privateKey),
      bundlePem: ca.certPem,
    });
    let deliver: ((config: GatewayConfig) => void) | undefined;
    const source: ConfigSource<GatewayConfig> = {
      name: 'test',
      start: (onView) => (deliver = onView),
      stop: () => {},
    };
    const [port, adminPort] = [await freePort(), await freePort()];
    const proxy = new GatewayProxy({
      identity: { name: 'test', start: () => Promise.resolve(identity), stop: () => {} },
      source,
      adminPort,
      bind: '127.0.0.1',
      detectTimeoutMs: 1000,
      drainMs: 0,
      log: silent,
    });
    await proxy.start();
    const ready = async () => (await fetch(`http://127.0.0.1:${adminPort}/ready`)).status;
    try {
      assert.equal(await ready(), 503);
      const objects = [
        sluiceGatewayClass(),
        sluiceGateway('edge', 'gw', [{ name: 'http', port, protocol: 'HTTP' }]),
      ];
      deliver!(buildGatewayConfig(objects, 'edge', 'gw', TD));
      // listen() has been called and has not completed: the port is not open yet.
      assert.deepEqual(proxy.ports, []);
      await waitFor('the port bound', () => proxy.ports.includes(port));
      assert.equal(await ready(), 200);
    } finally {
      proxy.stop();
    }
  });
});
