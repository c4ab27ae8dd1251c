import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { decodeSockaddr, originalDestination, socketFd } from '../../sidecar/original-dst.ts';

function sockaddrIn(address: string, port: number): Buffer {
  const buffer = Buffer.alloc(16);
  buffer.writeUInt16LE(2, 0);
  buffer.writeUInt16BE(port, 2);
  address.split('.').forEach((octet, i) => buffer.writeUInt8(Number(octet), 4 + i));
  return buffer;
}

function sockaddrIn6(groups: number[], port: number): Buffer {
  const buffer = Buffer.alloc(28);
  buffer.writeUInt16LE(10, 0);
  buffer.writeUInt16BE(port, 2);
  groups.forEach((group, i) => buffer.writeUInt16BE(group, 8 + 2 * i));
  return buffer;
}

describe('SO_ORIGINAL_DST decoding', () => {
  it('sockaddr_in', () => {
    assert.deepEqual(decodeSockaddr(sockaddrIn('10.96.0.10', 80), 16), {
      address: '10.96.0.10',
      port: 80,
      family: 4,
    });
    assert.deepEqual(decodeSockaddr(sockaddrIn('255.1.0.254', 65535), 16), {
      address: '255.1.0.254',
      port: 65535,
      family: 4,
    });
  });

  it('sockaddr_in6, in RFC 5952 form', () => {
    const cases: [number[], string][] = [
      [[0xfd96, 0, 0, 0, 0, 0, 0, 0x10], 'fd96::10'],
      [[0, 0, 0, 0, 0, 0, 0, 1], '::1'],
      [[0, 0, 0, 0, 0, 0, 0, 0], '::'],
      [[0x2001, 0xdb8, 0, 1, 0, 0, 0, 1], '2001:db8:0:1::1'],
      [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], '2001:db8::1:0:0:1'],
      [[0xfe80, 0, 0, 0, 0, 0, 0, 0], 'fe80::'],
      [[1, 2, 3, 4, 5, 6, 7, 8], '1:2:3:4:5:6:7:8'],
    ];
    for (const [groups, text] of cases) {
      assert.deepEqual(decodeSockaddr(sockaddrIn6(groups, 8080), 28), {
        address: text,
        port: 8080,
        family: 6,
      });
    }
  });

  it('short or unknown sockaddrs give undefined', () => {
    assert.equal(decodeSockaddr(sockaddrIn('1.2.3.4', 1), 4), undefined);
    assert.equal(decodeSockaddr(sockaddrIn6([1], 1), 16), undefined);
    assert.equal(decodeSockaddr(Buffer.alloc(28), 28), undefined);
    assert.equal(decodeSockaddr(Buffer.alloc(28), 0), undefined);
  });
});

describe('originalDestination on real sockets', () => {
  it('never throws: a local address (conntrack present) or undefined (no NAT entry), then undefined when closed', async () => {
    const server = createServer();
    const accepted = new Promise<Socket>((resolve) => {
      server.once('connection', resolve);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const client = connect(port, '127.0.0.1');
    const socket = await accepted;
    try {
      assert.equal(typeof socketFd(socket), 'number');
      const original = originalDestination(socket);
      if (original !== undefined) assert.deepEqual(original, { address: '127.0.0.1', port, family: 4 });
    } finally {
      client.destroy();
      socket.destroy();
      server.close();
    }
    assert.equal(socketFd(socket), undefined);
    assert.equal(originalDestination(socket), undefined);
  });
});
