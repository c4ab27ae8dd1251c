import assert from 'node:assert/strict';
import net from 'node:net';
import { relayUnlessHttp } from '../../sidecar/opaque-relay.ts';

// A connection whose client said nothing within the detection timeout: server-first protocols must flow,
// and an HTTP request that comes late must still be parsed, not relayed raw.
describe('opaque relay of a silent client', () => {
  async function pair(greeting: string | undefined): Promise<{
    client: net.Socket;
    proxied: Promise<net.Socket>;
    appPort: number;
    upstreamGot: () => string;
    close(): void;
  }> {
    let got = '';
    const app = net.createServer((s) => {
      s.setEncoding('latin1').on('data', (d: string) => (got += d));
      s.on('error', () => undefined);
      if (greeting) s.write(greeting);
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const appPort = (app.address() as net.AddressInfo).port;
    let accepted!: (s: net.Socket) => void;
    const proxied = new Promise<net.Socket>((r) => (accepted = r));
    const front = net.createServer((s) => accepted(s));
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const client = net.connect((front.address() as net.AddressInfo).port, '127.0.0.1');
    return {
      client,
      proxied,
      appPort,
      upstreamGot: () => got,
      close() {
        client.destroy();
        app.close();
        front.close();
      },
    };
  }

  it('a server-first protocol flows both ways once the server spoke', async () => {
    const t = await pair('220 hello\r\n');
    try {
      const socket = await t.proxied;
      const upstream = net.connect(t.appPort, '127.0.0.1');
      let httpCalled = false;
      relayUnlessHttp(socket, upstream, () => (httpCalled = true));
      const greeting = await new Promise<string>((r) => t.client.once('data', (d) => r(String(d))));
      assert.equal(greeting, '220 hello\r\n');
      t.client.write('GET / HTTP/1.1\r\nx-sluice-peer-identity: forged\r\n\r\n');
      await new Promise<void>((r) => {
        const poll = (): void => (t.upstreamGot().includes('\r\n\r\n') ? r() : void setImmediate(poll));
        poll();
      });
      assert.equal(httpCalled, false);
    } finally {
      t.close();
    }
  });

  it('an HTTP request before the server spoke goes to the HTTP parser; the app gets no byte of it', async () => {
    const t = await pair(undefined);
    try {
      const socket = await t.proxied;
      const upstream = net.connect(t.appPort, '127.0.0.1');
      await new Promise((r) => upstream.once('connect', r));
      const http = new Promise<string>((r) => relayUnlessHttp(socket, upstream, r));
      t.client.write('\r\nM-SEARCH * HTTP/1.1\r\nx-sluice-peer-identity: forged\r\n\r\n');
      assert.equal(await http, 'http1');
      await new Promise((r) => upstream.once('close', r));
      assert.equal(t.upstreamGot(), '');
      assert.match(String(socket.read()), /^\r\nM-SEARCH/);
    } finally {
      t.close();
    }
  });
});
