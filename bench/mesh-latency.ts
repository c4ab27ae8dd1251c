/**
 * Sidecar overhead, measured in one run on one machine (npm run bench:mesh; needs root):
 *   direct:  client pod → server pod                                   (no sidecars, no capture)
 *   mesh:    client app → client sidecar → mTLS → server sidecar → server app   (via the Service VIP)
 * HTTP/1.1 keep-alive and HTTP/2, 1 KiB responses: latency at a fixed 1,000 rps and max rps, plus each
 * sidecar's RSS (idle and under max load) and CPU per 1,000 rps. Prints a table; no assertions.
 * The sidecars run the compiled output (npm run build), as a production image would.
 */
import { readFileSync } from 'node:fs';
import { MeshFixture, APP_PORT, type MeshPod } from '../test/support/mesh-fixture.ts';
import { netnsUnavailableReason, nodeBin } from '../test/support/netns.ts';
import { startSidecarPairs } from './sidecar-pair.ts';
import type { LoadResult } from './load-generator.ts';

const RATE_SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const MAX_SECONDS = Number(process.env.BENCH_MAX_SECONDS ?? 8);
const RPS = Number(process.env.BENCH_RPS ?? 1000);
const VIP = '10.96.0.10';

function procStats(pid: number): { rssMb: number; cpuSeconds: number; userSeconds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const user = Number(fields[11]); // utime, clock ticks
  const ticks = user + Number(fields[12]); // + stime: the kernel's network path is charged here too
  return { rssMb: rssKb / 1024, cpuSeconds: ticks / 100, userSeconds: user / 100 };
}

async function main(): Promise<void> {
  const reason = netnsUnavailableReason();
  if (reason) throw new Error(reason);
  const mesh = await MeshFixture.create();
  try {
    const client = await mesh.addPod({
      name: 'client',
      namespace: 'bench',
      serviceAccount: 'client',
      meshed: true,
    });
    const server = await mesh.addPod({
      name: 'server',
      namespace: 'bench',
      serviceAccount: 'server',
      meshed: true,
    });
    const dclient = await mesh.addPod({
      name: 'dclient',
      namespace: 'bench',
      serviceAccount: 'x',
      meshed: false,
    });
    const dserver = await mesh.addPod({
      name: 'dserver',
      namespace: 'bench',
      serviceAccount: 'x',
      meshed: false,
    });
    await startSidecarPairs(mesh, [{ client, server, service: 'server', vip: VIP }]);
    const sidecars = [client, server].map((p) => p.sidecar!.pid!);
    await new Promise((r) => setTimeout(r, 2000));
    const idle = sidecars.map((pid) => procStats(pid).rssMb);

    const load = async (pod: MeshPod, spec: Record<string, unknown>): Promise<LoadResult> => {
      const out = await mesh.harness.runIn(pod, nodeBin, ['bench/load-generator.ts', JSON.stringify(spec)], {
        timeoutMs: 120_000,
      });
      return JSON.parse(out) as LoadResult;
    };
    const rows: string[][] = [];
    const cpuRows: string[] = [];
    let peakRss = [0, 0];
    for (const protocol of ['h1', 'h2'] as const) {
      const directUrl = `http://${dserver.ip}:${APP_PORT}/?size=1024`;
      const meshUrl = `http://${VIP}/?size=1024`;
      const rate = { protocol, mode: 'rate', rps: RPS, durationMs: RATE_SECONDS * 1000, connections: 16 };
      const max = { protocol, mode: 'max', durationMs: MAX_SECONDS * 1000, connections: 16 };
      const directRate = await load(dclient, { ...rate, url: directUrl });
      const before = sidecars.map(procStats);
      const meshRate = await load(client, { ...rate, url: meshUrl });
      const after = sidecars.map(procStats);
      const per1k = (field: 'cpuSeconds' | 'userSeconds', i: number): string =>
        ((after[i]![field] - before[i]![field]) / meshRate.seconds / (meshRate.rps / 1000)).toFixed(3);
      cpuRows.push(
        `${protocol}: vCPU per 1,000 rps at ${RPS} rps, total (user space only): ` +
          `client sidecar ${per1k('cpuSeconds', 0)} (${per1k('userSeconds', 0)}), ` +
          `server sidecar ${per1k('cpuSeconds', 1)} (${per1k('userSeconds', 1)})`,
      );
      const directMax = await load(dclient, { ...max, url: directUrl });
      const sampling = { on: true };
      const sampler = (async () => {
        while (sampling.on) {
          const rss = sidecars.map((pid) => procStats(pid).rssMb);
          peakRss = peakRss.map((p, i) => Math.max(p, rss[i]!));
          await new Promise((r) => setTimeout(r, 200));
        }
      })();
      const meshMax = await load(client, { ...max, url: meshUrl });
      sampling.on = false;
      await sampler;
      const f = (n: number): string => n.toFixed(2);
      rows.push([
        protocol === 'h1' ? 'HTTP/1.1' : 'HTTP/2',
        `${f(directRate.p50Ms)} / ${f(meshRate.p50Ms)} (+${f(meshRate.p50Ms - directRate.p50Ms)})`,
        `${f(directRate.p99Ms)} / ${f(meshRate.p99Ms)} (+${f(meshRate.p99Ms - directRate.p99Ms)})`,
        `${directMax.rps.toFixed(0)} / ${meshMax.rps.toFixed(0)} (${(meshMax.rps / directMax.rps).toFixed(2)}x)`,
        `${directRate.errors + meshRate.errors + directMax.errors + meshMax.errors}`,
      ]);
    }
    console.log(
      `Sluice mesh benchmark, node ${process.version}, ${RATE_SECONDS}s at 1,000 rps and ${MAX_SECONDS}s max load, 16 connections, 1 KiB responses`,
    );
    console.log('direct / mesh (added)');
    console.log(['protocol', `p50 ms @${RPS} rps`, `p99 ms @${RPS} rps`, 'max rps', 'errors'].join(' | '));
    for (const r of rows) console.log(r.join(' | '));
    for (const c of cpuRows) console.log(c);
    console.log(
      `sidecar RSS idle: client ${idle[0]!.toFixed(1)} MB, server ${idle[1]!.toFixed(1)} MB; peak under max load: client ${peakRss[0]!.toFixed(1)} MB, server ${peakRss[1]!.toFixed(1)} MB`,
    );
  } finally {
    await mesh.destroy();
  }
}

await main();
