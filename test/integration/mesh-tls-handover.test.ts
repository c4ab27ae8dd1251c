import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createCa, issueWorkloadCert, loadCa } from '../../pki/ca.ts';
import { parseIdentity } from '../../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.ts';
import { MeshTlsCredentials } from '../../pki/tls-options.ts';
import { meshTlsHandover } from '../../sidecar/inbound-listener.ts';
import { waitFor } from '../support/wait-for.ts';

// The inbound listener's hand-over of a mesh connection to the TLS server, on loopback: a client sidecar
// that gives a connection up mid-handshake (its FIN after the ClientHello) must not leave the server
// holding it. Found by the listener fuzz test: the loaded server sidecar kept 1,600 such connections in
// CLOSE-WAIT, with their descriptors and TLS state, until Node's 2-minute handshake timeout.

describe('inbound mesh TLS hand-over', function () {
  this.timeout(20_000);
  let server: net.Server;
  let port: number;
  const closed: net.Socket[] = [];
  const raw = new Set<net.Socket>();

  before(async () => {
    const ca = await loadCa(await createCa({ trustDomain: 'cluster.local' }));
    const keys = await generateKeyPair();
    const certPem = await issueWorkloadCert({
      ca,
      spiffeId: 'spiffe://cluster.local/ns/app/sa/server',
      publicKey: keys.publicKey,
    });
    const identity = parseIdentity({
      certPem,
      keyPem: await privateKeyToPem(keys.privateKey),
      bundlePem: ca.certPem,
    });
    // As the sidecar's TLS server (no handshake timeout of its own here: Node's 2 minutes).
    const tlsServer = tls.createServer(new MeshTlsCredentials(identity).serverOptions());
    tlsServer.on('tlsClientError', (_err, socket) => socket.destroy());
    // Half-open, as the inbound listener accepts every connection.
    server = net.createServer({ allowHalfOpen: true }, (socket) => {
      raw.add(socket);
      socket.on('error', () => socket.destroy());
      socket.on('close', () => closed.push(socket));
      meshTlsHandover(tlsServer, socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(() => {
    for (const s of raw) s.destroy();
    server.close();
  });

  it('closes a connection whose client ends before the handshake completes', async () => {
    // A record header and part of a ClientHello: the server waits for the rest, then reads the FIN.
    const client = net.connect({ port, host: '127.0.0.1' });
    await new Promise((resolve) => client.once('connect', resolve));
    client.on('error', () => undefined);
    client.end(Buffer.from([0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03]));
    const ended = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.resume();
    await waitFor(
      'the server to close the connection after the FIN',
      () => (closed.length > 0 ? true : undefined),
      {
        timeoutMs: 5_000,
        intervalMs: 25,
      },
    );
    await ended;
  });
});
