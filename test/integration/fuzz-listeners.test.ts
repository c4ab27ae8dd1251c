import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { MeshFixture, type MeshPod } from '../support/mesh-fixture.ts';
import { podObject, serviceWithEndpoints } from '../support/mesh-manifests.ts';
import { netnsUnavailableReason, nodeBin } from '../support/netns.ts';
import { waitFor } from '../support/wait-for.ts';
import { podRef } from '../support/mesh-pods.ts';
import { envCount, fuzzSeed } from '../support/fuzz/prng.ts';
import { SMUGGLED_PREFIX } from '../support/fuzz/http1-requests.ts';
import type { DriverPlan, DriverSummary } from '../support/fuzz/driver.ts';

// Generated hostile HTTP/1.1 requests and HTTP/2 frame sequences through a real sidecar's outbound listener
// (an app in a meshed pod calling a Service ClusterIP, captured by iptables) and inbound listener (an
// un-meshed pod calling a PERMISSIVE pod's port), both ending at a backend that logs every request it gets.
// Afterwards: both sidecars alive and answering, no connection left hanging, file descriptors back to their
// baseline, memory within a tolerance of it, and no smuggled request ever reached the backend.
// Reproduce with SLUICE_FUZZ_SEED; scale with SLUICE_FUZZ_REQUESTS / SLUICE_FUZZ_H2 (docs/security.md).

const NS = 'shop';
const VIP = '10.96.0.90';
const BACKEND_PORT = 9090;
const seed = fuzzSeed();
/** Totals over both listeners (each gets half). */
const requests = envCount('SLUICE_FUZZ_REQUESTS', 100_000);
const h2Sequences = envCount('SLUICE_FUZZ_H2', 10_000);
/**
 * What a sidecar's heap (V8 heap used plus memory held outside it: buffers, TLS state) may stay above its
 * baseline after the run, both measured right after a full GC (the admin port's /memory). Not RSS: V8 and
 * malloc keep pages they grew into long after the objects in them are gone (a 100,000-request run left the
 * server sidecar's RSS 80–240 MiB above its warmed-up baseline minutes later with nothing leaked), so an RSS
 * bound is either loose enough to miss a leak or fails on allocator noise. What is live after a GC is what
 * the sidecar still holds: a request stuck in flight, a socket never closed, a growing map.
 */
const HEAP_TOLERANCE_BYTES = 24 * 1024 * 1024;
/**
 * Descriptors a sidecar may hold beyond its baseline once the run's connections are gone: pooled upstream
 * connections close after UPSTREAM_IDLE_MS (the sidecars run with it short), so only a few stragglers
 * (a warm-up connection, a TLS session being torn down) may remain.
 */
const FD_SLACK = 4;
/** The sidecars' --upstream-idle-timeout-ms: short, so pooled connections close within the settle wait. */
const UPSTREAM_IDLE_MS = 2_000;
/**
 * The sidecars' --stream-idle-timeout-ms: the bound on a request in flight without a byte moving. Clean
 * connections wait that long (and some) for their answers rather than giving up on a timer of their own.
 */
const STREAM_IDLE_MS = 60_000;

interface Usage {
  fds: number;
  rssKiB: number;
  hwmKiB: number;
  /** heapUsed + external after a full GC (set where taken). */
  liveBytes?: number;
}

function usage(pid: number): Usage {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { fds: readdirSync(`/proc/${pid}/fd`).length, rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
}

/** The pod's TCP sockets counted by state and ports (ephemeral ports as *), to tell what a leak holds. */
function sockets(ns: string): string {
  const out = spawnSync('ip', ['netns', 'exec', ns, 'ss', '-Htan'], { encoding: 'utf8' }).stdout;
  const counts = new Map<string, number>();
  const port = (addr: string): string => {
    const p = Number(addr.slice(addr.lastIndexOf(':') + 1));
    return p >= 32768 ? '*' : String(p);
  };
  for (const line of out.split('\n')) {
    const [state, , , local, peer] = line.trim().split(/\s+/);
    if (!peer) continue;
    const key = `${state} ${port(local!)}->${port(peer)}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([k, n]) => `${n}× ${k}`)
    .join(', ');
}

/** Fails with the first problems found (and how many there were), after printing them to the log. */
function noProblems(problems: string[], what: string): void {
  if (problems.length > 0) console.log(`      fuzz: ${what}: ${problems.slice(0, 10).join(' | ')}`);
  assert.deepEqual(problems.slice(0, 10), [], `${what} (${problems.length} in all)`);
}

function mib(kib: number): string {
  return `${(kib / 1024).toFixed(1)} MiB`;
}

/** Memory the sidecar in `pod` still holds right after a full GC (heap used + external), in bytes. */
async function liveBytes(mesh: MeshFixture, pod: MeshPod): Promise<number> {
  const r = await mesh.admin(pod, '/memory');
  assert.equal(r.status, 200, r.body);
  const m = JSON.parse(r.body) as NodeJS.MemoryUsage;
  return m.heapUsed + m.external;
}

describe(`fuzz: hostile HTTP/1.1 and HTTP/2 through both listeners (seed ${seed}, ${requests} HTTP/1.1 requests and ${h2Sequences} HTTP/2 sequences in all)`, function () {
  this.timeout(20 * 60_000);
  const reason = netnsUnavailableReason();
  let mesh: MeshFixture;
  let created: MeshFixture | undefined;
  let server: MeshPod;
  let client: MeshPod;
  let outsider: MeshPod;
  const backendLines: string[] = [];
  const baseline = new Map<string, Usage>();
  const summaries = new Map<string, DriverSummary>();

  const sidecarPid = (pod: MeshPod): number => {
    const pid = pod.sidecar!.pid!;
    // `ip netns exec` and setpriv exec in place: the pid is the proxy's own Node process.
    assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /sluice\.js\0proxy/);
    return pid;
  };

  /** One GET through a pod's network, as an app would send it; resolves with the status (0: failed). */
  const get = async (pod: MeshPod, url: string): Promise<number> => {
    const out = await mesh.harness.runIn(pod, nodeBin, [
      '-e',
      `fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(20000)}).then(async r=>{await r.text();console.log(r.status)},()=>console.log(0))`,
    ]);
    return Number(out.trim());
  };

  const plan = (host: string, port: number, salt: number, scale = 1): DriverPlan => ({
    host,
    port,
    seed: (seed + salt) >>> 0,
    http1Requests: Math.ceil((requests / 2) * scale),
    h2Sequences: Math.ceil((h2Sequences / 2) * scale),
    concurrency: 64,
    maxPerConnection: 24,
    closeBoundMs: 10_000,
    quietMs: 400,
    answerBoundMs: STREAM_IDLE_MS + 30_000,
  });

  const runDriver = async (pod: MeshPod, p: DriverPlan): Promise<DriverSummary> => {
    const out = await mesh.harness.runIn(pod, nodeBin, ['test/support/fuzz/driver.ts', JSON.stringify(p)], {
      timeoutMs: 15 * 60_000,
    });
    return JSON.parse(out) as DriverSummary;
  };

  before(async function () {
    if (reason) return this.skip();
    mesh = created = await MeshFixture.create();
    const proxyArgs = [
      '--upstream-idle-timeout-ms',
      String(UPSTREAM_IDLE_MS),
      '--stream-idle-timeout-ms',
      String(STREAM_IDLE_MS),
    ];
    server = await mesh.addPod({
      name: 'server',
      namespace: NS,
      serviceAccount: 'server',
      meshed: true,
      proxyArgs,
    });
    client = await mesh.addPod({
      name: 'client',
      namespace: NS,
      serviceAccount: 'client',
      meshed: true,
      proxyArgs,
    });
    outsider = await mesh.addPod({
      name: 'outsider',
      namespace: NS,
      serviceAccount: 'outsider',
      meshed: false,
    });
    const backend = mesh.harness.exec(server, nodeBin, [
      'test/support/fuzz/backend.ts',
      String(BACKEND_PORT),
    ]);
    createInterface({ input: backend.stdout! }).on('line', (line) => backendLines.push(line));
    mesh.writeManifests([
      ...[server, client, outsider].map((p) => podObject(podRef(p))),
      ...serviceWithEndpoints(NS, 'fuzz', VIP, [[80, BACKEND_PORT, 'http']], [podRef(server)]),
    ]);
    await mesh.harness.waitForPort(server, server.ip, BACKEND_PORT);
    await mesh.startSidecars();
    // Warm up both paths (pools, TLS sessions, lazily loaded code), then take the baseline.
    assert.equal(await get(client, `http://${VIP}/warmup`), 200, mesh.logs());
    assert.equal(await get(outsider, `http://${server.ip}:${BACKEND_PORT}/warmup`), 200, mesh.logs());
    // File descriptors: the baseline is the sidecar after these two requests, before any fuzz traffic.
    for (const pod of [server, client]) baseline.set(pod.name, usage(sidecarPid(pod)));
    // Memory: a short fuzz round first (another seed), so the baseline is a sidecar whose heap has already
    // grown to its working size for this traffic; what stays above it afterwards is what the big run left.
    await Promise.all([
      runDriver(client, plan(VIP, 80, 0x100, 0.05)),
      runDriver(outsider, plan(server.ip, BACKEND_PORT, 0x101, 0.05)),
    ]);
    for (const pod of [server, client]) {
      const u = usage(sidecarPid(pod));
      baseline.set(pod.name, {
        ...baseline.get(pod.name)!,
        rssKiB: u.rssKiB,
        liveBytes: await liveBytes(mesh, pod),
      });
    }
  });

  after(async () => {
    await created?.destroy();
  });

  it('generated connections all end within the bound, through both listeners at once', async function () {
    const started = Date.now();
    const [outbound, inbound] = await Promise.all([
      runDriver(client, plan(VIP, 80, 0)),
      runDriver(outsider, plan(server.ip, BACKEND_PORT, 1)),
    ]);
    summaries.set('outbound', outbound);
    summaries.set('inbound', inbound);
    for (const [name, s] of summaries) {
      console.log(
        `      fuzz ${name}: seed ${s.seed}, ${s.h1.requests} HTTP/1.1 requests on ${s.h1.connections} connections ` +
          `(${s.h1.valid} valid, ${s.h1.smuggling} smuggling attempts), ${s.h2.connections} HTTP/2 sequences, ` +
          `${s.durationMs} ms, slowest connection ${s.maxConnectionMs} ms, answers ${JSON.stringify(s.h1.statuses)}`,
      );
    }
    console.log(`      fuzz: both listeners done in ${Date.now() - started} ms`);
    // What the sidecars logged above info, counted (the causes behind 5xx answers and cut connections).
    for (const pod of [client, server]) {
      const counts = new Map<string, number>();
      for (const line of pod.sidecarLog) {
        if (line.level === 'info') continue;
        const key = [line.level, line.msg, line.code, line.cause, line.error]
          .filter((v) => typeof v === 'string')
          .join(' ')
          .slice(0, 160);
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 8);
      console.log(
        `      fuzz ${pod.name} sidecar log: ${top.map(([k, n]) => `${n}× ${k}`).join(' | ') || 'nothing above info'}`,
      );
    }
    let total = 0;
    let totalH2 = 0;
    for (const s of summaries.values()) {
      total += s.h1.requests;
      totalH2 += s.h2.connections;
    }
    assert.ok(total >= requests && totalH2 >= h2Sequences, 'the run fell short of its counts');
  });

  it("HTTP/1.1 connections end within the bound after the client's FIN", () => {
    const hung = [...summaries].flatMap(([name, s]) =>
      s.hung.filter((h) => h.kind.startsWith('http1:')).map((h) => `${name} ${h.kind} #${h.index}`),
    );
    noProblems(hung, `${hung.length} HTTP/1.1 connections still open 10 s after the client's FIN`);
  });

  it("HTTP/2 connections end within the bound after the client's GOAWAY and FIN", () => {
    const hung = [...summaries].flatMap(([name, s]) =>
      s.hung.filter((h) => h.kind.startsWith('h2:')).map((h) => `${name} ${h.kind} #${h.index}`),
    );
    // Sockets are handed to the HTTP/2 server half-open: the client's FIN cancels streams still waiting for
    // request bytes and closes the session once the others are answered, also when nghttp2 has stopped
    // reading after a protocol error (sidecar/http-servers.ts; seed 388817's outbound #4125 was one).
    noProblems(hung, `${hung.length} HTTP/2 connections still open 10 s after the client's FIN`);
  });

  it('both sidecars are alive and still answer a valid request on each listener', async () => {
    for (const pod of [server, client]) {
      assert.equal(pod.sidecar!.exitCode, null, `${pod.name}: sidecar exited\n${mesh.logs()}`);
      assert.equal(pod.sidecar!.signalCode, null, `${pod.name}: sidecar killed`);
    }
    assert.equal(await get(client, `http://${VIP}/after-fuzz`), 200);
    assert.equal(await get(outsider, `http://${server.ip}:${BACKEND_PORT}/after-fuzz`), 200);
  });

  it('well-formed requests on clean connections were all answered 200 by the app, as normalised', () => {
    // What the backend received, as `METHOD target` (the generator knows the normalised target of each).
    const received = new Set(
      backendLines.flatMap((line) => {
        const m = /^req (".*?") (".*")$/.exec(line);
        return m ? [`${JSON.parse(m[1]!) as string} ${JSON.parse(m[2]!) as string}`] : [];
      }),
    );
    // Every answer to a clean request is 200, every one the app got arrived as normalised, and every one
    // was answered: the driver waits for all of them (bounded only by the proxy's stream idle timeout).
    const rid = (e: string): string | undefined => /^\S+ \/fuzz\/v\/([a-z0-9]{10})/.exec(e)?.[1];
    const byRid = new Map(
      [...received].flatMap((e) => (rid(e) === undefined ? [] : [[rid(e)!, e] as const])),
    );
    const unanswered: string[] = [];
    for (const [name, s] of summaries) {
      assert.ok(s.h1.cleanRequests > 0, name);
      assert.deepEqual(
        Object.keys(s.h1.cleanStatuses).filter((k) => k !== '200'),
        [],
        `${name}: ${JSON.stringify(s.h1.cleanStatuses)}`,
      );
      const wrong = s.h1.cleanExpected.filter(
        (e) => byRid.has(rid(e) ?? '') && byRid.get(rid(e) ?? '') !== e,
      );
      assert.deepEqual(
        wrong.slice(0, 5).map((e) => `${e} arrived as ${byRid.get(rid(e) ?? '')}`),
        [],
        `${name}: not as normalised`,
      );
      const missing = s.h1.cleanExpected.filter((e) => !received.has(e));
      console.log(
        `      fuzz ${name}: ${s.h1.cleanRequests} well-formed requests on clean connections, ` +
          `${s.h1.cleanAnswered200} answered 200 (${JSON.stringify(s.h1.cleanStatuses)}), ` +
          `${s.h1.cleanExpected.length - missing.length} received by the app as normalised`,
      );
      if (s.h1.cleanShort.length > 0)
        console.log(
          `      fuzz ${name}: clean connections short of answers by what ended them ${JSON.stringify(s.h1.cleanShortBy)}; ` +
            s.h1.cleanShort
              .slice(0, 12)
              .map(
                (c) =>
                  `#${c.index} ${c.answered}/${c.sent} ${c.endedBy} after ${c.silentMs} ms silent, next ${c.next}`,
              )
              .join(' | '),
        );
      // The proxy closing a clean connection with requests unanswered is a loss: hard.
      assert.equal(
        s.h1.cleanShortBy.peer ?? 0,
        0,
        `${name}: the proxy closed clean connections with requests unanswered`,
      );
      if (s.h1.cleanAnswered200 !== s.h1.cleanRequests || missing.length > 0)
        unanswered.push(
          `${name}: ${s.h1.cleanRequests - s.h1.cleanAnswered200} without an answer ` +
            `(${JSON.stringify(s.h1.cleanShortBy)}: none = the driver's guard), ` +
            `${missing.length} never reached the app`,
        );
    }
    noProblems(unanswered, 'well-formed requests on clean connections left unanswered');
  });

  it('no smuggled request reached the backend, and it saw no more requests than were sent', () => {
    const urls = backendLines.flatMap((line) => {
      const m = /^req (".*?") (".*")$/.exec(line);
      return m ? [JSON.parse(m[2]!) as string] : [];
    });
    const smuggled = urls.filter((u) => u.includes(SMUGGLED_PREFIX));
    assert.deepEqual(smuggled.slice(0, 20), [], `${smuggled.length} smuggled requests reached the backend`);
    // HTTP/1.1 fuzz targets are /fuzz/{v,x,s}/<id>...: each one sent at most once (retries may repeat one).
    const h1Targets = new Set(urls.filter((u) => /^\/fuzz\/[vxs]\//.test(u)).map((u) => u.split('/')[3]));
    let sent = 0;
    let valid = 0;
    for (const s of summaries.values()) {
      sent += s.h1.requests;
      valid += s.h1.valid;
    }
    console.log(
      `      fuzz: the backend received ${urls.length} requests, ${h1Targets.size} distinct HTTP/1.1 fuzz requests ` +
        `(${valid} of the ${sent} sent were well-formed)`,
    );
    assert.ok(h1Targets.size <= sent);
  });

  // Minimised from a fuzz run: an h2c connection with 16 bytes of a 40-byte frame, then the client's FIN.
  it("an h2c connection with a partial frame is closed after the client's FIN (outbound)", async () => {
    const script = `
      const s = require('net').connect({ host: ${JSON.stringify(VIP)}, port: 80, allowHalfOpen: true });
      const started = Date.now();
      s.on('connect', () => {
        const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
        const partial = Buffer.concat([Buffer.from([0, 0, 40, 0x42, 0, 0, 0, 0, 3]), Buffer.alloc(16)]);
        s.end(Buffer.concat([Buffer.from('PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n'), settings, partial]));
      });
      s.on('data', () => {});
      s.on('error', () => {});
      s.on('close', () => { console.log(Date.now() - started); process.exit(0); });
      setTimeout(() => { console.log('open'); process.exit(0); }, 10000);`;
    const out = await mesh.harness.runIn(client, nodeBin, ['-e', script]);
    assert.notEqual(out.trim(), 'open', 'the sidecar kept the connection open 10 s after the FIN');
  });

  it('memory still held after a full GC comes back to within a tolerance of the warmed-up baseline', async () => {
    for (const pod of [server, client]) {
      const pid = sidecarPid(pod);
      const base = baseline.get(pod.name)!;
      const peak = usage(pid).hwmKiB;
      const limit = base.liveBytes! + HEAP_TOLERANCE_BYTES;
      let last = 0;
      const live = await waitFor(
        `the sidecar in ${pod.name} to hold no more than ${mib(limit / 1024)} after a GC (baseline ${mib(base.liveBytes! / 1024)})`,
        async () => {
          last = await liveBytes(mesh, pod);
          return last <= limit ? last : undefined;
        },
        {
          timeoutMs: 120_000,
          intervalMs: 2_000,
          detail: () => `last ${mib(last / 1024)}; TCP sockets: ${sockets(pod.ns)}`,
        },
      );
      // RSS for the record only (see HEAP_TOLERANCE_BYTES).
      console.log(
        `      fuzz ${pod.name} sidecar: live after GC ${mib(base.liveBytes! / 1024)} → ${mib(live / 1024)}; ` +
          `RSS ${mib(base.rssKiB)} → peak ${mib(peak)} → ${mib(usage(pid).rssKiB)}`,
      );
    }
  });

  it('file descriptors return to the baseline once the fuzz connections are gone', async () => {
    // Downstream connections end with their clients (or the 10 s header timeout); pooled upstream ones after
    // UPSTREAM_IDLE_MS without a request. What is left past the wait is a leak, not a pool.
    const settleMs = Number(process.env.SLUICE_FUZZ_SETTLE_MS ?? 60_000);
    for (const pod of [server, client]) {
      const pid = sidecarPid(pod);
      const base = baseline.get(pod.name)!;
      const peak = usage(pid).fds;
      const fds = await waitFor(
        `the sidecar in ${pod.name} to close its fuzz connections (baseline ${base.fds} fds + ${FD_SLACK})`,
        () => {
          const now = usage(pid).fds;
          return now <= base.fds + FD_SLACK ? now : undefined;
        },
        {
          timeoutMs: settleMs,
          intervalMs: 500,
          detail: () => `${usage(pid).fds} fds; TCP sockets: ${sockets(pod.ns)}`,
        },
      );
      console.log(`      fuzz ${pod.name} sidecar: fds ${base.fds} → ${peak} after the run → ${fds}`);
    }
  });
});
