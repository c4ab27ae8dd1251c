// The sidecar-wide bound on held upstream requests: counted across endpoints, HTTP/1.1 and HTTP/2, and both
// pool sets of a sidecar (which share the one poolOptionsFor gives).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type http2 from 'node:http2';
import { DEFAULT_LIMITS } from '../../../sidecar/limits.ts';
import { UpstreamPools, poolOptionsFor } from '../../../sidecar/upstream-pools.ts';
import { testEndpoint as endpoint } from '../../support/endpoint.ts';

describe('held upstream requests bound', () => {
  it('counts HTTP/1.1 and HTTP/2 requests across endpoints and pool sets, and frees a place as one ends', () => {
    const options = poolOptionsFor({ ...DEFAULT_LIMITS, maxHeldRequests: 2 });
    const outbound = new UpstreamPools(() => undefined, options);
    const inbound = new UpstreamPools(() => undefined, { ...options, localAddress: () => undefined });
    const session = new EventEmitter() as unknown as http2.ClientHttp2Session;
    const first = endpoint('10.0.0.1');
    outbound.countOutstanding(first, 1);
    assert.equal(inbound.mayHoldMore(), true, 'one held');
    inbound.streamOpened(session);
    assert.equal(outbound.mayHoldMore(), false, 'two held: at the bound');
    assert.equal(outbound.hasCapacity(endpoint('10.0.0.2'), 'http1'), true, 'the endpoint itself has room');
    inbound.streamClosed(session);
    assert.equal(outbound.mayHoldMore(), true, 'a stream ended');
    inbound.streamOpened(session);
    outbound.countOutstanding(first, -1);
    assert.equal(inbound.mayHoldMore(), true, 'a request let go');
  });

  it('defaults to 4,096; 0 means no bound', () => {
    const pools = new UpstreamPools(() => undefined, poolOptionsFor(DEFAULT_LIMITS));
    const ep = endpoint('10.0.0.1');
    for (let i = 0; i < 4096; i++) {
      assert.equal(pools.mayHoldMore(), true, `request ${i + 1}`);
      pools.countOutstanding(ep, 1);
    }
    assert.equal(pools.mayHoldMore(), false);
    const unbounded = new UpstreamPools(
      () => undefined,
      poolOptionsFor({ ...DEFAULT_LIMITS, maxHeldRequests: 0 }),
    );
    for (let i = 0; i < 20_000; i++) unbounded.countOutstanding(ep, 1);
    assert.equal(unbounded.mayHoldMore(), true);
  });
});
