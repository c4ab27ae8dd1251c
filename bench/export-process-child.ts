// The OTLP/HTTP export's own process (bench modes "/proc", "/sibling"; started by OtlpProcessExporter,
// export-process.ts, at its first export, or by bench/tracing-cost.ts): its stdin is one socket shared with the proxy. In: frames of a 12-byte head (id,
// budget in ms, body length: u32 big-endian) and the encoded batch. Out: one JSON line per batch,
// { id, ok, failure? }, as the export thread answers. The POST, retries and backoff are the thread's
// (Http1Poster, sendWithRetries). Stdin's end (the proxy gone) ends this process.
import net from 'node:net';
import { errorText } from '../lib/error-text.ts';
import { Http1Poster } from '../sidecar/tracing/otlp-http1-post.ts';
import { sendWithRetries } from '../sidecar/tracing/otlp-export-retries.ts';
import { FRAME_HEAD_BYTES } from './export-process.ts';
import type { ExportFailure } from '../sidecar/tracing/span-pipeline.ts';

const [url = '', backoff = '250'] = process.argv.slice(2);
const backoffBaseMs = Number(backoff);
const poster = new Http1Poster(new URL(url));
const post = poster.post.bind(poster);
const channel = new net.Socket({ fd: 0, readable: true, writable: true });

let received: Buffer = Buffer.alloc(0);
channel.on('data', (chunk: Buffer) => {
  received = received.length ? Buffer.concat([received, chunk]) : chunk;
  while (received.length >= FRAME_HEAD_BYTES) {
    const length = received.readUInt32BE(8);
    if (received.length < FRAME_HEAD_BYTES + length) break;
    const id = received.readUInt32BE(0);
    const budgetMs = received.readUInt32BE(4);
    const body = received.subarray(FRAME_HEAD_BYTES, FRAME_HEAD_BYTES + length);
    received = received.subarray(FRAME_HEAD_BYTES + length);
    send(id, budgetMs, body);
  }
});
// The proxy died or closed its end: nobody is left to answer.
channel.on('end', () => process.exit(0));
channel.on('error', () => process.exit(0));

function send(id: number, budgetMs: number, body: Buffer): void {
  const answer = (failure: ExportFailure | undefined): void => {
    channel.write(`${JSON.stringify(failure ? { id, ok: false, failure } : { id, ok: true })}\n`);
  };
  sendWithRetries(body, budgetMs, {
    post,
    now: () => performance.now(),
    closed: () => false,
    backoffBaseMs,
  }).then(answer, (error: unknown) => answer({ reason: 'internal_error', error: errorText(error) }));
}
