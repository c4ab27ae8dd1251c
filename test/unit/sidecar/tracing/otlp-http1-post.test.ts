// The export thread's hand-written HTTP/1.1 POST: the response head and framing it reads, against a
// node:http collector (kept-alive connections reused, closed ones replaced) and a raw one (answers
// node:http would not give: split, chunked, unframed, malformed), and an https collector.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { createCa, loadCa } from '../../../../pki/ca.ts';
import { Http1Poster, readResponseHead } from '../../../../sidecar/tracing/otlp-http1-post.ts';
import { serverCert } from '../../../support/server-cert.ts';

const head = (s: string) => readResponseHead(Buffer.from(s, 'latin1'));

describe('OTLP export: HTTP/1.1 POST', () => {
  it('reads the status and whether the connection can carry the next request', () => {
    assert.deepEqual(head('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), { status: 200, reuse: true });
    assert.equal(head('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n'), undefined);
    assert.deepEqual(head('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no'), { status: 200, reuse: false });
    assert.deepEqual(head('HTTP/1.1 503 x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n'), {
      status: 503,
      reuse: false,
    });
    assert.deepEqual(head('HTTP/1.1 204 No Content\r\n\r\n'), { status: 204, reuse: true });
    assert.deepEqual(head('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'), { status: 200, reuse: false });
    assert.deepEqual(head('HTTP/1.1 200 OK\r\n\r\nuntil close'), { status: 200, reuse: false });
    assert.deepEqual(head('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n'), {
      status: 400,
      reuse: true,
    });
    const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
    assert.deepEqual(head(`${chunked}3\r\nabc\r\n0\r\n\r\n`), { status: 200, reuse: true });
    assert.deepEqual(head(`${chunked}3;x=1\r\nabc\r\n0\r\nTrailer: t\r\n\r\n`), { status: 200, reuse: true });
    assert.deepEqual(head(`${chunked}3\r\nabc\r\n0\r\n`), { status: 200, reuse: false });
    assert.deepEqual(head('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'), {
      status: 200,
      reuse: false,
    });
    assert.throws(() => head('SSH-2.0-OpenSSH\r\n\r\n'), /malformed response/);
    assert.throws(() => head(`${chunked}zz\r\n`), /malformed chunk/);
  });

  let server: http.Server | net.Server | undefined;
  const defaultCas = tls.getCACertificates('default');
  afterEach(() => {
    tls.setDefaultCACertificates(defaultCas);
    if (server instanceof http.Server) server.closeAllConnections();
    server?.close();
  });
  const listen = async (s: http.Server | net.Server): Promise<URL> => {
    server = s.listen(0, '127.0.0.1');
    await once(s, 'listening');
    return new URL(`http://127.0.0.1:${(s.address() as AddressInfo).port}/v1/traces?x=1`);
  };

  it('POSTs the body on one kept-alive connection, and opens another when the collector closed it', async () => {
    const seen: string[] = [];
    const peers = new Set<number>();
    const url = await listen(
      http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          peers.add(req.socket.remotePort!);
          seen.push(
            `${req.method} ${req.url} ${req.headers.host} ${req.headers['content-type']} ${Buffer.concat(chunks).toString()}`,
          );
          res.statusCode = chunks.length ? 200 : 503;
          if (req.headers['content-length'] === '5') res.setHeader('connection', 'close');
          res.end('{}');
        });
      }),
    );
    const poster = new Http1Poster(url);
    const body = (s: string) => new TextEncoder().encode(s);
    assert.deepEqual(await poster.post(body('one'), 5000), { status: 200 });
    assert.deepEqual(await poster.post(body(''), 5000), { status: 503 });
    assert.equal(peers.size, 1);
    assert.deepEqual(await poster.post(body('three'), 5000), { status: 200 }); // answered with close
    assert.deepEqual(await poster.post(body('four'), 5000), { status: 200 });
    assert.equal(peers.size, 2);
    assert.deepEqual(seen, [
      `POST /v1/traces?x=1 ${url.host} application/x-protobuf one`,
      `POST /v1/traces?x=1 ${url.host} application/x-protobuf `,
      `POST /v1/traces?x=1 ${url.host} application/x-protobuf three`,
      `POST /v1/traces?x=1 ${url.host} application/x-protobuf four`,
    ]);
    poster.close();
  });

  it('reads an answer split over packets, and fails on a cut, a garbled, an endless or a missing one', async () => {
    const answers = [
      ['HTTP/1.1 202 Accepted\r\nContent-', 'Length: 0\r\n\r\n'],
      ['HTTP/1.1 2'], // then the connection is cut
      ['NOT HTTP\r\n\r\n'],
      ['HTTP/1.1 200 OK\r\n', 'X: y\r\n'.repeat(20_000)], // a head that never ends
      [], // never answers
    ];
    let n = 0;
    const url = await listen(
      net.createServer((socket) => {
        const parts = answers[n++]!;
        socket.on('error', () => undefined); // the poster gives up on the endless head by destroying
        socket.once('data', () => {
          parts.forEach((p, i) => setTimeout(() => socket.write(p), 10 * i));
          if (parts.length === 1) setTimeout(() => socket.destroy(), 50);
        });
      }),
    );
    const poster = new Http1Poster(url);
    const body = new Uint8Array([1, 2, 3]);
    assert.deepEqual(await poster.post(body, 5000), { status: 202 });
    poster.close(); // the next ones each on a connection of their own
    assert.deepEqual(await poster.post(body, 5000), { error: 'ECONNRESET' });
    assert.deepEqual(await poster.post(body, 5000), { error: 'malformed response' });
    assert.deepEqual(await poster.post(body, 5000), { error: 'response head too large' });
    assert.deepEqual(await poster.post(body, 100), { timedOut: true });
    poster.close();
  });

  it('fails with the error code when nothing listens', async () => {
    const url = await listen(net.createServer());
    server!.close();
    await once(server!, 'close');
    assert.deepEqual(await new Http1Poster(url).post(new Uint8Array(1), 5000), { error: 'ECONNREFUSED' });
  });

  it('POSTs to an https collector verified against the default CAs, on one kept-alive connection', async () => {
    const ca = await loadCa(await createCa({ trustDomain: 'cluster.local' }));
    const peers = new Set<number>();
    const collector = https.createServer(await serverCert(ca, 'localhost'), (req, res) => {
      peers.add(req.socket.remotePort!);
      req.resume();
      req.on('end', () => res.end());
    });
    const { port } = await listen(collector);
    const at = (host: string) => new URL(`https://${host}:${port}/v1/traces`);
    const body = new Uint8Array([1, 2, 3]);
    // A collector whose certificate no CA of the process signed is refused.
    assert.deepEqual(await new Http1Poster(at('localhost')).post(body, 5000), {
      error: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
    // Trusted as NODE_EXTRA_CA_CERTS would make it (in the proxy, for its export thread too).
    tls.setDefaultCACertificates([...defaultCas, ca.certPem]);
    assert.deepEqual(await new Http1Poster(at('127.0.0.1')).post(body, 5000), {
      error: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
    assert.equal(peers.size, 0);
    const poster = new Http1Poster(at('localhost'));
    assert.deepEqual(await poster.post(body, 5000), { status: 200 });
    assert.deepEqual(await poster.post(body, 5000), { status: 200 });
    assert.equal(peers.size, 1);
    collector.closeAllConnections();
    poster.close();
  });
});
