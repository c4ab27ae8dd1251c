/**
 * A small mesh in network namespaces for integration tests: pods with real iptables capture, sidecars
 * running `sluice proxy` as the proxy uid with standalone manifests, echo apps, and a client pod from which
 * tests send traffic to Service ClusterIPs. Everything is torn down by destroy(), also after failures.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { NetnsHarness, nodeBin, type Pod } from './netns.ts';
import { createCa, issueWorkloadCert, loadCa, type CertificateAuthority } from '../../pki/ca.ts';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.ts';
import { writeIdentityDir } from '../../pki/identity-dir.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import type { ClientResult } from './mesh-client.ts';
import { waitFor } from './wait-for.ts';

export const PROXY_UID = 1337;
export const TRUST_DOMAIN = 'cluster.local';
export const APP_PORT = 9080;

export interface MeshPodSpec {
  name: string;
  namespace: string;
  serviceAccount: string;
  meshed: boolean;
  mode?: 'STRICT' | 'PERMISSIVE';
  /** Certificate for another service account than the manifests claim (to test identity checks). */
  certServiceAccount?: string;
  /** Extra app: a TCP echo server on this port. */
  tcpPort?: number;
  /** More `sluice proxy` flags for this pod's sidecar (e.g. short timeouts). */
  proxyArgs?: string[];
  /** The sidecar's entry script instead of the worktree's (a benchmark compares another build). */
  entry?: string;
  /** More environment for the sidecar's process (e.g. NODE_OPTIONS). */
  env?: Record<string, string>;
  /** The sidecar's cgroup v1 memory group (a benchmark's container memory limit). */
  memoryCgroup?: string;
  /**
   * The pod is this Gateway's proxy (`sluice proxy --mode gateway`, not meshed: no capture): it gets an
   * identity and its proxy is started with the sidecars.
   */
  gateway?: string;
}

export interface MeshPod extends Pod {
  spec: MeshPodSpec;
  identityDir: string | undefined;
  sidecar: ChildProcess | undefined;
  /** The echo app's process. */
  app: ChildProcess | undefined;
  /** The sidecar's log lines (JSON, docs/logging.md), parsed. */
  sidecarLog: Record<string, unknown>[];
  logs: string[];
}

/**
 * A suite's teardown: the fixture's logs after a failed test (all of them with SLUICE_TEST_LOGS), then
 * destroy. `current` returns undefined when before() failed or was skipped.
 */
export function tearDownMesh(current: () => MeshFixture | undefined): void {
  after(async function () {
    const built = current();
    if (process.env.SLUICE_TEST_LOGS) console.log(built?.logs());
    await built?.destroy();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed') console.log(current()?.logs().slice(-20_000));
  });
}

export class MeshFixture {
  readonly harness: NetnsHarness;
  readonly dir: string;
  readonly manifestsDir: string;
  readonly ca: CertificateAuthority;
  readonly pods = new Map<string, MeshPod>();

  private constructor(harness: NetnsHarness, dir: string, ca: CertificateAuthority) {
    this.harness = harness;
    this.dir = dir;
    this.manifestsDir = join(dir, 'manifests');
    this.ca = ca;
  }

  /** `ipv6`: pods get an IPv6 address too (and init-iptables programs ip6tables). */
  static async create(options: { ipv6?: boolean } = {}): Promise<MeshFixture> {
    const harness = await NetnsHarness.create({ ipv6: options.ipv6 ?? false });
    const dir = mkdtempSync(join(tmpdir(), 'sluice-mesh-'));
    chmodSync(dir, 0o755);
    const ca = await loadCa(await createCa({ trustDomain: TRUST_DOMAIN }));
    const f = new MeshFixture(harness, dir, ca);
    mkdirSync(f.manifestsDir, { mode: 0o755 });
    return f;
  }

  /** Creates a pod: network namespace, identity, echo app (+ TCP echo), and for meshed pods iptables. */
  async addPod(spec: MeshPodSpec): Promise<MeshPod> {
    const pod: MeshPod = {
      ...(await this.harness.createPod(spec.name)),
      spec,
      identityDir: undefined,
      sidecar: undefined,
      app: undefined,
      sidecarLog: [],
      logs: [],
    };
    this.pods.set(spec.name, pod);
    const app = this.harness.exec(pod, nodeBin, [
      'images/echo/echo-server.ts',
      '--name',
      spec.name,
      '--port',
      String(APP_PORT),
      // Every pod address (IPv4 and IPv6): the sidecar hands inbound traffic to the address it was sent to.
      '--host',
      '::',
    ]);
    pod.app = app;
    this.capture(pod, app, 'app');
    if (spec.tcpPort) {
      const tcp = this.harness.exec(pod, nodeBin, [
        '-e',
        `require('net').createServer({allowHalfOpen:true},s=>{let b='';s.on('data',d=>b+=d);s.on('end',()=>s.end('tcp-echo:'+b.toUpperCase()))}).listen(${spec.tcpPort})`,
      ]);
      this.capture(pod, tcp, 'tcp');
    }
    if (spec.meshed || spec.gateway) {
      pod.identityDir = join(this.dir, `identity-${spec.name}`);
      const keys = await generateKeyPair();
      const sa = spec.certServiceAccount ?? spec.serviceAccount;
      const certPem = await issueWorkloadCert({
        ca: this.ca,
        spiffeId: `spiffe://${TRUST_DOMAIN}/ns/${spec.namespace}/sa/${sa}`,
        publicKey: keys.publicKey,
      });
      await writeIdentityDir(pod.identityDir, {
        certPem,
        keyPem: await privateKeyToPem(keys.privateKey),
        bundlePem: this.ca.certPem,
      });
      chownRecursive(pod.identityDir, PROXY_UID);
    }
    if (spec.meshed) {
      await this.harness.runIn(pod, nodeBin, [
        'bin/sluice.js',
        'init-iptables',
        '--proxy-uid',
        String(PROXY_UID),
      ]);
    }
    await this.harness.waitForPort(pod, '::', APP_PORT);
    return pod;
  }

  /** Writes the manifests every sidecar reads (atomically, as a config change would land). */
  writeManifests(objects: K8sObject[]): void {
    const text = objects.map((o) => stringify(o)).join('---\n');
    const tmp = join(this.dir, 'manifests.tmp');
    writeFileSync(tmp, text);
    chmodSync(tmp, 0o644);
    renameSync(tmp, join(this.manifestsDir, 'mesh.yaml'));
  }

  /**
   * Starts the sidecars of all meshed pods (and the proxies of gateway pods) and waits until each is ready. `compiled`: run the tsc output in
   * dist/ (what a production image runs) instead of the TypeScript sources.
   */
  async startSidecars(options: { compiled?: boolean } = {}): Promise<void> {
    const entry = options.compiled ? 'dist/cli/main.js' : 'bin/sluice.js';
    for (const pod of this.pods.values()) {
      if (!pod.spec.meshed && !pod.spec.gateway) continue;
      const mode = pod.spec.gateway
        ? ['--mode', 'gateway', '--gateway', pod.spec.gateway]
        : ['--mode', pod.spec.mode ?? 'PERMISSIVE'];
      const child = this.harness.exec(
        pod,
        nodeBin,
        [
          pod.spec.entry ?? entry,
          'proxy',
          '--manifests',
          this.manifestsDir,
          '--identity',
          pod.identityDir!,
          ...mode,
          '--namespace',
          pod.spec.namespace,
          // Long enough for a test to look at a draining sidecar (the drain lasts this long while idle
          // pooled connections stay open); destroy() kills it after 1 s anyway.
          '--drain-seconds',
          '10',
          ...(pod.spec.proxyArgs ?? []),
        ],
        {
          uid: PROXY_UID,
          ...(pod.spec.env ? { env: pod.spec.env } : {}),
          ...(pod.spec.memoryCgroup ? { cgroup: pod.spec.memoryCgroup } : {}),
        },
      );
      pod.sidecar = child;
      this.capture(pod, child, 'sidecar');
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          pod.sidecarLog.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not a log line (a crash's stack trace goes to stderr, which logs() keeps)
        }
      });
    }
    for (const pod of this.pods.values()) {
      if (pod.spec.meshed || pod.spec.gateway) await this.waitReady(pod);
    }
  }

  /**
   * Waits for the sidecar's own word that it listens (its `listening` log line), then for /ready to answer
   * 200. The timeout is generous because a machine busy with other work starts Node slowly; a sidecar that
   * exits fails the wait at once. Errors carry the last /ready answer and the pod's log tail.
   */
  async waitReady(pod: MeshPod, timeoutMs = 60_000): Promise<void> {
    const child = pod.sidecar!;
    const deadline = Date.now() + timeoutMs;
    const tail = (): string => `--- log tail of ${pod.name}:\n${pod.logs.join('').slice(-4000)}`;
    await waitFor(
      `the sidecar in ${pod.name} to listen`,
      () => {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(
            `sidecar in ${pod.name} exited (${child.exitCode ?? child.signalCode}) before it was ready\n${tail()}`,
          );
        }
        return pod.sidecarLog.some((line) => line.msg === 'listening');
      },
      { timeoutMs, intervalMs: 50, detail: tail },
    );
    let last = 'none yet';
    await waitFor(
      `the sidecar in ${pod.name} to be ready`,
      async () => {
        const r = await this.admin(pod, '/ready').catch((err: unknown) => ({ status: 0, body: String(err) }));
        last = `${r.status} ${r.body}`;
        return r.status === 200;
      },
      {
        timeoutMs: Math.max(0, deadline - Date.now()),
        intervalMs: 200,
        detail: () => `last /ready answer: ${last}\n${tail()}`,
      },
    );
  }

  /** GET on a sidecar's admin port, from inside its pod. */
  async admin(pod: MeshPod, path: string): Promise<{ status: number; body: string }> {
    const out = await this.harness.runIn(pod, nodeBin, [
      '-e',
      `fetch('http://127.0.0.1:15021${path}').then(async r=>process.stdout.write(JSON.stringify({status:r.status,body:await r.text()})),e=>process.stdout.write(JSON.stringify({status:0,body:String(e)})))`,
    ]);
    return JSON.parse(out) as { status: number; body: string };
  }

  /** Runs the mesh client in a pod (as an app, so its traffic is captured). */
  async client(podName: string, plan: Record<string, unknown>, timeoutMs = 60_000): Promise<ClientResult[]> {
    const pod = this.pods.get(podName)!;
    const out = await this.harness.runIn(
      pod,
      nodeBin,
      ['test/support/mesh-client.ts', JSON.stringify(plan)],
      { timeoutMs },
    );
    return (JSON.parse(out) as { results: ClientResult[] }).results;
  }

  private capture(pod: MeshPod, child: ChildProcess, label: string): void {
    const push = (chunk: Buffer): void => {
      pod.logs.push(`[${label}] ${chunk.toString()}`);
      if (pod.logs.length > 500) pod.logs.shift();
    };
    child.stdout?.on('data', push);
    child.stderr?.on('data', push);
  }

  logs(): string {
    return [...this.pods.values()].map((p) => `--- ${p.name}\n${p.logs.join('')}`).join('\n');
  }

  async destroy(): Promise<void> {
    await this.harness.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function chownRecursive(dir: string, uid: number): void {
  chownSync(dir, uid, uid);
  for (const f of ['cert.pem', 'key.pem', 'bundle.pem']) chownSync(join(dir, f), uid, uid);
}
