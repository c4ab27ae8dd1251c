// An upstream endpoint for tests of the pools and the forwarder: ready and serving on port 8080, un-meshed.
import type { Endpoint } from '../../mesh-model/endpoints.ts';

export function testEndpoint(address = '10.0.0.1', state: Partial<Endpoint> = {}): Endpoint {
  return {
    address,
    port: 8080,
    ready: true,
    serving: true,
    terminating: false,
    identity: undefined,
    pod: undefined,
    ...state,
  };
}
