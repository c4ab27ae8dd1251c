// The conformance profiles Sluice runs and the features it declares for each: only what the mesh model and
// the sidecar implement (mesh-model/compile-filters.ts, compile-matches.ts, port-routing.ts) and what the
// suite's tests then show to pass. See conformance/README.md for every extended feature and why.

import { GATEWAY_SUPPORTED_FEATURES } from '../mesh-model/gateway-status.ts';

export const MESH_PROFILES = ['MESH-HTTP', 'MESH-GRPC'] as const;
export const GATEWAY_PROFILES = ['GATEWAY-HTTP', 'GATEWAY-GRPC'] as const;
export type Profile = (typeof MESH_PROFILES)[number] | (typeof GATEWAY_PROFILES)[number];
export const ALL_PROFILES: readonly Profile[] = [...MESH_PROFILES, ...GATEWAY_PROFILES];

/** Core features of the mesh profiles (the suite adds them itself; listed so the flag says it all). */
const MESH_CORE = ['Mesh', 'HTTPRoute', 'GRPCRoute'];

/** Every extended feature of the MESH-HTTP and MESH-GRPC profiles in v1.6.1: all implemented. */
export const MESH_EXTENDED = [
  'MeshClusterIPMatching',
  'MeshConsumerRoute',
  'MeshHTTPRouteRewritePath',
  'MeshHTTPRouteSchemeRedirect',
  'MeshHTTPRouteRedirectPort',
  'MeshHTTPRouteRedirectPath',
  'MeshHTTPRouteBackendRequestHeaderModification',
  'MeshHTTPRouteQueryParamMatching',
  'MeshHTTPRouteNamedRouteRule',
];

/**
 * HTTPRoute features outside the mesh profiles that mesh tests need besides (response header edits, a
 * parentRef port, the redirect status codes of the provisional tests): implemented by the same model.
 */
const MESH_HTTPROUTE_FEATURES = [
  'HTTPRouteResponseHeaderModification',
  'HTTPRouteParentRefPort',
  'HTTPRoute303RedirectStatusCode',
  'HTTPRoute307RedirectStatusCode',
  'HTTPRoute308RedirectStatusCode',
];

/** Gateway core features (the suite adds them itself). */
const GATEWAY_CORE = ['Gateway', 'ReferenceGrant', 'HTTPRoute', 'GRPCRoute'];

/**
 * The extended features of GATEWAY-HTTP and GATEWAY-GRPC declared: what the GatewayClass status lists
 * (mesh-model/gateway-status.ts), so the suite and users are told the same. README lists the others and why.
 */
export const GATEWAY_EXTENDED: readonly string[] = GATEWAY_SUPPORTED_FEATURES.filter(
  (f) => !GATEWAY_CORE.includes(f),
);

export function isGatewayProfile(profile: Profile): boolean {
  return (GATEWAY_PROFILES as readonly string[]).includes(profile);
}

/** Parses `--profiles=MESH-HTTP,GATEWAY-GRPC` (case-insensitive); throws on an unknown name. */
export function parseProfiles(text: string): Profile[] {
  const wanted = text
    .split(',')
    .map((p) => p.trim().toUpperCase())
    .filter((p) => p !== '');
  if (wanted.length === 0) throw new Error('--profiles names no profile');
  for (const name of wanted) {
    if (!(ALL_PROFILES as readonly string[]).includes(name)) {
      throw new Error(`unknown profile ${name} (known: ${ALL_PROFILES.join(', ')})`);
    }
  }
  return ALL_PROFILES.filter((p) => wanted.includes(p));
}

/** The suite's --supported-features for a run of these profiles. */
export function supportedFeatures(profiles: readonly Profile[]): string[] {
  const features = new Set<string>();
  if (profiles.some((p) => !isGatewayProfile(p))) {
    for (const f of [...MESH_CORE, ...MESH_EXTENDED, ...MESH_HTTPROUTE_FEATURES]) features.add(f);
  }
  if (profiles.some(isGatewayProfile))
    for (const f of [...GATEWAY_CORE, ...GATEWAY_EXTENDED]) features.add(f);
  return [...features];
}
