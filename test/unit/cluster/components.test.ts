import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { clusterComponents } from '../../../cluster/control-plane.ts';
import { clusterFiles, containerdConfigToml, kubeletConfigYaml } from '../../../cluster/components.ts';
import { clusterPaths } from '../../../cluster/paths.ts';

const paths = clusterPaths({ SLUICE_CLUSTER_CACHE: '/cache' });
const files = clusterFiles(paths);
const bin = {
  kubernetes: '/b/k8s',
  etcd: '/b/etcd',
  containerd: '/b/containerd',
  runc: '/b/runc/runc',
  coredns: '/b/coredns',
  cniDir: '/usr/lib/cni',
};

describe('local cluster components', () => {
  it('starts the control plane before the node agents, each with its own binary', () => {
    const specs = clusterComponents(bin, files, '192.0.2.9').map((c) => c.spec);
    assert.deepEqual(
      specs.map((s) => s.name),
      [
        'etcd',
        'kube-apiserver',
        'kube-controller-manager',
        'kube-scheduler',
        'containerd',
        'kubelet',
        'kube-proxy',
      ],
    );
    assert.ok(specs.every((s) => s.command.startsWith('/b/')));
    const apiserver = specs.find((s) => s.name === 'kube-apiserver')!;
    assert.ok(apiserver.args.includes('--advertise-address=192.0.2.9'));
    assert.ok(apiserver.args.includes('--authorization-mode=Node,RBAC'));
  });

  it('keeps containerd in our own directories and off the host configuration', () => {
    const toml = containerdConfigToml(bin, files, { restrictOomScoreAdj: true });
    for (const line of toml.split('\n').filter((l) => l.includes('"/'))) {
      assert.match(line, /"(\/var\/lib\/sluice-cluster|\/run\/sluice-cluster|\/b\/|\/usr\/lib\/cni)/, line);
    }
    assert.match(toml, /^imports = \[\]$/m);
    assert.match(toml, /restrict_oom_score_adj = true/);
    assert.match(toml, /sandbox = "docker.io\/library\/sluice-pause:dev"/);
  });

  it('configures kubelet for cgroup v1 hosts, local images and our log directory', () => {
    const config = parse(kubeletConfigYaml(files)) as Record<string, unknown>;
    assert.equal(config.failCgroupV1, false);
    assert.equal(config.imageGCHighThresholdPercent, 100);
    assert.equal(config.podLogsDir, '/var/lib/sluice-cluster/pod-logs');
  });
});
