// Local replies tell the caller the cause, never the mesh's layout (issue 13, point 9). A real HTTP server
// answers with localReply; the body is read back over a socket.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { localReply, publicMessage } from '../../../sidecar/local-reply.ts';

describe('sidecar local replies', () => {
  it('publicMessage drops addresses and SPIFFE IDs, keeps the cause', () => {
    const cases: [string, string][] = [
      [
        'upstream ERR_SPIFFE_ID_MISMATCH from 10.0.0.7:8080 (shop/reviews:80): server SPIFFE ID is spiffe://cluster.local/ns/shop/sa/impostor, expected spiffe://cluster.local/ns/shop/sa/reviews',
        'upstream ERR_SPIFFE_ID_MISMATCH from [address] (shop/reviews:80): server SPIFFE ID is [identity], expected [identity]',
      ],
      ['connect ECONNREFUSED [fd00::2]:9080', 'connect ECONNREFUSED [address]'],
      ['connect ECONNREFUSED fe80::fc:ff:fe00:1 and ::1', 'connect ECONNREFUSED [address] and [address]'],
      ['no endpoints for shop/reviews:80', 'no endpoints for shop/reviews:80'],
      ['from ::ffff:10.0.0.1 and fe80::1%eth0', 'from [address] and [address]'],
      [
        'upstream request timeout after 500 ms (app:8080)',
        'upstream request timeout after 500 ms (app:8080)',
      ],
    ];
    for (const [input, expected] of cases) assert.equal(publicMessage(input), expected);
  });

  it('a 502 body and a gRPC error message carry no IP and no spiffe://', async () => {
    const detail =
      'upstream ECONNRESET from 10.1.2.3:8080 (shop/reviews:80): peer spiffe://cluster.local/ns/shop/sa/reviews';
    const server = http.createServer((req, res) => localReply(req, res, 502, detail));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const plain = await fetch(url);
      const body = await plain.text();
      assert.equal(plain.status, 502);
      assert.doesNotMatch(body, /\d+\.\d+\.\d+\.\d+|spiffe:/);
      assert.match(body, /upstream ECONNRESET/);
      const grpc = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/grpc' } });
      await grpc.arrayBuffer();
      const message = decodeURIComponent(grpc.headers.get('grpc-message') ?? '');
      assert.equal(grpc.headers.get('grpc-status'), '14');
      assert.doesNotMatch(message, /\d+\.\d+\.\d+\.\d+|spiffe:/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('answers a gRPC call over HTTP/2 trailers-only: grpc-status in a HEADERS frame that ends the stream', async () => {
    const server = http2.createServer((req, res) => localReply(req, res, 404, 'no route rule matches'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const stream = client.request({
        ':method': 'POST',
        ':path': '/x.Y/Z',
        'content-type': 'application/grpc',
      });
      stream.end();
      const [headers, flags] = await new Promise<[http2.IncomingHttpHeaders, number]>((resolve) =>
        stream.once('response', (h, f) => resolve([h, f])),
      );
      assert.equal(headers['grpc-status'], '12');
      assert.ok((flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0, 'HEADERS carries END_STREAM');
      stream.resume();
      await new Promise((resolve) => stream.once('close', resolve));
    } finally {
      client.close();
      server.close();
    }
  });
});
