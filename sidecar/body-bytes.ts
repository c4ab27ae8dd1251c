// Body sizes for the http.*.body.size metrics, counted as the bytes flow past, without reading the body.
import type { Readable } from 'node:stream';

/**
 * Counts the bytes of `stream` that its reader (a pipe, undici) consumes. A 'data' listener added before
 * the reader would start the flow early and lose those bytes, so the counter joins when the stream starts
 * flowing ('resume' comes just before the first chunk); a stream nobody reads counts 0.
 */
export function countFlowingBytes(stream: Readable): () => number {
  let n = 0;
  const count = (chunk: Buffer | string): void => {
    n += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
  };
  if (stream.readableFlowing === true) stream.on('data', count);
  else stream.once('resume', () => stream.on('data', count));
  return () => n;
}

/** The gRPC status of a response: grpc-status in its trailers, or in its headers (trailers-only). */
export function grpcStatusOf(
  headers: Readonly<Record<string, unknown>>,
  trailers: Readonly<Record<string, unknown>> | undefined,
): number | undefined {
  const raw = trailers?.['grpc-status'] ?? headers['grpc-status'];
  const text: unknown = Array.isArray(raw) ? (raw as unknown[])[0] : raw;
  if (typeof text !== 'string' || !/^\d{1,2}$/.test(text.trim())) return undefined;
  return Number(text.trim());
}
