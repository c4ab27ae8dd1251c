import { join } from 'node:path';
import { stringify } from 'yaml';
import { CLUSTER } from './cluster-config.ts';
import type { DaemonSpec } from './daemons.ts';
import type { ClusterPaths } from './paths.ts';

/** Where the built binaries are: one directory per wrapper module. */
export interface ClusterBinaries {
  readonly kubernetes: string;
  readonly etcd: string;
  readonly containerd: string;
  readonly coredns: string;
  readonly cniDir: string;
  readonly runc: string;
}

/** Files the daemons read, derived from the paths: one place so that up, down and status agree. */
export function clusterFiles(paths: ClusterPaths) {
  const pki = (name: string): string => join(paths.pkiDir, name);
  return {
    pki,
    kubeconfigDir: join(paths.stateDir, 'kubeconfigs'),
    kubeconfigOf: (user: string): string => join(paths.stateDir, 'kubeconfigs', `${user}.kubeconfig`),
    configDir: join(paths.stateDir, 'config'),
    containerdConfig: join(paths.stateDir, 'config', 'containerd.toml'),
    kubeletConfig: join(paths.stateDir, 'config', 'kubelet.yaml'),
    kubeProxyConfig: join(paths.stateDir, 'config', 'kube-proxy.yaml'),
    containerdSocket: join(paths.runDir, 'containerd', 'containerd.sock'),
    cniConfDir: join(paths.dataDir, 'cni', 'net.d'),
    cniStateDir: join(paths.dataDir, 'cni', 'ipam'),
    etcdData: join(paths.dataDir, 'etcd'),
    kubeletRoot: join(paths.dataDir, 'kubelet'),
    podLogsDir: join(paths.dataDir, 'pod-logs'),
    containerdRoot: join(paths.dataDir, 'containerd'),
    containerdState: join(paths.runDir, 'containerd'),
    runcRoot: join(paths.runDir, 'runc'),
  };
}
export type ClusterFiles = ReturnType<typeof clusterFiles>;

export const PAUSE_IMAGE = 'docker.io/library/sluice-pause:dev';

export function etcd(bin: ClusterBinaries, files: ClusterFiles): DaemonSpec {
  const client = `http://127.0.0.1:${CLUSTER.etcdClientPort}`;
  const peer = `http://127.0.0.1:${CLUSTER.etcdPeerPort}`;
  return {
    name: 'etcd',
    command: join(bin.etcd, 'etcd'),
    args: [
      '--name=sluice',
      `--data-dir=${files.etcdData}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=sluice=${peer}`,
      '--listen-metrics-urls=http://127.0.0.1:2381',
      // A throwaway single-node development cluster: losing the last writes on power loss is fine,
      // waiting for fsync on every write (tens of ms on this VM's disk) is not.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ],
  };
}

export function kubeApiserver(bin: ClusterBinaries, files: ClusterFiles, nodeIp: string): DaemonSpec {
  const { pki } = files;
  return {
    name: 'kube-apiserver',
    command: join(bin.kubernetes, 'kube-apiserver'),
    args: [
      `--advertise-address=${nodeIp}`,
      '--bind-address=0.0.0.0',
      `--secure-port=${CLUSTER.apiServerPort}`,
      `--etcd-servers=http://127.0.0.1:${CLUSTER.etcdClientPort}`,
      `--client-ca-file=${pki('ca.crt')}`,
      `--tls-cert-file=${pki('apiserver.crt')}`,
      `--tls-private-key-file=${pki('apiserver.key')}`,
      `--kubelet-client-certificate=${pki('apiserver-kubelet-client.crt')}`,
      `--kubelet-client-key=${pki('apiserver-kubelet-client.key')}`,
      `--kubelet-certificate-authority=${pki('ca.crt')}`,
      '--kubelet-preferred-address-types=InternalIP,Hostname',
      `--service-account-issuer=${CLUSTER.serviceAccountIssuer}`,
      `--service-account-key-file=${pki('sa.pub')}`,
      `--service-account-signing-key-file=${pki('sa.key')}`,
      `--service-cluster-ip-range=${CLUSTER.serviceCidr}`,
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      '--allow-privileged=true',
      '--profiling=false',
    ],
  };
}

function controlPlaneClient(files: ClusterFiles, user: string): string[] {
  const kubeconfig = files.kubeconfigOf(user);
  return [
    `--kubeconfig=${kubeconfig}`,
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
    '--bind-address=127.0.0.1',
    '--leader-elect=false',
  ];
}

export function kubeControllerManager(bin: ClusterBinaries, files: ClusterFiles): DaemonSpec {
  const { pki } = files;
  return {
    name: 'kube-controller-manager',
    command: join(bin.kubernetes, 'kube-controller-manager'),
    args: [
      ...controlPlaneClient(files, 'controller-manager'),
      `--root-ca-file=${pki('ca.crt')}`,
      `--cluster-signing-cert-file=${pki('ca.crt')}`,
      `--cluster-signing-key-file=${pki('ca.key')}`,
      `--service-account-private-key-file=${pki('sa.key')}`,
      '--use-service-account-credentials=true',
      '--allocate-node-cidrs=true',
      `--cluster-cidr=${CLUSTER.podCidr}`,
      '--node-cidr-mask-size=24',
      `--service-cluster-ip-range=${CLUSTER.serviceCidr}`,
      '--profiling=false',
    ],
  };
}

export function kubeScheduler(bin: ClusterBinaries, files: ClusterFiles): DaemonSpec {
  return {
    name: 'kube-scheduler',
    command: join(bin.kubernetes, 'kube-scheduler'),
    args: [...controlPlaneClient(files, 'scheduler'), '--profiling=false'],
  };
}

export function containerd(bin: ClusterBinaries, files: ClusterFiles): DaemonSpec {
  return {
    name: 'containerd',
    command: join(bin.containerd, 'containerd'),
    args: [`--config=${files.containerdConfig}`],
    // containerd finds its shim (containerd-shim-runc-v2) on PATH.
    env: { PATH: `${bin.containerd}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` },
  };
}

export function kubelet(bin: ClusterBinaries, files: ClusterFiles, nodeIp: string): DaemonSpec {
  return {
    name: 'kubelet',
    command: join(bin.kubernetes, 'kubelet'),
    args: [
      `--config=${files.kubeletConfig}`,
      `--kubeconfig=${files.kubeconfigOf('kubelet-client')}`,
      `--root-dir=${files.kubeletRoot}`,
      `--hostname-override=${CLUSTER.nodeName}`,
      `--node-ip=${nodeIp}`,
    ],
  };
}

export function kubeProxy(bin: ClusterBinaries, files: ClusterFiles): DaemonSpec {
  return {
    name: 'kube-proxy',
    command: join(bin.kubernetes, 'kube-proxy'),
    args: [`--config=${files.kubeProxyConfig}`],
  };
}

/**
 * containerd's configuration. `restrictOomScoreAdj` is for hosts where even root lacks CAP_SYS_RESOURCE
 * (like this VM): runc cannot lower a container's oom_score_adj there, so containerd must not ask it to.
 */
export function containerdConfigToml(
  bin: ClusterBinaries,
  files: ClusterFiles,
  options: { restrictOomScoreAdj: boolean },
): string {
  const cri = "plugins.'io.containerd.cri.v1.runtime'";
  return [
    'version = 4',
    `root = ${JSON.stringify(files.containerdRoot)}`,
    `state = ${JSON.stringify(files.containerdState)}`,
    // Never read the host's /etc/containerd/conf.d: this containerd is ours alone.
    'imports = []',
    // Both would create directories outside ours (/opt/containerd, /var/run/nri); neither is used.
    "disabled_plugins = ['io.containerd.internal.v1.opt', 'io.containerd.nri.v1.nri']",
    '',
    "[plugins.'io.containerd.server.v1.grpc']",
    `  address = ${JSON.stringify(files.containerdSocket)}`,
    '',
    "[plugins.'io.containerd.server.v1.ttrpc']",
    `  address = ${JSON.stringify(`${files.containerdSocket}.ttrpc`)}`,
    '',
    `[${cri}]`,
    '  netns_mounts_under_state_dir = true',
    '  enable_unprivileged_ports = true',
    '  enable_unprivileged_icmp = true',
    `  restrict_oom_score_adj = ${options.restrictOomScoreAdj}`,
    '',
    `[${cri}.containerd]`,
    "  default_runtime_name = 'runc'",
    '',
    `[${cri}.containerd.runtimes.runc]`,
    "  runtime_type = 'io.containerd.runc.v2'",
    '',
    `[${cri}.containerd.runtimes.runc.options]`,
    `  BinaryName = ${JSON.stringify(bin.runc)}`,
    `  Root = ${JSON.stringify(files.runcRoot)}`,
    '  SystemdCgroup = false',
    '',
    `[${cri}.cni]`,
    `  bin_dirs = [${JSON.stringify(bin.cniDir)}]`,
    `  conf_dir = ${JSON.stringify(files.cniConfDir)}`,
    '',
    "[plugins.'io.containerd.cri.v1.images']",
    "  snapshotter = 'overlayfs'",
    '',
    "[plugins.'io.containerd.cri.v1.images'.pinned_images]",
    `  sandbox = ${JSON.stringify(PAUSE_IMAGE)}`,
    '',
  ].join('\n');
}

export function cniConfList(files: ClusterFiles): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: CLUSTER.cniNetwork,
      plugins: [
        {
          type: 'bridge',
          bridge: CLUSTER.bridge,
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: CLUSTER.nodePodCidr }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: files.cniStateDir,
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

export function kubeletConfigYaml(files: ClusterFiles): string {
  return stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: files.pki('ca.crt') },
    },
    authorization: { mode: 'Webhook' },
    tlsCertFile: files.pki('kubelet.crt'),
    tlsPrivateKeyFile: files.pki('kubelet.key'),
    containerRuntimeEndpoint: `unix://${files.containerdSocket}`,
    cgroupDriver: 'cgroupfs',
    // This VM has cgroup v1 controllers (hybrid mode); kubelet 1.36 still runs there when told to.
    failCgroupV1: false,
    failSwapOn: false,
    clusterDNS: [CLUSTER.dnsServiceIp],
    clusterDomain: CLUSTER.clusterDomain,
    podCIDR: CLUSTER.nodePodCidr,
    podLogsDir: files.podLogsDir,
    healthzBindAddress: '127.0.0.1',
    healthzPort: 10248,
    // Images are imported locally and cannot be pulled again: never garbage-collect them.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '2%', 'imagefs.available': '2%' },
    serializeImagePulls: false,
    shutdownGracePeriod: '0s',
  });
}

export function kubeProxyConfigYaml(files: ClusterFiles): string {
  return stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig: files.kubeconfigOf('kube-proxy') },
    hostnameOverride: CLUSTER.nodeName,
    mode: 'iptables',
    clusterCIDR: CLUSTER.podCidr,
    healthzBindAddress: '127.0.0.1:10256',
    metricsBindAddress: '127.0.0.1:10249',
    // Leave the host's conntrack table size alone.
    conntrack: { maxPerCore: 0 },
  });
}
