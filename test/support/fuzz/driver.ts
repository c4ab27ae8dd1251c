// The fuzz test's client, run inside a pod (its traffic is captured like an app's): opens connections to
// host:port with bounded concurrency and writes generated HTTP/1.1 requests (pipelined) or HTTP/2 frame
// sequences, reads what comes back, half-closes, and waits a bounded time for the proxy to close. Prints
// one JSON summary. Same seed, same bytes: the connections' contents do not depend on timing.
// Usage: node test/support/fuzz/driver.ts '<DriverPlan as JSON>'
import net from 'node:net';
import { Prng } from './prng.ts';
import { connectionRequests } from './http1-requests.ts';
import { frame, h2Sequence } from './h2-frames.ts';

// A well-behaved HTTP/2 client ends with GOAWAY (NO_ERROR), then its FIN.
const H2_GOODBYE = frame(0x7, 0, 0, Buffer.alloc(8));

export interface DriverPlan {
  host: string;
  port: number;
  seed: number;
  http1Requests: number;
  h2Sequences: number;
  concurrency: number;
  maxPerConnection: number;
  /** After the client half-closes, the proxy must close within this (else the connection "hung"). */
  closeBoundMs: number;
  /** No data for this long while answers are still missing: the client half-closes (not on clean ones). */
  quietMs: number;
  /**
   * Clean connections (well-formed requests only) wait for every answer, however slow, and are cut only
   * after this long without a byte, which must exceed the proxy's own bound (its stream idle timeout); a
   * busy machine is slow, and a test that gives up on a timer measures the machine rather than the proxy.
   */
  answerBoundMs: number;
}

export interface DriverSummary {
  seed: number;
  durationMs: number;
  h1: {
    connections: number;
    requests: number;
    valid: number;
    smuggling: number;
    responses: number;
    statuses: Record<string, number>;
    cleanConnections: number;
    cleanRequests: number;
    cleanAnswered200: number;
    cleanStatuses: Record<string, number>;
    /** `METHOD target` the app must have received, for each request on a clean connection. */
    cleanExpected: string[];
    /**
     * Clean connections that ended short of answers (first 50): what made the client half-close, how long
     * it had heard nothing then, answers counted of requests sent, and the first unanswered request.
     */
    cleanShort: {
      index: number;
      endedBy: string;
      silentMs: number;
      answered: number;
      sent: number;
      next: string;
    }[];
    /** How many clean connections ended short of answers, by what made the client half-close. */
    cleanShortBy: Record<string, number>;
    kinds: Record<string, number>;
  };
  h2: { connections: number; kinds: Record<string, number> };
  hung: { kind: string; index: number }[];
  maxConnectionMs: number;
}

interface ConnectionResult {
  statuses: number[];
  hung: boolean;
  ms: number;
  /** What made the client half-close: every answer counted, its quiet wait, the proxy's FIN, or none. */
  endedBy: 'answered' | 'quiet' | 'peer' | 'written' | 'none';
  /** Milliseconds from the last byte received (or the connect) to the client's half-close. */
  silentMs: number;
}

/** Counts HTTP/1.1 responses in a byte stream (the proxy's answers are well-formed; 1xx are skipped). */
class ResponseCounter {
  statuses: number[] = [];
  #buf: Buffer = Buffer.alloc(0);
  #broken = false;

  push(chunk: Buffer): void {
    if (this.#broken) return;
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    for (;;) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.#buf.toString('latin1', 0, end);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      if (!m) return void (this.#broken = true);
      const status = Number(m[1]);
      let rest = this.#buf.subarray(end + 4);
      const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
      if (status < 200 || status === 204 || status === 304) {
        // no body
      } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
        let off = 0;
        for (;;) {
          const lineEnd = rest.indexOf('\r\n', off);
          if (lineEnd < 0) return;
          const size = parseInt(rest.toString('latin1', off, lineEnd), 16);
          if (Number.isNaN(size)) return void (this.#broken = true);
          if (size === 0) {
            const trailerEnd = rest.indexOf('\r\n\r\n', lineEnd - 2 < off ? off : lineEnd - 2);
            if (trailerEnd < 0) return;
            off = trailerEnd + 4;
            break;
          }
          if (rest.length < lineEnd + 2 + size + 2) return;
          off = lineEnd + 2 + size + 2;
        }
        rest = rest.subarray(off);
      } else if (cl) {
        const n = Number(cl[1]);
        if (rest.length < n) return;
        rest = rest.subarray(n);
      } else {
        // Read to close: counted now, the rest of the stream is body.
        if (status >= 200) this.statuses.push(status);
        return void (this.#broken = true);
      }
      if (status >= 200) this.statuses.push(status);
      this.#buf = rest;
    }
  }
}

function runConnection(
  plan: DriverPlan,
  bytes: Buffer,
  expected: number,
  endAfterWrite: boolean,
  h1: boolean,
  quietMs: number,
): Promise<ConnectionResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    const counter = new ResponseCounter();
    const socket = net.connect({ host: plan.host, port: plan.port, allowHalfOpen: true });
    let ended = false;
    let done = false;
    let quiet: NodeJS.Timeout | undefined;
    let bound: NodeJS.Timeout | undefined;
    let endedBy: ConnectionResult['endedBy'] = 'none';
    let lastByte = started;
    let silentMs = 0;
    const finish = (hung: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(quiet);
      clearTimeout(bound);
      socket.destroy();
      resolve({ statuses: counter.statuses, hung, ms: performance.now() - started, endedBy, silentMs });
    };
    const end = (by: ConnectionResult['endedBy']): void => {
      if (ended) return;
      ended = true;
      endedBy = by;
      silentMs = Math.round(performance.now() - lastByte);
      clearTimeout(quiet);
      if (h1) socket.end();
      else socket.end(H2_GOODBYE);
      bound = setTimeout(() => finish(true), plan.closeBoundMs);
    };
    const armQuiet = (): void => {
      clearTimeout(quiet);
      if (!ended && quietMs > 0) quiet = setTimeout(() => end('quiet'), quietMs);
    };
    // A guard independent of the timers above. For a connection that waits for all its answers (quietMs 0)
    // it is an idle bound, re-armed by every byte received: pipelined requests are answered one after the
    // other, so on a busy machine the connection as a whole may take a minute while never standing still,
    // and only the proxy's own stream idle timeout (answerBoundMs exceeds it) bounds a silence.
    const guardMs = plan.closeBoundMs + (quietMs > 0 ? quietMs * 4 + 30_000 : plan.answerBoundMs);
    let guard = setTimeout(() => finish(true), guardMs);
    const rearmGuard = (): void => {
      if (quietMs > 0 || ended) return;
      clearTimeout(guard);
      guard = setTimeout(() => finish(true), guardMs);
    };
    socket.on('close', () => {
      clearTimeout(guard);
      finish(false);
    });
    socket.on('error', () => undefined);
    socket.on('end', () => end('peer'));
    socket.on('data', (chunk: Buffer) => {
      lastByte = performance.now();
      rearmGuard();
      if (h1) counter.push(chunk);
      if (h1 && counter.statuses.length >= expected) end('answered');
      else armQuiet();
    });
    socket.on('connect', () => {
      lastByte = performance.now();
      // Sometimes in pieces, to exercise partial reads in the sniffer and the parsers.
      const cut = bytes.length > 2 && (bytes.length * 7) % 5 === 0 ? Math.floor(bytes.length / 3) : 0;
      if (cut > 0) socket.write(bytes.subarray(0, cut));
      socket.write(bytes.subarray(cut));
      if (endAfterWrite) end('written');
      else armQuiet();
    });
  });
}

async function main(plan: DriverPlan): Promise<DriverSummary> {
  const started = performance.now();
  // Separate streams, so connection i of each protocol is the same whatever the other's count.
  const h1Root = new Prng(plan.seed);
  const h2Root = new Prng((plan.seed ^ 0x9e3779b9) >>> 0);
  const summary: DriverSummary = {
    seed: plan.seed,
    durationMs: 0,
    h1: {
      connections: 0,
      requests: 0,
      valid: 0,
      smuggling: 0,
      responses: 0,
      statuses: {},
      cleanConnections: 0,
      cleanRequests: 0,
      cleanAnswered200: 0,
      cleanStatuses: {},
      cleanExpected: [],
      cleanShort: [],
      cleanShortBy: {},
      kinds: {},
    },
    h2: { connections: 0, kinds: {} },
    hung: [],
    maxConnectionMs: 0,
  };
  let h1Index = 0;
  let h2Index = 0;
  // Deterministic order of generation: each job is drawn from `root` in sequence, whatever the timing.
  const nextJob = (): (() => Promise<void>) | undefined => {
    const wantH1 = summary.h1.requests < plan.http1Requests;
    const wantH2 = h2Index < plan.h2Sequences;
    if (!wantH1 && !wantH2) return undefined;
    // Interleave: roughly one HTTP/2 connection per HTTP/1.1 connection while both remain.
    const useH1 = wantH1 && (!wantH2 || (h1Index + h2Index) % 2 === 0);
    const r = useH1 ? h1Root.fork() : h2Root.fork();
    if (useH1) {
      const index = h1Index++;
      const clean = r.chance(0.15);
      const requests = connectionRequests(r, plan.maxPerConnection, clean);
      const last = requests.at(-1)!;
      summary.h1.connections++;
      summary.h1.requests += requests.length;
      for (const q of requests) {
        if (q.valid) summary.h1.valid++;
        if (q.smuggling) summary.h1.smuggling++;
        summary.h1.kinds[q.kind] = (summary.h1.kinds[q.kind] ?? 0) + 1;
      }
      if (clean) {
        summary.h1.cleanConnections++;
        summary.h1.cleanRequests += requests.length;
        for (const q of requests) summary.h1.cleanExpected.push(q.expected!);
      }
      const bytes = Buffer.concat(requests.map((q) => q.bytes));
      const expectedOf = requests.map((q) => q.expected ?? q.kind);
      return async () => {
        // Clean connections wait for all their answers (or the proxy's FIN): a busy machine is slow.
        const quietMs = clean ? 0 : plan.quietMs;
        const res = await runConnection(plan, bytes, requests.length, last.incomplete, true, quietMs);
        summary.h1.responses += res.statuses.length;
        for (const s of res.statuses) summary.h1.statuses[s] = (summary.h1.statuses[s] ?? 0) + 1;
        if (clean) {
          summary.h1.cleanAnswered200 += res.statuses.filter((s) => s === 200).length;
          for (const s of res.statuses) summary.h1.cleanStatuses[s] = (summary.h1.cleanStatuses[s] ?? 0) + 1;
          if (res.statuses.length < requests.length) {
            summary.h1.cleanShortBy[res.endedBy] = (summary.h1.cleanShortBy[res.endedBy] ?? 0) + 1;
            if (summary.h1.cleanShort.length < 50)
              summary.h1.cleanShort.push({
                index,
                endedBy: res.endedBy,
                silentMs: res.silentMs,
                answered: res.statuses.length,
                sent: requests.length,
                next: expectedOf[res.statuses.length]!,
              });
          }
        }
        if (res.hung) summary.hung.push({ kind: `http1:${last.kind}`, index });
        summary.maxConnectionMs = Math.max(summary.maxConnectionMs, res.ms);
      };
    }
    const index = h2Index++;
    const seq = h2Sequence(r, `${plan.seed}-${index}`);
    summary.h2.connections++;
    summary.h2.kinds[seq.kind] = (summary.h2.kinds[seq.kind] ?? 0) + 1;
    return async () => {
      const res = await runConnection(plan, seq.bytes, Number.POSITIVE_INFINITY, false, false, plan.quietMs);
      if (res.hung) summary.hung.push({ kind: `h2:${seq.kind}`, index });
      summary.maxConnectionMs = Math.max(summary.maxConnectionMs, res.ms);
    };
  };
  const worker = async (): Promise<void> => {
    for (let job = nextJob(); job; job = nextJob()) await job();
  };
  await Promise.all(Array.from({ length: plan.concurrency }, worker));
  summary.durationMs = Math.round(performance.now() - started);
  summary.maxConnectionMs = Math.round(summary.maxConnectionMs);
  return summary;
}

if (process.argv[2] !== undefined) {
  const summary = await main(JSON.parse(process.argv[2]) as DriverPlan);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}
