import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO_DIR } from '../../../cluster/paths.ts';

interface Resource {
  kind: string;
  metadata: { name: string; namespace?: string };
  [field: string]: unknown;
}

describe('cluster/manifests/coredns.yaml', () => {
  let resources: Resource[];
  before(async () => {
    const text = await readFile(join(REPO_DIR, 'cluster/manifests/coredns.yaml'), 'utf8');
    resources = parseAllDocuments(text).map((doc) => {
      assert.deepEqual([...doc.errors, ...doc.warnings], []);
      return doc.toJS() as Resource;
    });
  });

  function find(kind: string): Record<string, unknown> {
    const found = resources.find((r) => r.kind === kind);
    assert.ok(found, `no ${kind}`);
    return found;
  }

  it('holds the DNS resources', () => {
    assert.deepEqual(
      resources.map((r) => `${r.kind}/${r.metadata.namespace ?? ''}/${r.metadata.name}`),
      [
        'ServiceAccount/kube-system/coredns',
        'ClusterRole//system:coredns',
        'ClusterRoleBinding//system:coredns',
        'ConfigMap/kube-system/coredns',
        'Deployment/kube-system/coredns',
        'Service/kube-system/kube-dns',
      ],
    );
  });

  it('grants only list and watch', () => {
    const rules = find('ClusterRole').rules as { verbs: string[] }[];
    for (const rule of rules) assert.deepEqual(rule.verbs, ['list', 'watch']);
  });

  it('forwards nowhere unless the upstream placeholder is replaced', () => {
    const corefile = (find('ConfigMap').data as { Corefile: string }).Corefile;
    assert.equal(corefile.split('\n').filter((line) => line.trim() === '# upstream').length, 1);
    assert.doesNotMatch(corefile, /^\s*forward\b/m);
    assert.match(corefile, /kubernetes cluster\.local in-addr\.arpa ip6\.arpa \{/);
  });

  it('serves 10.96.0.10 from a local, locked-down image', () => {
    const service = find('Service').spec as { clusterIP: string; ports: { name: string }[] };
    assert.equal(service.clusterIP, '10.96.0.10');
    assert.deepEqual(
      service.ports.map((p) => p.name),
      ['dns', 'dns-tcp', 'metrics'],
    );
    const pod = (find('Deployment').spec as { template: { spec: Record<string, unknown> } }).template.spec;
    const [container] = pod.containers as Record<string, unknown>[];
    assert.equal(container?.image, 'sluice-coredns:dev');
    assert.equal(container.imagePullPolicy, 'Never');
    assert.deepEqual(container.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE'] },
    });
    assert.equal((pod.securityContext as { runAsUser: number }).runAsUser, 65532);
  });
});
