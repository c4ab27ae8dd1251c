/**
 * A real tracing backend for integration tests: Jaeger built from Go modules (cluster/jaeger-build.ts, cached
 * under ~/.cache/sluice like the cluster's binaries), run in a pod of the netns harness, read through its
 * query API (GET /api/traces/<id>).
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { goBuild } from '../../cluster/go-build.ts';
import { clusterPaths } from '../../cluster/paths.ts';
import { Progress } from '../../cluster/progress.ts';
import {
  JAEGER_BUILD,
  JAEGER_QUERY_PORT,
  jaegerConfig,
  JAEGER_OTLP_HTTP_PORT,
} from '../../cluster/jaeger-build.ts';
import { nodeBin, type NetnsHarness, type Pod } from './netns.ts';
import type { ChildProcess } from 'node:child_process';

/** Why Jaeger cannot be built here, or undefined. */
export function jaegerUnavailableReason(): string | undefined {
  const go = spawnSync('go', ['version'], { stdio: 'ignore' });
  return go.error !== undefined || go.status !== 0
    ? 'Go is not installed (needed to build Jaeger)'
    : undefined;
}

/** The directory with the jaeger binary; a cold build takes ~25 min on 2 cores, then it is cached. */
export function buildJaeger(): Promise<string> {
  return goBuild(JAEGER_BUILD, { paths: clusterPaths(), progress: new Progress() });
}

export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  tags: { key: string; type: string; value: unknown }[];
  processID: string;
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: { key: string; value: unknown }[] }>;
}

export class JaegerInPod {
  readonly otlpUrl: string;
  readonly #harness: NetnsHarness;
  readonly #pod: Pod;
  readonly process: ChildProcess;
  readonly logs: string[] = [];

  private constructor(harness: NetnsHarness, pod: Pod, child: ChildProcess) {
    this.#harness = harness;
    this.#pod = pod;
    this.process = child;
    this.otlpUrl = `http://${pod.ip}:${JAEGER_OTLP_HTTP_PORT}/v1/traces`;
    const push = (c: Buffer): void => {
      this.logs.push(c.toString());
      if (this.logs.length > 200) this.logs.shift();
    };
    child.stdout?.on('data', push);
    child.stderr?.on('data', push);
  }

  /** Starts Jaeger in `pod`: OTLP/HTTP on the pod address, the query API on the pod's loopback only. */
  static async start(harness: NetnsHarness, pod: Pod, binDir: string, workDir: string): Promise<JaegerInPod> {
    const config = join(workDir, 'jaeger.yaml');
    writeFileSync(config, jaegerConfig({ listen: '0.0.0.0', queryHost: '127.0.0.1', batchTimeout: '100ms' }));
    const child = harness.exec(pod, join(binDir, 'jaeger'), ['--config', config]);
    const j = new JaegerInPod(harness, pod, child);
    await harness.waitForPort(pod, '0.0.0.0', JAEGER_OTLP_HTTP_PORT, 120_000);
    await harness.waitForPort(pod, '127.0.0.1', JAEGER_QUERY_PORT, 120_000);
    return j;
  }

  /** The trace as the query API returns it, or undefined while Jaeger does not know it. */
  async trace(traceId: string): Promise<JaegerTrace | undefined> {
    const out = await this.#harness.runIn(this.#pod, nodeBin, [
      '-e',
      `fetch('http://127.0.0.1:${JAEGER_QUERY_PORT}/api/traces/${traceId}').then(async r=>process.stdout.write(JSON.stringify({status:r.status,body:await r.text()})),e=>process.stdout.write(JSON.stringify({status:0,body:String(e)})))`,
    ]);
    const { status, body } = JSON.parse(out) as { status: number; body: string };
    if (status !== 200) return undefined;
    return (JSON.parse(body) as { data: JaegerTrace[] }).data[0];
  }
}

export function tag(span: JaegerSpan, key: string): unknown {
  return span.tags.find((t) => t.key === key)?.value;
}
