#!/usr/bin/env node
/**
 * load: a steady request load for the churn tests (sluice-toolbox image), counting every request.
 *   load --rate N [--concurrency C] [--http1 URLS] [--h2c URLS] [--grpc URLS] --stop-file F --out F
 * Sends N requests/s per protocol given (HTTP/1.1 on keep-alive connections and h2c on one connection per
 * host, GET and POST alternating for each URL; unary gRPC calls on another HTTP/2 connection per host), taking the
 * comma-separated URLS in turn, until the stop file exists; then waits for the requests in flight. Every
 * second, and once more at the end with "done": true, it replaces the out file with the counts so far:
 *   { "http1": { "total", "failed", "causes": { "echo: POST status 502 (…)": 1, "slow: GET ECONNRESET": 2 } }, ...,
 *     "seconds", "done", "failures": [ { "at": ISO time, "protocol", "cause" } ] (the first 200) }
 * A request failed when it got no answer, an HTTP status other than 200 or a grpc-status other than 0;
 * a cause starts with the first label of the URL's host, then the method and the first line of the reply's
 * body or grpc-message (load-cause.ts): `echo: POST status 502 (the app reset the request …)`.
 */
import { existsSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import http2 from 'node:http2';
import { parseArgs } from 'node:util';
import { grpcCall } from '../echo/echo-server.ts';
import { decodeGrpcMessage, failureCause } from './load-cause.ts';

const USAGE =
  'usage: load --rate N [--concurrency C] [--http1 URLS] [--h2c URLS] [--grpc URLS] --stop-file F --out F';
const TIMEOUT_MS = 10_000;
const BODY = 'order=1';
/** The most of a failed reply's body kept to take its first line from. */
const REPLY_BYTES = 1024;

type Protocol = 'http1' | 'h2c' | 'grpc';
interface Counts {
  total: number;
  failed: number;
  causes: Record<string, number>;
}

/** One request; resolves with undefined on success, else the cause of the failure. */
type Send = (post: boolean) => Promise<string | undefined>;

/**
 * Takes the URLs in turn, each alternating GET and POST on its own (one counter for both would, with an
 * even number of URLs, send every other URL only GETs); a failure's cause is prefixed with the host's
 * first label.
 */
function roundRobin(urls: string, make: (url: string) => Send): () => Promise<string | undefined> {
  const senders = urls.split(',').map((url) => {
    const send = make(url);
    const label = new URL(url).hostname.split('.')[0] ?? '';
    let n = 0;
    return async () => {
      const cause = await send(n++ % 2 === 1);
      return cause === undefined ? undefined : `${label}: ${cause}`;
    };
  });
  let i = 0;
  return () => senders[i++ % senders.length]!();
}

/** Keeps the first REPLY_BYTES of a body as it flows. */
function replyKeeper(): { add: (chunk: Buffer) => void; text: () => string } {
  const chunks: Buffer[] = [];
  let kept = 0;
  return {
    add: (chunk) => {
      if (kept >= REPLY_BYTES) return;
      chunks.push(chunk.subarray(0, REPLY_BYTES - kept));
      kept += Math.min(chunk.length, REPLY_BYTES - kept);
    },
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

function http1Sender(url: string, agent: http.Agent): Send {
  return (post) =>
    new Promise((resolve) => {
      const method = post ? 'POST' : 'GET';
      const cause = (detail: string, reply?: string) => resolve(failureCause(method, detail, reply));
      const req = http.request(url, {
        agent,
        method,
        headers: post ? { 'content-type': 'text/plain', 'content-length': BODY.length } : {},
        timeout: TIMEOUT_MS,
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => cause(err.code ?? err.message));
      req.on('response', (res) => {
        const reply = replyKeeper();
        if (res.statusCode === 200) res.resume();
        else res.on('data', reply.add);
        res.on('error', (err: NodeJS.ErrnoException) => cause(`body ${err.code ?? err.message}`));
        res.on('end', () =>
          res.statusCode === 200 ? resolve(undefined) : cause(`status ${res.statusCode}`, reply.text()),
        );
      });
      req.end(post ? BODY : undefined);
    });
}

/** One HTTP/2 connection, replaced once it closed or got GOAWAY. */
function sessionFor(url: string): () => http2.ClientHttp2Session {
  let session: http2.ClientHttp2Session | undefined;
  return () => {
    if (session === undefined || session.closed || session.destroyed) {
      const fresh = http2.connect(url);
      fresh.setMaxListeners(0);
      fresh.on('error', () => undefined);
      fresh.on('goaway', () => {
        if (session === fresh) session = undefined;
      });
      session = fresh;
    }
    return session;
  };
}

function h2cSender(url: string): Send {
  const session = sessionFor(url);
  const path = new URL(url).pathname;
  return (post) =>
    new Promise((resolve) => {
      const method = post ? 'POST' : 'GET';
      const cause = (detail: string, reply?: string) => resolve(failureCause(method, detail, reply));
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session().request({
          ':method': method,
          ':path': path,
          ...(post ? { 'content-type': 'text/plain', 'content-length': BODY.length } : {}),
        });
      } catch (err) {
        cause(`request ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
        return;
      }
      let status = 0;
      const reply = replyKeeper();
      stream.setTimeout(TIMEOUT_MS, () => stream.close(http2.constants.NGHTTP2_CANCEL));
      stream.on('response', (headers) => (status = Number(headers[':status'])));
      stream.on('error', () => undefined);
      stream.on('data', (chunk: Buffer) => {
        if (status !== 200) reply.add(chunk);
      });
      stream.on('close', () => {
        if (status === 0) cause(`no response (rst ${stream.rstCode})`);
        else if (stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) cause(`rst ${stream.rstCode}`);
        else if (status === 200) resolve(undefined);
        else cause(`status ${status}`, reply.text());
      });
      stream.end(post ? BODY : undefined);
    });
}

function grpcSender(url: string): Send {
  const session = sessionFor(url);
  return async () => {
    try {
      const r = await grpcCall(session(), '/echo.Echo/Call', {}, TIMEOUT_MS);
      if (r.grpcStatus === 0) return undefined;
      const message = r.grpcMessage === null ? undefined : decodeGrpcMessage(r.grpcMessage);
      return failureCause('gRPC', `grpc-status ${r.grpcStatus} (http ${r.status})`, message);
    } catch (err) {
      return failureCause('gRPC', err instanceof Error ? err.message : String(err));
    }
  };
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: {
        rate: { type: 'string' },
        concurrency: { type: 'string', default: '16' },
        http1: { type: 'string' },
        h2c: { type: 'string' },
        grpc: { type: 'string' },
        'stop-file': { type: 'string' },
        out: { type: 'string' },
      },
    }).values;
  } catch (err) {
    process.stderr.write(`load: ${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
    return 2;
  }
  const rate = Number(values.rate);
  const concurrency = Number(values.concurrency);
  const stopFile = values['stop-file'];
  const out = values.out;
  if (!(rate > 0) || !(concurrency >= 1) || stopFile === undefined || out === undefined) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const senders: [Protocol, () => Promise<string | undefined>][] = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  if (values.http1) senders.push(['http1', roundRobin(values.http1, (url) => http1Sender(url, agent))]);
  if (values.h2c) senders.push(['h2c', roundRobin(values.h2c, h2cSender)]);
  if (values.grpc) senders.push(['grpc', roundRobin(values.grpc, grpcSender)]);

  const started = performance.now();
  let stopRequested = false;
  const stopping = (): boolean => stopRequested;
  const failures: { at: string; protocol: Protocol; cause: string }[] = [];
  const result: Partial<Record<Protocol, Counts>> = {};
  const interval = 1000 / rate;

  async function run(protocol: Protocol, send: () => Promise<string | undefined>): Promise<void> {
    const counts: Counts = { total: 0, failed: 0, causes: {} };
    result[protocol] = counts;
    let next = performance.now();
    const worker = async () => {
      while (!stopping()) {
        // After a stall (every worker busy) the schedule goes on from now, without a burst to catch up.
        next = Math.max(next, performance.now() - 1000);
        const slot = next;
        next += interval;
        const wait = slot - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (stopping()) return;
        const cause = await send();
        counts.total++;
        if (cause !== undefined) {
          counts.failed++;
          counts.causes[cause] = (counts.causes[cause] ?? 0) + 1;
          if (failures.length < 200) failures.push({ at: new Date().toISOString(), protocol, cause });
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }

  let writing = Promise.resolve();
  const snapshot = (done: boolean): Promise<void> => {
    const seconds = Math.round((performance.now() - started) / 100) / 10;
    const text = JSON.stringify({ ...result, seconds, done, failures }) + '\n';
    writing = writing
      .then(() => writeFile(`${out}.tmp`, text))
      .then(() => rename(`${out}.tmp`, out))
      .catch((err: unknown) => {
        process.stderr.write(`load: ${String(err)}\n`);
      });
    return writing;
  };
  const watch = setInterval(() => {
    if (existsSync(stopFile)) stopRequested = true;
    else void snapshot(false);
  }, 1000);
  await Promise.all(senders.map(([protocol, send]) => run(protocol, send)));
  clearInterval(watch);
  await snapshot(true);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
process.exit();
