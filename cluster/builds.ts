import { join } from 'node:path';
import { CLUSTER } from './cluster-config.ts';
import type { GoBuild } from './go-build.ts';
import { REPO_DIR } from './paths.ts';

const moduleDir = (name: string): string => join(REPO_DIR, 'cluster', 'go', name);
const K8S_COMPONENTS = [
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubelet',
  'kube-proxy',
  'kubectl',
];

function versionFlags(pkg: string, version: string): string {
  const [major = '', minor = ''] = version.replace(/^v/, '').split('.');
  return [`gitVersion=${version}`, `gitMajor=${major}`, `gitMinor=${minor}`, 'gitTreeState=clean']
    .map((value) => `-X ${pkg}.${value}`)
    .join(' ');
}

/** The binaries of the local cluster, each built from a wrapper module in cluster/go/ (see its go.mod). */
export const BUILDS = {
  kubernetes: {
    name: 'kubernetes',
    moduleDir: moduleDir('kubernetes'),
    packages: K8S_COMPONENTS.map((c) => `k8s.io/kubernetes/cmd/${c}`),
    // What the upstream release build uses.
    tags: ['selinux', 'notest', 'grpcnotrace'],
    ldflags: [
      '-s -w',
      versionFlags('k8s.io/component-base/version', CLUSTER.kubernetesVersion),
      versionFlags('k8s.io/client-go/pkg/version', CLUSTER.kubernetesVersion),
    ].join(' '),
    binaries: K8S_COMPONENTS,
    coldBuildMinutes: 15,
  },
  etcd: {
    name: 'etcd',
    moduleDir: moduleDir('etcd'),
    packages: ['sluice.dev/cluster/etcd'],
    ldflags: '-s -w',
    binaries: ['etcd'],
  },
  containerd: {
    name: 'containerd',
    moduleDir: moduleDir('containerd'),
    packages: ['containerd', 'containerd-shim-runc-v2', 'ctr'].map(
      (c) => `github.com/containerd/containerd/v2/cmd/${c}`,
    ),
    ldflags: `-s -w -X github.com/containerd/containerd/v2/version.Version=${CLUSTER.containerdVersion}`,
    binaries: ['containerd', 'containerd-shim-runc-v2', 'ctr'],
  },
  runc: {
    name: 'runc',
    moduleDir: moduleDir('runc'),
    packages: ['github.com/opencontainers/runc'],
    // runc's nsexec is C, and seccomp filters need libseccomp: the one build with cgo.
    cgo: true,
    tags: ['seccomp'],
    ldflags: `-s -w -X main.version=${CLUSTER.runcVersion.replace(/^v/, '')}`,
    binaries: ['runc'],
  },
  coredns: {
    name: 'coredns',
    moduleDir: moduleDir('coredns'),
    packages: ['sluice.dev/cluster/coredns'],
    ldflags: '-s -w',
    binaries: ['coredns'],
  },
} as const satisfies Record<string, GoBuild>;
