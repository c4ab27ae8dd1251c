import assert from 'node:assert/strict';
import { isSelfLoop, normalizeAddress, podAddressSet } from '../../sidecar/self-loop.ts';
import { handOffSource } from '../../sidecar/inbound-listener.ts';

describe('self-loop guard', () => {
  const check = { ownPorts: new Set([15001, 15006, 15021]), localAddresses: () => ['10.0.0.5', 'fd00::5'] };

  it('normalises IPv4-mapped IPv6 and case before comparing', () => {
    assert.equal(normalizeAddress('::ffff:127.0.0.1'), '127.0.0.1');
    assert.equal(normalizeAddress('::FFFF:10.0.0.5'), '10.0.0.5');
    assert.equal(normalizeAddress('FD00::5'), 'fd00::5');
    assert.equal(normalizeAddress('fe80::1%eth0'), 'fe80::1');
  });

  it('refuses own ports on loopback, on the local address (mapped or not) and on any pod address', () => {
    assert.equal(isSelfLoop({ address: '127.0.0.1', port: 15001 }, '::ffff:127.0.0.1', check), true);
    assert.equal(isSelfLoop({ address: '10.0.0.9', port: 15006 }, '::ffff:10.0.0.9', check), true);
    assert.equal(isSelfLoop({ address: '10.0.0.5', port: 15006 }, '::ffff:10.0.0.7', check), true);
    assert.equal(isSelfLoop({ address: 'fd00::5', port: 15021 }, undefined, check), true);
    assert.equal(isSelfLoop({ address: '::1', port: 15006 }, '::1', check), true);
  });

  it('lets other ports, and own port numbers on other hosts, through', () => {
    assert.equal(isSelfLoop({ address: '10.0.0.5', port: 8080 }, '::ffff:10.0.0.5', check), false);
    assert.equal(isSelfLoop({ address: '10.0.0.8', port: 15006 }, '::ffff:10.0.0.5', check), false);
    assert.equal(isSelfLoop({ address: '10.96.0.10', port: 15001 }, '::ffff:10.0.0.5', check), false);
  });
});

describe('inbound hand-off addresses', () => {
  it('binds 127.0.0.6 for IPv4 pod addresses and ::1 for IPv6 ones; nothing for loopback targets', () => {
    assert.equal(handOffSource('10.0.0.5'), '127.0.0.6');
    assert.equal(handOffSource('::ffff:10.0.0.5'), '127.0.0.6');
    assert.equal(handOffSource('fd00::5'), '::1');
    assert.equal(handOffSource('127.0.0.1'), undefined);
    assert.equal(handOffSource('::1'), undefined);
  });

  it('podAddressSet re-reads the addresses only on a miss', () => {
    let reads = 0;
    let current = ['10.0.0.5'];
    const set = podAddressSet(() => {
      reads++;
      return current;
    });
    assert.equal(set.has('::ffff:10.0.0.5'), true);
    assert.equal(reads, 1);
    current = ['10.0.0.5', 'fd00::5'];
    assert.equal(set.has('FD00::5'), true);
    assert.equal(set.has('10.0.0.5'), true);
    assert.equal(reads, 2);
    assert.equal(set.has('8.8.8.8'), false);
    assert.equal(reads, 3);
  });
});
