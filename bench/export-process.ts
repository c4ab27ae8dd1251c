// Bench modes "1%/proc", "0%/proc", "…/sibling" (bench/tracing-proxy.ts): an OTLP/HTTP exporter that sends
// encoded spans from a process of its own (export-process-child.ts), the experiment of ADR 0019's "export
// process" amendment, measured no cheaper than the export thread and so not the proxy's.
// Why it was tried: a Worker makes its stdio streams and a MessagePort in
// the proxy's isolate, which leaves the constructors every request runs (IncomingMessage, Readable,
// EventEmitter) polymorphic. Here the proxy holds one child process object and one socket (the child's
// stdin, never read or written as a stream): each batch goes out as a frame with a plain write on its fd,
// non-blocking (a full socket drops the batch), and the child's answers (JSON lines) are read from the same
// fd by a poll while exports are under way. The child POSTs, retries and backs off as the export thread does.
import { spawn, type ChildProcess } from 'node:child_process';
import { readSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { backoffDelay } from '../lib/backoff.ts';
import { errorText } from '../lib/error-text.ts';
import { encodeBatch } from '../sidecar/tracing/otlp-encode.ts';
import type { OtlpHttpOptions } from '../sidecar/tracing/otlp-http-exporter.ts';
import type { ExportFailure, SpanExporter } from '../sidecar/tracing/span-pipeline.ts';
import type { SpanRecord } from '../sidecar/tracing/span-record.ts';

/** A frame's head: the export's id, its budget (ms) and the body's length, u32 big-endian each. */
export const FRAME_HEAD_BYTES = 12;

const CHILD_PATH = fileURLToPath(new URL('./export-process-child.ts', import.meta.url));
/** The child's heap bounds, as the export thread's resourceLimits (past them it dies and is restarted). */
const CHILD_FLAGS = ['--max-old-space-size=64', '--max-semi-space-size=1'];
/** The proxy gives up on an export this long after its budget (as the thread exporter does). */
const ANSWER_GRACE_MS = 1000;
/** Answers are polled for this soon after a batch is written, then at doubling intervals up to the max. */
const POLL_FIRST_MS = 10;
const POLL_MAX_MS = 500;
/** After the child dies, the next one starts no sooner than this (doubling per death, with jitter). */
const RESTART_BACKOFF = { initialMs: 1000, maxMs: 60_000 };

// The proxy's failure reasons (span-pipeline.ts) stand for the process's: a thread's start or exit for the
// process's, a full queue for a full socket.
const RESTARTING: ExportFailure = { reason: 'thread_start_failed', error: 'restarting' };
const PIPE_FULL: ExportFailure = { reason: 'queue_full' };

interface Waiting {
  readonly settle: (failure: ExportFailure | undefined) => void;
  readonly deadline: number;
}

export interface OtlpProcessOptions extends OtlpHttpOptions {
  /**
   * Benchmarks: the proxy's end of a socket to an export process someone else started (bench/tracing-cost.ts,
   * "/sibling" modes): no child process object in this isolate at all. Not restarted when it ends.
   */
  readonly channelFd?: number;
}

interface ExportProcess {
  readonly child: ChildProcess | undefined;
  /** Our end of the child's stdin socket (non-blocking); Node closes it when the child exits. */
  readonly fd: number;
  readonly waiting: Map<number, Waiting>;
  /** The rest of a frame the socket did not take at once: written before any other frame. */
  unsent: Buffer | undefined;
  /** The answers' text read so far, up to an incomplete line. */
  lines: string;
}

export class OtlpProcessExporter implements SpanExporter {
  readonly #url: string;
  readonly #backoffBaseMs: number;
  readonly #timeoutMs: number;
  #channelFd: number | undefined;
  #proc: ExportProcess | undefined;
  #nextId = 1;
  readonly #pending = new Set<Promise<ExportFailure | undefined>>();
  #closed = false;
  #deaths = 0;
  #restartAt = 0;
  #poll: NodeJS.Timeout | undefined;
  #pollMs = POLL_FIRST_MS;
  readonly #readBuf = Buffer.allocUnsafe(4096);

  constructor(o: OtlpProcessOptions) {
    new URL(o.url); // an invalid endpoint fails here, when the settings are applied
    this.#url = o.url;
    this.#backoffBaseMs = o.backoffBaseMs ?? 250;
    this.#timeoutMs = o.timeoutMs;
    this.#channelFd = o.channelFd;
  }

  export(spans: readonly SpanRecord[]): Promise<ExportFailure | undefined> {
    if (this.#closed) return Promise.resolve({ reason: 'shut_down' });
    const body = encodeBatch(spans);
    if (!Buffer.isBuffer(body)) return Promise.resolve(body);
    if (!this.#proc && performance.now() < this.#restartAt) {
      return Promise.resolve(RESTARTING);
    }
    let proc: ExportProcess;
    try {
      proc = this.#proc ??= this.#start();
    } catch (error) {
      this.#died();
      return Promise.resolve({ reason: 'thread_start_failed', error: errorText(error) });
    }
    this.#writeUnsent(proc);
    if (proc.unsent) return Promise.resolve(PIPE_FULL);
    const id = this.#nextId;
    this.#nextId = (this.#nextId % 0xffff_ffff) + 1;
    const frame = Buffer.allocUnsafe(FRAME_HEAD_BYTES + body.length);
    frame.writeUInt32BE(id, 0);
    frame.writeUInt32BE(this.#timeoutMs, 4);
    frame.writeUInt32BE(body.length, 8);
    body.copy(frame, FRAME_HEAD_BYTES);
    let written: number;
    try {
      written = writeSync(proc.fd, frame);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      // EAGAIN: the child has not taken the frames before (the bound on what is queued for it).
      return Promise.resolve(
        code === 'EAGAIN' ? PIPE_FULL : { reason: 'internal_error', error: errorText(error) },
      );
    }
    if (written < frame.length) proc.unsent = frame.subarray(written);
    const done = new Promise<ExportFailure | undefined>((settle) =>
      proc.waiting.set(id, { settle, deadline: performance.now() + this.#timeoutMs + ANSWER_GRACE_MS }),
    );
    this.#pending.add(done);
    void done.finally(() => this.#pending.delete(done));
    this.#pollMs = POLL_FIRST_MS;
    this.#schedulePoll();
    return done;
  }

  /** The export process, started at the first export and unref'd; its stderr is the proxy's. */
  #start(): ExportProcess {
    if (this.#channelFd !== undefined) {
      const fd = this.#channelFd;
      this.#channelFd = -1; // one process only
      if (fd < 0) throw new Error('the export process is gone');
      return { child: undefined, fd, waiting: new Map(), unsent: undefined, lines: '' };
    }
    const child = spawn(process.execPath, [...CHILD_FLAGS, CHILD_PATH, this.#url, `${this.#backoffBaseMs}`], {
      stdio: ['pipe', 'ignore', 'inherit'],
    });
    const fd = (child.stdin as unknown as { _handle?: { fd?: number } } | null)?._handle?.fd;
    if (fd === undefined || fd < 0) {
      child.kill();
      throw new Error('no socket to the export process');
    }
    child.unref();
    const proc: ExportProcess = { child, fd, waiting: new Map(), unsent: undefined, lines: '' };
    let error: string | undefined;
    const ended = (exitCode: number | null, signal: NodeJS.Signals | null): void => {
      this.#ended(proc, { reason: 'thread_exited', exitCode: exitCode ?? -1, error: error ?? signal ?? '' });
    };
    child.on('error', (e) => {
      error = errorText(e);
      if (child.exitCode === null && child.signalCode === null && child.pid === undefined) ended(null, null);
    });
    child.on('exit', ended);
    return proc;
  }

  /** The process is gone (its fd closed by Node, never touched again): its exports fail. */
  #ended(proc: ExportProcess, failure: ExportFailure): void {
    if (this.#proc !== proc) return;
    this.#proc = undefined;
    this.#died();
    for (const w of proc.waiting.values()) w.settle(failure);
    proc.waiting.clear();
  }

  #died(): void {
    this.#restartAt = performance.now() + backoffDelay(this.#deaths++, RESTART_BACKOFF);
  }

  #schedulePoll(): void {
    if (this.#poll) return;
    this.#poll = setTimeout(() => {
      this.#poll = undefined;
      this.#readAnswers();
      if (this.#proc?.waiting.size) {
        this.#pollMs = Math.min(this.#pollMs * 2, POLL_MAX_MS);
        this.#schedulePoll();
      }
    }, this.#pollMs);
    this.#poll.unref();
  }

  #writeUnsent(proc: ExportProcess): void {
    if (!proc.unsent) return;
    try {
      const n = writeSync(proc.fd, proc.unsent);
      proc.unsent = n < proc.unsent.length ? proc.unsent.subarray(n) : undefined;
    } catch {
      // EAGAIN: still full; another error: the child's exit follows and ends this process record
    }
  }

  /** Settles the exports the child answered, and those past their deadline. */
  #readAnswers(): void {
    const proc = this.#proc;
    if (!proc) return;
    this.#writeUnsent(proc);
    for (;;) {
      let n: number;
      try {
        n = readSync(proc.fd, this.#readBuf);
      } catch {
        break; // EAGAIN: nothing more now
      }
      if (n === 0) {
        // the child's end closed: its exit follows (a sibling's, in a benchmark, does not)
        if (proc.child) break;
        return this.#ended(proc, { reason: 'thread_exited', exitCode: -1, error: 'EOF' });
      }
      proc.lines += this.#readBuf.toString('utf8', 0, n);
    }
    let eol: number;
    while ((eol = proc.lines.indexOf('\n')) >= 0) {
      const line = proc.lines.slice(0, eol);
      proc.lines = proc.lines.slice(eol + 1);
      let answer: { id: number; ok: boolean; failure?: ExportFailure };
      try {
        answer = JSON.parse(line) as typeof answer;
      } catch {
        continue; // not ours (a child's bug): its batch ends at its deadline
      }
      this.#deaths = 0;
      proc.waiting.get(answer.id)?.settle(answer.ok ? undefined : answer.failure);
      proc.waiting.delete(answer.id);
    }
    const now = performance.now();
    for (const [id, w] of proc.waiting) {
      if (now < w.deadline) continue;
      w.settle({ reason: 'no_answer' });
      proc.waiting.delete(id);
    }
  }

  /** Tests and benchmarks: the export process, while one runs. */
  get child(): ChildProcess | undefined {
    return this.#proc?.child;
  }

  /** Waits for the exports under way, then ends the process. */
  async shutdown(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#pending);
    clearTimeout(this.#poll);
    this.#proc?.child?.kill();
  }
}
