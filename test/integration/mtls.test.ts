import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createCa, issueWorkloadCert, loadCa, type CertificateAuthority } from '../../pki/ca.ts';
import { parseIdentity, type Identity } from '../../pki/identity.ts';
import { loadIdentityDir, watchIdentityDir, writeIdentityDir } from '../../pki/identity-dir.ts';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.ts';
import { authenticatePeer, PeerIdentityError } from '../../pki/peer-identity.ts';
import {
  clientTlsOptions,
  createMeshSecureContext,
  MESH_ALPN,
  MESH_ALPN_H2,
  MESH_ALPN_HTTP1,
  MESH_ALPN_TCP,
  MeshTlsCredentials,
  serverTlsOptions,
} from '../../pki/tls-options.ts';
import { waitFor } from '../support/wait-for.ts';

const TD = 'cluster.local';
const SERVER_ID = `spiffe://${TD}/ns/default/sa/server`;
const CLIENT_ID = `spiffe://${TD}/ns/default/sa/client`;

async function identityFor(
  ca: CertificateAuthority,
  spiffeId: string,
  bundlePem = ca.certPem,
): Promise<Identity> {
  const keys = await generateKeyPair();
  const certPem = await issueWorkloadCert({ ca, spiffeId, publicKey: keys.publicKey });
  return parseIdentity({ certPem, keyPem: await privateKeyToPem(keys.privateKey), bundlePem });
}

interface MeshServer {
  server: tls.Server;
  port: number;
  /** SPIFFE IDs of authenticated clients, in order. */
  peers: string[];
  /** Connections closed because the peer identity was refused. */
  refused: string[];
  tlsErrors: string[];
  sockets: Set<tls.TLSSocket>;
}

/** An echo server that greets each authenticated client with its SPIFFE ID. */
async function startServer(options: tls.TlsOptions): Promise<MeshServer> {
  const state: MeshServer = {
    server: tls.createServer(options),
    port: 0,
    peers: [],
    refused: [],
    tlsErrors: [],
    sockets: new Set(),
  };
  state.server.on('secureConnection', (socket) => {
    socket.on('error', () => undefined);
    try {
      const peer = authenticatePeer(socket, TD);
      state.peers.push(peer.spiffeId);
      state.sockets.add(socket);
      socket.once('close', () => state.sockets.delete(socket));
      socket.write(`hello ${peer.spiffeId}\n`);
      socket.pipe(socket);
    } catch (err) {
      assert.ok(err instanceof PeerIdentityError);
      state.refused.push(err.message);
      socket.destroy();
    }
  });
  state.server.on('tlsClientError', (err: NodeJS.ErrnoException) =>
    state.tlsErrors.push(err.code ?? err.message),
  );
  state.server.listen(0, '127.0.0.1');
  await once(state.server, 'listening');
  state.port = (state.server.address() as AddressInfo).port;
  return state;
}

async function stopServer(s: MeshServer): Promise<void> {
  for (const socket of s.sockets) socket.destroy();
  await new Promise((resolve) => s.server.close(resolve));
}

interface Connected {
  socket: tls.TLSSocket;
  greeting: string;
}

/** Connects and waits for the server's greeting line; rejects on any error or early close. */
function connect(port: number, options: tls.ConnectionOptions): Promise<Connected> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...options });
    let buffer = '';
    const fail = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl !== -1) {
        socket.removeAllListeners('data');
        socket.removeListener('close', onClose);
        socket.on('error', () => undefined);
        resolve({ socket, greeting: buffer.slice(0, nl) });
      }
    });
    const onClose = (): void => fail(new Error('connection closed before the greeting'));
    socket.once('error', fail);
    socket.once('close', onClose);
  });
}

async function echo(socket: tls.TLSSocket, text: string): Promise<string> {
  socket.write(text);
  let got = '';
  while (got.length < text.length) {
    const [chunk] = (await once(socket, 'data')) as [string];
    got += chunk;
  }
  return got;
}

describe('pki: mTLS between sidecars (loopback)', () => {
  let ca: CertificateAuthority;
  let serverIdentity: Identity;
  let clientIdentity: Identity;
  let server: MeshServer;

  before(async () => {
    ca = await loadCa(await createCa({ trustDomain: TD }));
    serverIdentity = await identityFor(ca, SERVER_ID);
    clientIdentity = await identityFor(ca, CLIENT_ID);
    server = await startServer(serverTlsOptions(serverIdentity));
  });
  after(async () => {
    await stopServer(server);
  });
  beforeEach(() => {
    server.peers.length = 0;
    server.refused.length = 0;
    server.tlsErrors.length = 0;
  });

  function clientOptions(
    identity = clientIdentity,
    expected: string | string[] = SERVER_ID,
  ): tls.ConnectionOptions {
    return clientTlsOptions({
      secureContext: createMeshSecureContext(identity),
      expectedSpiffeId: expected,
      servername: 'server.default.svc',
    });
  }

  it('completes a TLS 1.3 handshake with the right identities; the server sees the client SPIFFE ID', async () => {
    const { socket, greeting } = await connect(server.port, clientOptions());
    try {
      assert.equal(greeting, `hello ${CLIENT_ID}`);
      assert.deepEqual(server.peers, [CLIENT_ID]);
      assert.equal(socket.getProtocol(), 'TLSv1.3');
      assert.equal(socket.alpnProtocol, 'h2');
      assert.equal(socket.authorized, true);
      assert.equal(socket.getPeerCertificate().subjectaltname, `URI:${SERVER_ID}`);
      assert.equal(await echo(socket, 'ping'), 'ping');
    } finally {
      socket.destroy();
    }
  });

  it('accepts any of several expected SPIFFE IDs', async () => {
    const { socket } = await connect(
      server.port,
      clientOptions(clientIdentity, [`spiffe://${TD}/ns/x/sa/y`, SERVER_ID]),
    );
    socket.destroy();
  });

  it('fails when the server is not the expected SPIFFE ID', async () => {
    await assert.rejects(
      connect(server.port, clientOptions(clientIdentity, `spiffe://${TD}/ns/default/sa/other`)),
      (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'ERR_SPIFFE_ID_MISMATCH');
        assert.match(
          err.message,
          /server SPIFFE ID is spiffe:\/\/cluster.local\/ns\/default\/sa\/server, expected/,
        );
        return true;
      },
    );
    assert.deepEqual(server.peers, []);
  });

  it('fails when the server certificate comes from another CA', async () => {
    const otherCa = await loadCa(await createCa({ trustDomain: TD }));
    const impostor = await startServer(serverTlsOptions(await identityFor(otherCa, SERVER_ID)));
    try {
      await assert.rejects(connect(impostor.port, clientOptions()), (err: NodeJS.ErrnoException) => {
        assert.match(
          err.code ?? '',
          /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_SIGNATURE_FAILURE/,
        );
        return true;
      });
      assert.deepEqual(impostor.peers, []);
    } finally {
      await stopServer(impostor);
    }
  });

  it('rejects a client certificate from another CA', async () => {
    const otherCa = await loadCa(await createCa({ trustDomain: TD }));
    // Signed by another CA but trusting ours, so that only the server's check can stop it.
    const foreign = { ...(await identityFor(otherCa, CLIENT_ID)), bundlePem: ca.certPem };
    await assert.rejects(connect(server.port, clientOptions(foreign)));
    assert.deepEqual(server.peers, []);
    assert.deepEqual(server.refused, []);
  });

  it('rejects a client without a certificate', async () => {
    const noCert = tls.createSecureContext({ ca: ca.certPem, minVersion: 'TLSv1.3' });
    await assert.rejects(
      connect(server.port, clientTlsOptions({ secureContext: noCert, expectedSpiffeId: SERVER_ID })),
    );
    assert.deepEqual(server.peers, []);
  });

  it('rejects a TLS 1.2 client', async () => {
    await assert.rejects(
      connect(server.port, {
        cert: clientIdentity.certPem,
        key: clientIdentity.keyPem,
        ca: ca.certPem,
        minVersion: 'TLSv1.2',
        maxVersion: 'TLSv1.2',
        checkServerIdentity: () => undefined,
      }),
      (err: NodeJS.ErrnoException) => {
        assert.match(err.code ?? '', /ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION|ERR_SSL_UNSUPPORTED_PROTOCOL/);
        return true;
      },
    );
    assert.match(server.tlsErrors.join(), /UNSUPPORTED_PROTOCOL/);
  });

  it('refuses, after the handshake, a trusted client from another trust domain', async () => {
    const otherCa = await loadCa(await createCa({ trustDomain: 'other.td' }));
    const bundle = ca.certPem + otherCa.certPem;
    const multi = await startServer(serverTlsOptions(await identityFor(ca, SERVER_ID, bundle)));
    try {
      const outsider = await identityFor(otherCa, 'spiffe://other.td/ns/default/sa/client', bundle);
      await assert.rejects(connect(multi.port, clientOptions(outsider)), /closed before the greeting/);
      assert.deepEqual(multi.peers, []);
      assert.match(multi.refused.join(), /not in trust domain 'cluster.local'/);
    } finally {
      await stopServer(multi);
    }
  });

  it('negotiates ALPN by server preference: the declared mesh protocols, then h2, http/1.1, the old marker only alone', async () => {
    const cases: [string[], string][] = [
      [[MESH_ALPN_HTTP1, 'http/1.1', MESH_ALPN], MESH_ALPN_HTTP1],
      [[MESH_ALPN_H2, 'h2', MESH_ALPN], MESH_ALPN_H2],
      [[MESH_ALPN_TCP, MESH_ALPN], MESH_ALPN_TCP],
      [['http/1.1', MESH_ALPN], 'http/1.1'],
      [[MESH_ALPN], MESH_ALPN],
      [['h2', 'http/1.1', MESH_ALPN], 'h2'],
      [[MESH_ALPN, 'http/1.1', 'h2'], 'h2'], // the server's preference wins
    ];
    for (const [offered, selected] of cases) {
      const options = clientTlsOptions({
        secureContext: createMeshSecureContext(clientIdentity),
        expectedSpiffeId: SERVER_ID,
        alpnProtocols: offered,
      });
      const { socket } = await connect(server.port, options);
      assert.equal(socket.alpnProtocol, selected, offered.join());
      socket.destroy();
    }
  });

  it('rotates identities through the identity directory without dropping connections', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-mtls-'));
    const serverCreds = new MeshTlsCredentials(serverIdentity);
    await writeIdentityDir(dir, serverIdentity);
    const rotating = await startServer(serverCreds.serverOptions());
    serverCreds.track(rotating.server);
    const changed: Identity[] = [];
    const watcher = watchIdentityDir(dir, {
      initial: await loadIdentityDir(dir),
      debounceMs: 50,
      onChange: (identity) => {
        changed.push(identity);
        serverCreds.update(identity);
      },
      onError: (err) => assert.fail(err),
    });
    const clientCreds = new MeshTlsCredentials(clientIdentity);
    try {
      const first = await connect(rotating.port, clientCreds.clientOptions({ expectedSpiffeId: SERVER_ID }));
      const oldSerial = first.socket.getPeerCertificate().serialNumber;

      const next = await identityFor(ca, SERVER_ID);
      await writeIdentityDir(dir, next);
      await waitFor('the watcher to see the rotation', () => changed.length > 0);
      assert.equal(changed.length, 1, 'watcher saw the rotation once');

      // The connection opened before the rotation still works.
      assert.equal(await echo(first.socket, 'still here'), 'still here');
      // New connections get the new certificate; the client rotates too.
      const nextClient = await identityFor(ca, CLIENT_ID);
      clientCreds.update(nextClient);
      const second = await connect(rotating.port, clientCreds.clientOptions({ expectedSpiffeId: SERVER_ID }));
      const newSerial = second.socket.getPeerCertificate().serialNumber;
      assert.notEqual(newSerial, oldSerial);
      assert.equal(newSerial, new X509Certificate(next.certPem).serialNumber);
      assert.equal(second.greeting, `hello ${CLIENT_ID}`);
      assert.equal(await echo(first.socket, 'and now'), 'and now');
      // The rotated context is still TLS 1.3 only.
      await assert.rejects(
        connect(rotating.port, {
          ...clientCreds.clientOptions({ expectedSpiffeId: SERVER_ID }),
          secureContext: tls.createSecureContext({
            cert: nextClient.certPem,
            key: nextClient.keyPem,
            ca: ca.certPem,
            maxVersion: 'TLSv1.2',
          }),
        }),
      );
      first.socket.destroy();
      second.socket.destroy();
    } finally {
      watcher.close();
      await stopServer(rotating);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('measures key generation + issuance and handshakes', async function () {
    const n = 100;
    let start = performance.now();
    for (let i = 0; i < n; i++) {
      const keys = await generateKeyPair();
      await issueWorkloadCert({ ca, spiffeId: CLIENT_ID, publicKey: keys.publicKey });
    }
    const issueMs = (performance.now() - start) / n;
    const context = createMeshSecureContext(clientIdentity);
    start = performance.now();
    for (let i = 0; i < 50; i++) {
      const { socket } = await connect(
        server.port,
        clientTlsOptions({ secureContext: context, expectedSpiffeId: SERVER_ID }),
      );
      socket.destroy();
    }
    const handshakeMs = (performance.now() - start) / 50;
    if (process.env.SLUICE_PRINT_TIMINGS) {
      process.stdout.write(
        `      key + cert: ${issueMs.toFixed(2)} ms; mTLS handshake + greeting: ${handshakeMs.toFixed(2)} ms\n`,
      );
    }
    assert.ok(issueMs < 200, `key + cert took ${issueMs} ms`);
    this.test!.title += ` (key+cert ${issueMs.toFixed(1)} ms, handshake ${handshakeMs.toFixed(1)} ms)`;
  });
});
