/**
 * Memory back toward idle after load. V8 keeps the heap it grew into and glibc keeps freed malloc pages (TLS
 * buffers, HTTP parsers) in its arenas, so after an overload a sidecar stayed at its peak RSS for good (ADR
 * 0016). Every few seconds the proxy compares its own CPU time and RSS: once a busy period is followed by an
 * idle period and RSS is well above what it was after the last release, it runs one full garbage
 * collection and gives glibc's free pages back (malloc_trim): after an overload nearly all of the
 * retained memory was malloc's, not V8's heap. One release per busy-then-idle transition, and
 * only when idle, so no request waits on it under load.
 */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import koffi from 'koffi';
import type { Logger } from '../lib/json-log.ts';

export interface IdleMemoryOptions {
  /** CPU time the process has used, microseconds (process.cpuUsage() user + system). */
  cpuMicros(): number;
  rssBytes(): number;
  /** `after`: what the release follows, load or start-up (see releaseAfterStart). */
  release(after: 'load' | 'start'): void;
  intervalMs: number;
  /** An interval using less than this share of one core is idle. */
  idleCpuShare: number;
  /** Idle intervals in a row before a release (load that pauses briefly keeps its memory). */
  idleIntervals: number;
  /** RSS above the level after the last release by more than this is worth a release. */
  slackBytes: number;
  /** Monotonic milliseconds. */
  nowMs(): number;
  /** At least this long from one release to the next: load that stops and starts pays for a few at most. */
  minSpacingMs: number;
  /**
   * Start-up counts as a busy period whose growth no slack covers: the first idle streak releases once
   * whatever RSS is (the young generation start-up grew into, the configuration's parse garbage: 77.0 →
   * 69.2 MB in an idle sidecar, which V8 does not give back by itself in 30 s; ADR 0016, tenth session).
   */
  releaseAfterStart: boolean;
}

export class IdleMemory {
  readonly #o: IdleMemoryOptions;
  #lastCpu: number;
  #floor: number;
  #busySinceRelease = false;
  #startPending: boolean;
  #idleInARow = 0;
  #releasedAt = -Infinity;
  releases = 0;

  constructor(options: IdleMemoryOptions) {
    this.#o = options;
    this.#lastCpu = options.cpuMicros();
    this.#floor = options.rssBytes();
    this.#startPending = options.releaseAfterStart;
  }

  /** One interval has passed; true when it released memory. */
  tick(): boolean {
    const cpu = this.#o.cpuMicros();
    const busy = cpu - this.#lastCpu > this.#o.idleCpuShare * this.#o.intervalMs * 1000;
    this.#lastCpu = cpu;
    if (busy) {
      this.#busySinceRelease = true;
      this.#idleInARow = 0;
      return false;
    }
    if (++this.#idleInARow < this.#o.idleIntervals) return false;
    const rss = this.#o.rssBytes();
    const startPending = this.#startPending;
    // Idle and nothing grew: the floor follows RSS down (and up by lazy loads that did not come back).
    if (!startPending && (!this.#busySinceRelease || rss <= this.#floor + this.#o.slackBytes)) {
      if (rss < this.#floor) this.#floor = rss;
      return false;
    }
    // Too soon after the last one: kept for the next idle interval past the spacing.
    if (this.#o.nowMs() - this.#releasedAt < this.#o.minSpacingMs) return false;
    this.#o.release(this.#busySinceRelease ? 'load' : 'start');
    // The start-up release is once per process: it does not delay the first one after load.
    if (!startPending) this.#releasedAt = this.#o.nowMs();
    this.#startPending = false;
    this.releases++;
    this.#busySinceRelease = false;
    this.#floor = this.#o.rssBytes();
    this.#lastCpu = this.#o.cpuMicros(); // the release's own CPU does not count as load
    return true;
  }
}

type Gc = (options?: { type: 'major'; execution: 'sync'; flavor: 'regular' | 'last-resort' }) => void;

/**
 * A full garbage collection, the collector reached the way --expose-gc would expose it. `shrink`: V8's
 * last-resort flavour, which also uncommits the pages the heap grew into (the young generation above all); a
 * plain one frees the objects but V8 keeps the pages: 124 MB RSS 30 s after an overload against 98 (ADR 0016).
 */
export function fullGc(shrink = false): void {
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as Gc;
  if (shrink) gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  else gc();
}

type MallocTrim = (pad: number) => number;
let mallocTrim: MallocTrim | null | undefined;

/** glibc's malloc_trim(0): free pages at the top of the heap and inside every arena back to the kernel. */
export function trimMalloc(): void {
  if (mallocTrim === undefined) {
    try {
      mallocTrim = koffi.load('libc.so.6').func('int malloc_trim(size_t pad)') as MallocTrim;
    } catch {
      mallocTrim = null; // not glibc (musl, macOS): nothing to trim this way
    }
  }
  mallocTrim?.(0);
}

/** What a release runs: V8's last-resort full GC, a regular one, or none; `malloc_trim` in each. */
export type ReleaseFlavour = 'last-resort' | 'gc' | 'trim';

/**
 * The proxy's watcher: every 5 s; a release once idle for 15 s (under 0.5 % of a core: 25 ms of CPU in 5 s,
 * a fraction of what even a few requests take) after start-up, and after load when 8 MiB above the level
 * after the last one and a minute or more after it. `tuning` shortens the interval and the threshold (tests).
 */
export function watchIdleMemory(
  onRelease: (beforeMb: number, afterMb: number, ms: number, after: 'load' | 'start') => void,
  tuning: { intervalMs?: number; slackBytes?: number; flavour?: ReleaseFlavour } = {},
): {
  stop(): void;
  idle: IdleMemory;
} {
  const mb = (): number => Math.round(process.memoryUsage.rss() / 2 ** 20);
  const intervalMs = tuning.intervalMs ?? 5000;
  const idle = new IdleMemory({
    cpuMicros: () => {
      const u = process.cpuUsage();
      return u.user + u.system;
    },
    rssBytes: () => process.memoryUsage.rss(),
    release: (after) => {
      const before = mb();
      const started = performance.now();
      const flavour = tuning.flavour ?? 'last-resort';
      if (flavour !== 'trim') fullGc(flavour === 'last-resort');
      trimMalloc();
      // Synchronous: the time is both its CPU and the pause of the event loop.
      onRelease(before, mb(), Math.round(performance.now() - started), after);
    },
    intervalMs,
    idleCpuShare: 0.005,
    idleIntervals: 3,
    // Idle + 10 MB after load is the target (issue 16); a release costs tens of ms once idle (ADR 0023).
    slackBytes: tuning.slackBytes ?? 8 * 2 ** 20,
    nowMs: () => performance.now(),
    minSpacingMs: 60_000,
    releaseAfterStart: true,
  });
  const timer = setInterval(() => idle.tick(), intervalMs).unref();
  return { stop: () => clearInterval(timer), idle };
}

/**
 * The release as a proxy runs it (sidecar and gateway alike), logged. `SLUICE_IDLE_MEMORY_RELEASE=off`: none,
 * the proxy keeps what the load grew (to measure the release's cost, ADR 0016); `gc` and `trim`: the other
 * flavours (measured against each other in bench/idle-release-cost.ts).
 * `SLUICE_IDLE_MEMORY_CHECK_MS` and `SLUICE_IDLE_MEMORY_SLACK_MB` shorten the interval and the threshold
 * (tests of a proxy process).
 */
export function startIdleMemoryRelease(
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): { stop(): void; idle: IdleMemory } | undefined {
  if (env.SLUICE_IDLE_MEMORY_RELEASE === 'off') return undefined;
  const number = (v: string | undefined): number | undefined =>
    v === undefined || !/^\d+$/.test(v) ? undefined : Number(v);
  const slackMb = number(env.SLUICE_IDLE_MEMORY_SLACK_MB);
  const intervalMs = number(env.SLUICE_IDLE_MEMORY_CHECK_MS);
  const flavour = env.SLUICE_IDLE_MEMORY_RELEASE;
  return watchIdleMemory(
    (beforeMb, afterMb, ms, after) =>
      log.info(`idle after ${after}, memory released`, { rssMb: beforeMb, afterMb, ms }),
    {
      ...(intervalMs ? { intervalMs } : {}),
      ...(slackMb === undefined ? {} : { slackBytes: slackMb * 2 ** 20 }),
      ...(flavour === 'gc' || flavour === 'trim' ? { flavour } : {}),
    },
  );
}
