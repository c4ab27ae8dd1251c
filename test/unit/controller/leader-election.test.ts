import assert from 'node:assert/strict';
import {
  checkTimings,
  electionIdentity,
  leaseRecord,
  leaseState,
  nextLeaseSpec,
  observeLease,
  type LeaseObservation,
  type LeaseRecord,
} from '../../../controller/leader-election.ts';

const ME = 'controller-a_0011223344';
const OTHER = 'controller-b_5566778899';
const FALLBACK_MS = 15_000;

function record(extra: Partial<LeaseRecord> = {}): LeaseRecord {
  return {
    holderIdentity: OTHER,
    leaseDurationSeconds: 15,
    acquireTime: '2026-03-01T10:00:00.000000Z',
    renewTime: '2026-03-01T10:00:00.000000Z',
    leaseTransitions: 3,
    ...extra,
  };
}

describe('leader election: lease expiry by our own clock', () => {
  it('keeps the first observation time while the record does not change', () => {
    const first = observeLease(undefined, record(), 1000);
    const again = observeLease(first, record(), 9000);
    assert.equal(again.observedAt, 1000);
  });

  it('restarts the clock when the holder renews (any field of the record changes)', () => {
    const first = observeLease(undefined, record(), 1000);
    const renewed = observeLease(first, record({ renewTime: '2026-03-01T10:00:02.000000Z' }), 3000);
    assert.equal(renewed.observedAt, 3000);
    const transitioned = observeLease(renewed, record({ leaseTransitions: 4 }), 5000);
    assert.equal(transitioned.observedAt, 5000);
  });

  it('treats a lease held by another as valid until leaseDurationSeconds after we saw it change', () => {
    const seen = observeLease(undefined, record(), 1000);
    assert.deepEqual(leaseState(seen, ME, 1000, FALLBACK_MS), {
      kind: 'held',
      holder: OTHER,
      expiresInMs: 15_000,
    });
    assert.equal(leaseState(seen, ME, 16_000, FALLBACK_MS).kind, 'held', 'exactly at the end: still held');
    assert.equal(leaseState(seen, ME, 16_001, FALLBACK_MS).kind, 'free', 'renewTime + duration < now');
  });

  it('ignores the renewTime written by the holder (clock skew between replicas does not matter)', () => {
    // A holder whose clock is an hour behind or a day ahead: what counts is when we saw the record change.
    for (const renewTime of ['2020-01-01T00:00:00.000000Z', '2099-01-01T00:00:00.000000Z']) {
      const seen = observeLease(undefined, record({ renewTime }), 50_000);
      assert.equal(leaseState(seen, ME, 60_000, FALLBACK_MS).kind, 'held', renewTime);
      assert.equal(leaseState(seen, ME, 65_001, FALLBACK_MS).kind, 'free', renewTime);
    }
  });

  it('a holder that keeps renewing never expires, however long we watch', () => {
    let seen: LeaseObservation | undefined;
    for (let t = 0; t <= 120_000; t += 2000) {
      seen = observeLease(seen, record({ renewTime: `renewed at ${t}` }), t);
      assert.equal(leaseState(seen, ME, t + 1999, FALLBACK_MS).kind, 'held');
    }
  });

  it("uses the holder's own lease duration, and ours only when the record has none", () => {
    const short = observeLease(undefined, record({ leaseDurationSeconds: 5 }), 0);
    assert.equal(leaseState(short, ME, 5001, FALLBACK_MS).kind, 'free');
    for (const leaseDurationSeconds of [undefined, 0, -3, Number.NaN]) {
      const seen = observeLease(undefined, record({ leaseDurationSeconds }), 0);
      assert.equal(leaseState(seen, ME, 14_000, FALLBACK_MS).kind, 'held', String(leaseDurationSeconds));
      assert.equal(leaseState(seen, ME, 15_001, FALLBACK_MS).kind, 'free', String(leaseDurationSeconds));
    }
  });

  it('a missing lease or an empty holder (released) is free at once; our own is ours', () => {
    assert.equal(leaseState(undefined, ME, 0, FALLBACK_MS).kind, 'free');
    const released = observeLease(undefined, record({ holderIdentity: '' }), 0);
    assert.equal(leaseState(released, ME, 1, FALLBACK_MS).kind, 'free');
    const ours = observeLease(undefined, record({ holderIdentity: ME }), 0);
    assert.equal(leaseState(ours, ME, 1_000_000, FALLBACK_MS).kind, 'ours');
  });
});

describe('leader election: lease records', () => {
  it('reads the times as the API server sends them (text), and tolerates garbage', () => {
    assert.deepEqual(
      leaseRecord({
        spec: { holderIdentity: OTHER, renewTime: '2026-03-01T10:00:00.123456Z', leaseTransitions: 2 },
      }),
      {
        holderIdentity: OTHER,
        leaseDurationSeconds: undefined,
        acquireTime: undefined,
        renewTime: '2026-03-01T10:00:00.123456Z',
        leaseTransitions: 2,
      },
    );
    const garbage = { holderIdentity: 7, leaseTransitions: -1, renewTime: {} } as unknown as Parameters<
      typeof leaseRecord
    >[0];
    assert.deepEqual(leaseRecord({ spec: garbage as never }), {
      holderIdentity: '',
      leaseDurationSeconds: undefined,
      acquireTime: undefined,
      renewTime: undefined,
      leaseTransitions: 0,
    });
    assert.equal(leaseRecord({})?.holderIdentity, '');
    assert.equal(leaseRecord(undefined), undefined);
  });

  it('a new lease starts with 0 transitions, acquired and renewed now', () => {
    const spec = nextLeaseSpec(undefined, ME, 15, Date.parse('2026-03-01T10:00:00Z'));
    assert.equal(spec.holderIdentity, ME);
    assert.equal(spec.leaseDurationSeconds, 15);
    assert.equal(spec.leaseTransitions, 0);
    assert.equal(JSON.stringify(spec.renewTime), '"2026-03-01T10:00:00.000000Z"', 'MicroTime format');
    assert.equal(JSON.stringify(spec.acquireTime), '"2026-03-01T10:00:00.000000Z"');
  });

  it('a takeover (from another holder or a released lease) counts a transition', () => {
    const now = Date.parse('2026-03-01T10:05:00Z');
    const held = { holderIdentity: OTHER, leaseDurationSeconds: 15, leaseTransitions: 3, acquireTime: 'x' };
    const taken = nextLeaseSpec(held, ME, 15, now);
    assert.equal(taken.holderIdentity, ME);
    assert.equal(taken.leaseTransitions, 4);
    assert.equal(JSON.stringify(taken.acquireTime), '"2026-03-01T10:05:00.000000Z"');
    const released = nextLeaseSpec({ ...held, holderIdentity: '', leaseDurationSeconds: 1 }, ME, 15, now);
    assert.equal(released.leaseTransitions, 4);
    assert.equal(released.leaseDurationSeconds, 15);
  });

  it('a renewal keeps acquireTime and the transition count', () => {
    const mine = {
      holderIdentity: ME,
      leaseDurationSeconds: 15,
      leaseTransitions: 4,
      acquireTime: '2026-03-01T10:05:00.000000Z',
      renewTime: '2026-03-01T10:05:00.000000Z',
    };
    const renewed = nextLeaseSpec(mine, ME, 15, Date.parse('2026-03-01T10:05:02Z'));
    assert.equal(renewed.leaseTransitions, 4);
    assert.equal(renewed.acquireTime, '2026-03-01T10:05:00.000000Z');
    assert.equal(JSON.stringify(renewed.renewTime), '"2026-03-01T10:05:02.000000Z"');
  });
});

describe('leader election: configuration', () => {
  it('accepts the defaults and rejects timings that cannot be safe', () => {
    checkTimings(15_000, 10_000, 2_000);
    assert.throws(() => checkTimings(10_000, 10_000, 2_000), /lease duration/);
    assert.throws(() => checkTimings(15_000, 2_000, 2_000), /renew deadline/);
    assert.throws(() => checkTimings(15_000, 10_000, 0), /retry period/);
    assert.throws(() => checkTimings(15_500, 10_000, 2_000), /whole seconds/);
  });

  it('makes identities from the pod name plus a random suffix', () => {
    const a = electionIdentity('sluice-controller-7d9f8-abcde');
    const b = electionIdentity('sluice-controller-7d9f8-abcde');
    assert.match(a, /^sluice-controller-7d9f8-abcde_[0-9a-f]{10}$/);
    assert.notEqual(a, b);
    assert.match(electionIdentity(''), /^sluice-controller_[0-9a-f]{10}$/);
  });
});
