import assert from 'node:assert/strict';
import { createCa, issueWorkloadCert, loadCa } from '../../pki/ca.ts';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.ts';
import {
  controllerUrl,
  identityFromAnswer,
  renewalDelayMs,
  retryDelayMs,
  capToLifeLeft,
} from '../../sidecar/controller-identity.ts';

describe('controller identity (pure parts)', function () {
  it('controllerUrl fills in the port and refuses what is not host[:port]', function () {
    assert.equal(controllerUrl('10.0.0.1:15012'), 'https://10.0.0.1:15012');
    assert.equal(
      controllerUrl('sluice-controller.sluice-system'),
      'https://sluice-controller.sluice-system:15012',
    );
    assert.equal(
      controllerUrl('sluice-controller.sluice-system.svc:15012'),
      'https://sluice-controller.sluice-system.svc:15012',
    );
    assert.equal(controllerUrl('[fd00::1]:9'), 'https://[fd00::1]:9');
    assert.equal(controllerUrl('https://ctl:443'), 'https://ctl:443');
    for (const bad of ['', 'a b', 'ctl:99999', 'ctl/path', 'user@ctl']) {
      assert.throws(() => controllerUrl(bad), /is not host\[:port\]/, bad);
    }
  });

  it('capToLifeLeft: a certificate near its end is asked for again within a tenth of its time left', function () {
    assert.equal(capToLifeLeft(30_000, undefined, 1000), 30_000, 'no certificate yet: the backoff as it is');
    assert.equal(capToLifeLeft(30_000, 7 * 3600_000, 1000), 30_000, 'hours left: the backoff as it is');
    assert.equal(capToLifeLeft(30_000, 36_000, 1000), 3600);
    assert.equal(capToLifeLeft(30_000, 2000, 1000), 1000, 'not below the minimum');
    assert.equal(capToLifeLeft(30_000, -5000, 1000), 1000, 'expired: the minimum');
  });

  it('retryDelayMs doubles per attempt up to the cap, half of it jittered', function () {
    assert.equal(
      retryDelayMs(0, 1000, 30_000, () => 0),
      500,
    );
    assert.equal(
      retryDelayMs(0, 1000, 30_000, () => 1),
      1000,
    );
    assert.equal(
      retryDelayMs(3, 1000, 30_000, () => 0.5),
      6000,
    );
    assert.equal(
      retryDelayMs(50, 1000, 30_000, () => 1),
      30_000,
    );
    assert.equal(
      retryDelayMs(50, 1000, 30_000, () => 7),
      30_000,
      'a bad random source is clamped',
    );
  });

  it('renewalDelayMs counts a backdated short-lived certificate from when it was asked for', function () {
    const now = Date.parse('2026-12-03T12:00:00Z');
    const minute = 60_000;
    // Issued now for 2 minutes, notBefore backdated 5 minutes: due at 70 % of the 2 minutes, not at once.
    const short = { notBefore: new Date(now - 5 * minute), notAfter: new Date(now + 2 * minute) };
    const near = (actual: number, expected: number) =>
      assert.ok(Math.abs(actual - expected) < 1, `${actual} != ${expected}`);
    near(
      renewalDelayMs(short, now, now, () => 0.5),
      0.7 * 2 * minute,
    );
    near(
      renewalDelayMs(short, now - 1000, now, () => 0.5),
      0.7 * (2 * minute + 1000) - 1000,
    );
    // A 24 h certificate: the 5 minutes barely matter, and it is still renewed at 70 % of its validity.
    const day = { notBefore: new Date(now - 5 * minute), notAfter: new Date(now + 24 * 60 * minute) };
    near(
      renewalDelayMs(day, now, now, () => 0.5),
      0.7 * 24 * 60 * minute,
    );
  });

  describe('identityFromAnswer', function () {
    let keyPem = '';
    let certChain = '';
    let trustBundle = '';

    before(async function () {
      const caPem = await createCa({ trustDomain: 'cluster.local' });
      const ca = await loadCa(caPem);
      const keys = await generateKeyPair();
      keyPem = await privateKeyToPem(keys.privateKey);
      certChain = await issueWorkloadCert({
        ca,
        spiffeId: 'spiffe://cluster.local/ns/app/sa/web',
        publicKey: keys.publicKey,
        validityHours: 1,
      });
      trustBundle = caPem.certPem;
    });

    it('accepts a certificate for our key', function () {
      const identity = identityFromAnswer(
        200,
        JSON.stringify({ certChain, trustBundle }),
        keyPem,
        'cluster.local',
      );
      assert.ok(typeof identity !== 'string', typeof identity === 'string' ? identity : '');
      assert.equal(identity.spiffeId, 'spiffe://cluster.local/ns/app/sa/web');
    });

    it('refuses a certificate for another key or trust domain', async function () {
      const other = await privateKeyToPem((await generateKeyPair()).privateKey);
      const body = JSON.stringify({ certChain, trustBundle });
      assert.match(identityFromAnswer(200, body, other, 'cluster.local') as string, /does not match/);
      assert.match(
        identityFromAnswer(200, body, keyPem, 'example.org') as string,
        /trust domain cluster.local/,
      );
    });

    it('turns refusals and garbage into one-line reasons, never a throw', function () {
      const refusal = JSON.stringify({ error: 'Unauthenticated', message: 'token expired\nmore' });
      assert.equal(
        identityFromAnswer(401, refusal, keyPem, 'cluster.local'),
        'controller answered 401: Unauthenticated: token expired',
      );
      assert.equal(
        identityFromAnswer(502, '<html>', keyPem, 'cluster.local'),
        'controller answered 502 with a body that is not JSON',
      );
      for (const body of ['null', '[]', '{}', '{"certChain":5}', '{"certChain":"x","trustBundle":"y"}']) {
        const result = identityFromAnswer(200, body, keyPem, 'cluster.local');
        assert.equal(typeof result, 'string', body);
        assert.ok(!(result as string).includes('\n'), body);
      }
    });
  });
});
