import { existsSync } from 'node:fs';
import { CLUSTER } from './cluster-config.ts';
import * as components from './components.ts';
import type { ClusterBinaries, ClusterFiles } from './components.ts';
import type { DaemonSpec } from './daemons.ts';
import { httpOk, socketAccepts } from './probes.ts';

/** A daemon of the cluster with the check that says it is ready to be used. */
export interface Component {
  readonly spec: DaemonSpec;
  readonly ready: () => Promise<boolean>;
  readonly timeoutMs: number;
}

/** The components in start order. */
export function clusterComponents(bin: ClusterBinaries, files: ClusterFiles, nodeIp: string): Component[] {
  const admin = { ca: files.pki('ca.crt'), cert: files.pki('admin.crt'), key: files.pki('admin.key') };
  return [
    {
      spec: components.etcd(bin, files),
      ready: () => httpOk(`http://127.0.0.1:${CLUSTER.etcdClientPort}/health`),
      timeoutMs: 60_000,
    },
    {
      spec: components.kubeApiserver(bin, files, nodeIp),
      ready: () => httpOk(`https://127.0.0.1:${CLUSTER.apiServerPort}/readyz`, admin),
      timeoutMs: 120_000,
    },
    {
      spec: components.kubeControllerManager(bin, files),
      ready: () => httpOk('https://127.0.0.1:10257/healthz', 'insecure'),
      timeoutMs: 60_000,
    },
    {
      spec: components.kubeScheduler(bin, files),
      ready: () => httpOk('https://127.0.0.1:10259/healthz', 'insecure'),
      timeoutMs: 60_000,
    },
    {
      spec: components.containerd(bin, files),
      ready: () => socketAccepts(files.containerdSocket),
      timeoutMs: 60_000,
    },
    {
      spec: components.kubelet(bin, files, nodeIp),
      ready: () => httpOk('http://127.0.0.1:10248/healthz'),
      timeoutMs: 120_000,
    },
    {
      spec: components.kubeProxy(bin, files),
      ready: () => httpOk('http://127.0.0.1:10256/livez'),
      timeoutMs: 60_000,
    },
  ];
}

export function binariesExist(bin: ClusterBinaries): boolean {
  return [bin.kubernetes, bin.etcd, bin.containerd].every((dir) => existsSync(dir));
}
