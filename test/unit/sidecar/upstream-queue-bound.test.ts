// The default bound on an endpoint's HTTP/1.1 queue: every request the downstream cap lets in over HTTP/1.1
// (one per client connection) gets a place; a 503 comes only past that. With a queue of 1,024, 2,048 client
// connections to one endpoint got a 503 for about half their requests (ADR 0023). The sidecar-wide bound
// on held requests (4,096 by default) comes first in the forwarder; held-requests.test.ts tests it.
import assert from 'node:assert/strict';
import { DEFAULT_LIMITS } from '../../../sidecar/limits.ts';
import { UpstreamPools, poolOptionsFor } from '../../../sidecar/upstream-pools.ts';
import { testEndpoint } from '../../support/endpoint.ts';

const endpoint = testEndpoint();

describe('upstream queue bound (defaults)', () => {
  it('takes one request from every client connection the listener accepts, and 503s past the queue', () => {
    const pools = new UpstreamPools(() => undefined, poolOptionsFor(DEFAULT_LIMITS));
    const clientConnections = DEFAULT_LIMITS.maxDownstreamConnections;
    for (let i = 0; i < clientConnections; i++) {
      assert.equal(pools.hasCapacity(endpoint, 'http1'), true, `request ${i + 1}`);
      pools.countOutstanding(endpoint, 1);
    }
    const rest = DEFAULT_LIMITS.maxUpstreamConnections + DEFAULT_LIMITS.maxUpstreamQueue - clientConnections;
    for (let i = 0; i < rest; i++) pools.countOutstanding(endpoint, 1);
    assert.equal(pools.hasCapacity(endpoint, 'http1'), false, 'connections and queue full');
    pools.countOutstanding(endpoint, -1);
    assert.equal(pools.hasCapacity(endpoint, 'http1'), true, 'one answered: a place again');
  });
});
