import { join } from 'node:path';
import type { GoBuild } from '../cluster/go-build.ts';
import { REPO_DIR } from '../cluster/paths.ts';

/** The upstream suite release, pinned in cluster/go/gateway-api-conformance/go.mod. */
export const SUITE_VERSION = 'v1.6.1';
export const SUITE_MODULE = 'sigs.k8s.io/gateway-api/conformance';

const moduleDir = (name: string): string => join(REPO_DIR, 'cluster', 'go', name);

/** What `npm run conformance` builds from the Go module proxy, each from a wrapper module in cluster/go/. */
export const CONFORMANCE_BUILDS = {
  /** The unmodified suite: the conformance package's own test (TestConformance) as a binary. */
  suite: {
    name: 'gateway-api-conformance',
    moduleDir: moduleDir('gateway-api-conformance'),
    packages: [SUITE_MODULE],
    testBinary: true,
    binaries: ['conformance.test'],
    coldBuildMinutes: 8,
  },
  /** The backends of the gateway tests (image echo-basic). */
  echoBasic: {
    name: 'echo-basic',
    moduleDir: moduleDir('gateway-api-conformance'),
    packages: [`${SUITE_MODULE}/echo-basic`],
    ldflags: '-s -w',
    binaries: ['echo-basic'],
  },
  /** Istio's echo app, the server and client of the mesh tests (image echo-advanced). */
  istioEcho: {
    name: 'istio-echo',
    moduleDir: moduleDir('istio-echo'),
    packages: ['client', 'server'].map((c) => `istio.io/istio/pkg/test/echo/cmd/${c}`),
    ldflags: '-s -w',
    binaries: ['client', 'server'],
    coldBuildMinutes: 6,
  },
} as const satisfies Record<string, GoBuild>;
