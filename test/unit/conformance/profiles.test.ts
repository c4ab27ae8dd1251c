import assert from 'node:assert/strict';
import {
  GATEWAY_EXTENDED,
  MESH_EXTENDED,
  parseProfiles,
  supportedFeatures,
} from '../../../conformance/profiles.ts';
import { GATEWAY_SUPPORTED_FEATURES } from '../../../mesh-model/gateway-status.ts';

describe('conformance profiles', () => {
  it('parses a profile list in the canonical order, case-insensitively', () => {
    assert.deepEqual(parseProfiles('gateway-grpc, MESH-HTTP'), ['MESH-HTTP', 'GATEWAY-GRPC']);
    assert.throws(() => parseProfiles('MESH-TCP'), /unknown profile MESH-TCP/);
    assert.throws(() => parseProfiles(' , '), /names no profile/);
  });

  it('declares every mesh extended feature for a mesh run and no gateway feature', () => {
    const features = supportedFeatures(['MESH-HTTP', 'MESH-GRPC']);
    for (const feature of [...MESH_EXTENDED, 'Mesh', 'HTTPRoute', 'GRPCRoute']) {
      assert.ok(features.includes(feature), feature);
    }
    assert.ok(!features.includes('Gateway'));
    assert.ok(!features.includes('ReferenceGrant'));
  });

  it('declares the gateway features only when a gateway profile runs: core and the passing extended ones', () => {
    const features = supportedFeatures(['GATEWAY-HTTP']);
    assert.deepEqual(
      features.sort(),
      ['GRPCRoute', 'Gateway', 'HTTPRoute', 'ReferenceGrant', ...GATEWAY_EXTENDED].sort(),
    );
    assert.ok(!features.includes('Mesh'));
  });

  it('declares to the suite exactly what the GatewayClass status lists as supported', () => {
    assert.deepEqual(supportedFeatures(['GATEWAY-HTTP', 'GATEWAY-GRPC']).sort(), [
      ...GATEWAY_SUPPORTED_FEATURES,
    ]);
  });
});
