// One export's POSTs in the export thread, on an injected clock: the deadline comes from the budget and the
// thread's own clock (whatever its origin), retries back off within it, and a failure says why.
import assert from 'node:assert/strict';
import {
  sendWithRetries,
  type PostResult,
  type RetryDeps,
} from '../../../../sidecar/tracing/otlp-export-retries.ts';

describe('OTLP export retries', () => {
  /** A clock that starts at `origin`, moved by the POSTs and the backoff waits; `answers` in order. */
  function deps(origin: number, answers: (PostResult | ((timeoutMs: number) => PostResult))[]) {
    let now = origin;
    const timeouts: number[] = [];
    const d: RetryDeps = {
      post: (_body, timeoutMs) => {
        timeouts.push(timeoutMs);
        const a = answers.shift()!;
        const result = typeof a === 'function' ? a(timeoutMs) : a;
        now += 'timedOut' in result ? timeoutMs : 10;
        return Promise.resolve(result);
      },
      now: () => now,
      closed: () => false,
      backoffBaseMs: 100,
      random: () => 0,
      sleep: (ms) => {
        now += ms;
        return Promise.resolve();
      },
    };
    return { d, timeouts };
  }
  const body = new Uint8Array(1);

  it('derives its deadline from the budget on its own clock, whatever that clock’s origin', async () => {
    // A thread whose clock is far ahead of (or behind) the proxy's: the batch is sent, with the whole budget.
    for (const origin of [0, 1.8e12, -5e6]) {
      const { d, timeouts } = deps(origin, [{ status: 200 }]);
      assert.equal(await sendWithRetries(body, 1000, d), undefined);
      assert.deepEqual(timeouts, [1000]);
    }
  });

  it('retries 429/502/503/504 and network errors, and fails at once on another status', async () => {
    let { d } = deps(0, [{ status: 503 }, { error: 'ECONNRESET' }, { status: 429 }, { status: 204 }]);
    assert.equal(await sendWithRetries(body, 10_000, d), undefined);
    ({ d } = deps(0, [{ status: 503 }, { status: 413 }]));
    assert.deepEqual(await sendWithRetries(body, 10_000, d), {
      reason: 'http_status',
      status: 413,
      attempts: 2,
    });
  });

  it('says what the last attempt met when the budget ends: a status, a network error, or the time', async () => {
    const unavailable = Array.from({ length: 20 }, () => ({ status: 503 }));
    let { d } = deps(0, unavailable);
    // POSTs of 10 ms, then waits of 100, 200, 400 ms (random 0: each at its ceiling): the fourth 503's wait
    // of 800 ms would end past the deadline.
    assert.deepEqual(await sendWithRetries(body, 1000, d), {
      reason: 'http_status',
      status: 503,
      attempts: 4,
    });
    ({ d } = deps(
      0,
      Array.from({ length: 20 }, () => ({ error: 'ECONNREFUSED' })),
    ));
    assert.deepEqual(await sendWithRetries(body, 1000, d), {
      reason: 'network_error',
      error: 'ECONNREFUSED',
      attempts: 4,
    });
    ({ d } = deps(0, [{ error: 'ECONNREFUSED' }, { timedOut: true }]));
    assert.deepEqual(await sendWithRetries(body, 1000, d), {
      reason: 'timed_out',
      attempts: 2,
      error: 'ECONNREFUSED',
    });
  });

  it('starts no retry once the exporter is closing', async () => {
    const { d } = deps(0, [{ status: 502 }, { status: 200 }]);
    assert.deepEqual(await sendWithRetries(body, 10_000, { ...d, closed: () => true }), {
      reason: 'http_status',
      status: 502,
      attempts: 1,
    });
  });
});
