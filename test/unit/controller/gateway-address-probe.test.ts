import assert from 'node:assert/strict';
import net from 'node:net';
import { GatewayAddressProbes } from '../../../controller/gateway-address-probe.ts';
import { GatewayStatusLoop } from '../../../controller/gateway-status-loop.ts';
import type { StatusWriter } from '../../../controller/status-writer.ts';
import type { K8sObject } from '../../../mesh-model/k8s-objects.ts';
import type { GatewayStatuses } from '../../../mesh-model/gateway-status.ts';
import { freePort } from '../../support/free-port.ts';
import { waitFor } from '../../support/wait-for.ts';

const silent = { info: () => {}, warn: () => {}, error: () => {} };

describe('gateway address probes (loopback)', () => {
  const servers: net.Server[] = [];
  const probes: GatewayAddressProbes[] = [];
  const listenOn = async (port: number): Promise<void> => {
    const server = net.createServer((s) => s.destroy());
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  };
  const newProbes = (options: { giveUpMs?: number } = {}) => {
    const changes: number[] = [];
    const p = new GatewayAddressProbes({ onChange: () => changes.push(1), intervalMs: 10, ...options });
    probes.push(p);
    return { probes: p, changes };
  };
  afterEach(async () => {
    for (const p of probes.splice(0)) p.stop();
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  it('waits while a port refuses connections, answers once every port accepts them', async () => {
    const [a, b] = [await freePort(), await freePort()];
    await listenOn(a);
    const { probes: p, changes } = newProbes();
    assert.deepEqual(p.check('edge/web', '127.0.0.1', [a, b]), { state: 'waiting', detail: 'not tried yet' });
    const refused = await waitFor('the refused port', () => {
      const c = p.check('edge/web', '127.0.0.1', [b, a]); // same target, any port order
      return c.state === 'waiting' && c.detail !== 'not tried yet' && c;
    });
    assert.deepEqual(refused, { state: 'waiting', detail: `127.0.0.1:${b}: ECONNREFUSED` });
    assert.equal(changes.length, 0);
    await listenOn(b);
    await waitFor('the change', () => changes.length === 1);
    assert.deepEqual(p.check('edge/web', '127.0.0.1', [a, b]), { state: 'answering' });
  });

  it('starts again for a new target or after forget, and gives up as unverified', async () => {
    const port = await freePort();
    await listenOn(port);
    const { probes: p, changes } = newProbes();
    p.check('edge/web', '127.0.0.1', [port]);
    await waitFor('answering', () => p.check('edge/web', '127.0.0.1', [port]).state === 'answering');
    const closed = await freePort();
    assert.equal(p.check('edge/web', '127.0.0.1', [port, closed]).state, 'waiting'); // a listener added
    p.forget('edge/web');
    assert.deepEqual(p.check('edge/web', '127.0.0.1', [port]), { state: 'waiting', detail: 'not tried yet' });
    assert.ok(changes.length >= 1);

    const { probes: quick } = newProbes({ giveUpMs: 0 });
    quick.check('edge/shut', '127.0.0.1', [closed]);
    const given = await waitFor('giving up', () => {
      const c = quick.check('edge/shut', '127.0.0.1', [closed]);
      return c.state === 'unverified' && c;
    });
    assert.deepEqual(given, { state: 'unverified', detail: `127.0.0.1:${closed}: ECONNREFUSED` });
  });

  it('keeps the Gateway unprogrammed in the status loop until its address answers', async () => {
    const gateway: K8sObject = {
      kind: 'Gateway',
      metadata: { name: 'web', namespace: 'edge', generation: 1 },
      spec: {},
    };
    const pod: K8sObject = {
      kind: 'Pod',
      metadata: {
        name: 'web-1',
        namespace: 'edge',
        labels: { 'gateway.networking.k8s.io/gateway-name': 'web' },
      },
      status: { conditions: [{ type: 'Ready', status: 'True' }] },
    };
    const port = await freePort();
    const service: K8sObject = {
      kind: 'Service',
      metadata: { name: 'web-sluice', namespace: 'edge' },
      spec: { clusterIP: '127.0.0.1', ports: [{ port }] },
    };
    const accepted = { type: 'Accepted', status: 'True' as const, reason: 'Accepted', message: 'ok' };
    const statuses = {
      gatewayClasses: new Map(),
      gateways: new Map([['edge/web', { conditions: [accepted], listeners: [] }]]),
      routeParents: new Map(),
    } as unknown as GatewayStatuses;
    const written: Record<string, unknown>[] = [];
    const writer = {
      active: true,
      write: (obj: K8sObject, update: (current: K8sObject) => Record<string, unknown> | undefined) => {
        const status = update(obj);
        if (status) written.push(status);
        return Promise.resolve();
      },
    } as unknown as StatusWriter;
    const loop = new GatewayStatusLoop({
      writer,
      log: silent,
      statuses: () => statuses,
      gatewayClasses: () => [],
      gateways: () => [gateway],
      pods: () => [pod],
      services: () => [service],
      problems: () => new Map(),
      active: () => true,
      probes: newProbes().probes,
    });
    const programmed = (): { status: string; message: string } | undefined => {
      const last = written.at(-1) as
        { conditions: { type: string; status: string; message: string }[] } | undefined;
      return last?.conditions.find((c) => c.type === 'Programmed');
    };
    loop.rebuild();
    assert.equal(programmed()?.status, 'False');
    await waitFor('the refusal in the message', () => {
      loop.rebuild();
      return programmed()?.message.includes('ECONNREFUSED');
    });
    await listenOn(port);
    await waitFor('Programmed', () => {
      loop.rebuild();
      return programmed()?.status === 'True';
    });
    loop.stop();
  });
});
