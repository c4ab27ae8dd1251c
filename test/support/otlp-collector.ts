// A loopback OTLP/HTTP collector and a span for the exporters' tests (the export thread's, the bench's
// export process's).
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SPAN_KIND, SpanRecord } from '../../sidecar/tracing/span-record.ts';

/** Answers each request with `answer` once its body is read (n counts from 1); `bodies` gets every body. */
export async function startCollector(
  answer: (n: number, req: http.IncomingMessage, res: http.ServerResponse) => void,
  bodies: Buffer[] = [],
): Promise<{ server: http.Server; url: string }> {
  let n = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks));
      answer(++n, req, res);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces` };
}

/** A finished CLIENT span of one trace, named `name`. */
export function clientSpan(name: string): SpanRecord {
  return new SpanRecord(
    { attributes: { 'service.name': 'bench' } },
    {
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      parentSpanId: undefined,
      parentIsRemote: false,
    },
    undefined,
    name,
    SPAN_KIND.CLIENT,
    { 'http.request.method': 'GET' },
  );
}
