/**
 * What the idle memory release costs the load after it (ADR 0016), one sidecar pair per flavour in one run
 * (npm run bench:idle-release [-- --rounds N]; needs root, one netns user at a time:
 * flock /tmp/sluice-netns.lock). Flavours (SLUICE_IDLE_MEMORY_RELEASE): off, last-resort (V8's last-resort
 * full GC + malloc_trim), gc (a regular full GC + malloc_trim), trim (malloc_trim only).
 * Each round, in a rotated order, every pair resumes after an idle gap long enough to release: HTTP/1.1 at
 * 1,000 rps for 3 s ("resume": its first seconds, no warm-up), 3 s more ("then": whether it lasts), 3 s at
 * max, 3 s at 1,000 rps again ("warm");
 * then all pairs idle 30 s or until each releasing pair logged its release, and RSS is read. CPU per 1,000
 * requests of both sidecars from /proc. Round 0 (start-up: undici and the code load for the first time) is
 * printed, not counted in the medians. "off" is the control: what an idle gap costs without a release
 * (pooled upstream connections closed by keep-alive, CPU caches).
 */
import { readFileSync } from 'node:fs';
import { MeshFixture, type MeshPod } from '../test/support/mesh-fixture.ts';
import { netnsUnavailableReason, nodeBin } from '../test/support/netns.ts';
import { waitFor } from '../test/support/wait-for.ts';
import { ensureHostPackages } from '../cluster/host-packages.ts';
import { PROXY_NODE_OPTIONS } from '../mesh-model/endpoints.ts';
import { releasesSince, startSidecarPairs, type SidecarPair } from './sidecar-pair.ts';
import { procStats } from './proc-stats.ts';
import type { LoadResult } from './load-generator.ts';

const args = process.argv.slice(2);
const ROUNDS = Number(args[args.indexOf('--rounds') + 1] ?? 4) || 4;
const FLAVOURS = ['off', 'last-resort', 'gc', 'trim'] as const;
const IDLE_SECONDS = 30;
const loadAverage = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Row {
  resumeCpu: number;
  thenCpu: number;
  warmCpu: number;
  maxRps: number;
  rssAfter: number[];
  released: string[];
}

async function main(): Promise<void> {
  const reason = netnsUnavailableReason();
  if (reason) throw new Error(reason);
  await ensureHostPackages('tests');
  const mesh = await MeshFixture.create();
  try {
    const pairs: (SidecarPair & { flavour: string })[] = [];
    for (const [i, flavour] of FLAVOURS.entries()) {
      const env = { NODE_OPTIONS: PROXY_NODE_OPTIONS, SLUICE_IDLE_MEMORY_RELEASE: flavour };
      const pod = (name: string): Promise<MeshPod> =>
        mesh.addPod({ name, namespace: 'bench', serviceAccount: name, meshed: true, env });
      const client = await pod(`c${i}`);
      const server = await pod(`s${i}`);
      pairs.push({ flavour, client, server, service: `s${i}`, vip: `10.96.0.${20 + i}` });
    }
    await startSidecarPairs(mesh, pairs);
    const rss = (p: SidecarPair & { flavour: string }): number[] =>
      [p.client, p.server].map((pod) => Math.round(procStats([pod.sidecar!.pid!]).rssMb));
    const cpu = (p: SidecarPair & { flavour: string }): number =>
      procStats([p.client.sidecar!.pid!, p.server.sidecar!.pid!]).cpuMs;
    await sleep(2000);
    const idle = new Map(pairs.map((p) => [p.flavour, rss(p)]));
    console.log(
      `RSS idle MB (c/s, before the first request: undici not loaded yet): ${pairs.map((p) => `${p.flavour} ${idle.get(p.flavour)!.join('/')}`).join(', ')}`,
    );
    const load = async (
      p: SidecarPair & { flavour: string },
      spec: Record<string, unknown>,
    ): Promise<LoadResult> => {
      const full = { url: `http://${p.vip}/?size=1024`, protocol: 'h1', connections: 16, ...spec };
      const out = await mesh.harness.runIn(
        p.client,
        nodeBin,
        ['bench/load-generator.ts', JSON.stringify(full)],
        {
          timeoutMs: 60_000,
        },
      );
      return JSON.parse(out) as LoadResult;
    };
    const perRequest = async (p: SidecarPair & { flavour: string }): Promise<number> => {
      const before = cpu(p);
      const r = await load(p, { mode: 'rate', rps: 1000, durationMs: 3000, warmupMs: 0 });
      return (cpu(p) - before) / ((r.sent + r.warmupSent) / 1000);
    };
    const rows = new Map<string, Row[]>(FLAVOURS.map((f) => [f, []]));
    const loadEnded = new Map<string, number>(pairs.map((p) => [p.flavour, Date.now()]));
    for (let round = 0; round <= ROUNDS; round++) {
      const order = pairs.map((_, i) => pairs[(i + round) % pairs.length]!);
      const partial = new Map<string, Omit<Row, 'rssAfter' | 'released'>>();
      const released = new Map<string, string[]>();
      for (const p of order) {
        released.set(
          p.flavour,
          [p.client, p.server].map(
            (pod) => releasesSince(pod, loadEnded.get(p.flavour)!).join(', ') || 'none',
          ),
        );
        const resumeCpu = await perRequest(p);
        const thenCpu = await perRequest(p);
        const max = await load(p, { mode: 'max', durationMs: 3000 });
        const warmCpu = await perRequest(p);
        loadEnded.set(p.flavour, Date.now());
        partial.set(p.flavour, { resumeCpu, thenCpu, warmCpu, maxRps: max.rps });
      }
      const idleFrom = Date.now();
      await sleep(IDLE_SECONDS * 1000);
      // A releasing pair's sidecars release 15–20 s after their load (three idle 5 s checks): wait for both.
      await waitFor(
        'the releases',
        () =>
          pairs.every(
            (p) =>
              p.flavour === 'off' ||
              [p.client, p.server].every((pod) => releasesSince(pod, loadEnded.get(p.flavour)!).length > 0),
          ),
        { timeoutMs: 20_000, intervalMs: 500 },
      ).catch(() => console.log('(a release did not come within 50 s of the load)'));
      const loadAvg = loadAverage();
      console.log(`round ${round}${round === 0 ? ' (start-up, not counted)' : ''}, load average ${loadAvg}:`);
      for (const p of pairs) {
        const row: Row = {
          ...partial.get(p.flavour)!,
          rssAfter: rss(p),
          released: released.get(p.flavour)!,
        };
        if (round > 0) rows.get(p.flavour)!.push(row);
        console.log(
          `  ${p.flavour}: released before (c/s) ${row.released.join(' / ')}; CPU ms/1k resume ${row.resumeCpu.toFixed(0)} then ${row.thenCpu.toFixed(0)} warm ${row.warmCpu.toFixed(0)} (${(row.resumeCpu / row.warmCpu).toFixed(2)}x, ${(row.thenCpu / row.warmCpu).toFixed(2)}x), max ${row.maxRps.toFixed(0)} rps; RSS ${((Date.now() - idleFrom) / 1000).toFixed(0)}+ s after ${row.rssAfter.join('/')} MB (idle ${idle.get(p.flavour)!.join('/')})`,
        );
      }
    }
    console.log(
      `\nmedians over ${ROUNDS} rounds (HTTP/1.1, 16 connections, 1 KiB replies; load average now ${loadAverage()}):`,
    );
    console.log(
      'flavour | CPU ms/1k resume | then | warm | resume/warm | then/warm | max rps | RSS after MB (c/s) | idle',
    );
    for (const f of FLAVOURS) {
      const r = rows.get(f)!;
      const m = (get: (x: Row) => number): number => median(r.map(get));
      console.log(
        [
          f,
          m((x) => x.resumeCpu).toFixed(0),
          m((x) => x.thenCpu).toFixed(0),
          m((x) => x.warmCpu).toFixed(0),
          `${m((x) => x.resumeCpu / x.warmCpu).toFixed(2)}x`,
          `${m((x) => x.thenCpu / x.warmCpu).toFixed(2)}x`,
          m((x) => x.maxRps).toFixed(0),
          [0, 1].map((i) => m((x) => x.rssAfter[i]!).toFixed(0)).join('/'),
          idle.get(f)!.join('/'),
        ].join(' | '),
      );
    }
  } finally {
    await mesh.destroy();
  }
}

await main();
