import assert from 'node:assert/strict';
import {
  classifyHttp1,
  classifyHttp2,
  shouldRetry,
  STALE_RACE_MS,
  whyNotRetried,
  type FailureKind,
} from '../../../sidecar/retry-rules.ts';

describe('retry rules (ADR 0015)', () => {
  const ask = (kind: FailureKind, method: string, more: Partial<Parameters<typeof shouldRetry>[0]> = {}) =>
    shouldRetry({ kind, method, hasRetryPolicy: false, replayable: true, retriesLeft: 1, ...more });

  it('nothing reached the app: any method is sent again', () => {
    for (const kind of ['connect', 'refused', 'stale_connection'] as const)
      for (const method of ['GET', 'POST', 'PATCH', 'DELETE'])
        assert.equal(ask(kind, method), true, kind + method);
  });

  it('a reset after the request may have reached the app: GET, HEAD, OPTIONS, or a route with a retry policy', () => {
    assert.deepEqual(
      ['GET', 'head', 'OPTIONS', 'POST', 'PUT', 'DELETE', 'PATCH'].map((m) => ask('reset', m)),
      [true, true, true, false, false, false, false],
    );
    assert.equal(ask('reset', 'POST', { hasRetryPolicy: true }), true);
  });

  it('never past the budget, never a body that cannot be replayed, never other failures', () => {
    assert.equal(ask('connect', 'GET', { retriesLeft: 0 }), false);
    assert.equal(ask('connect', 'POST', { replayable: false }), false);
    assert.equal(ask('reset', 'GET', { replayable: false }), false);
    assert.equal(ask('other', 'GET', { hasRetryPolicy: true }), false);
  });

  it("why a request is not sent again, for the caller's 502", () => {
    const why = (
      kind: FailureKind,
      method: string,
      more: Partial<Parameters<typeof whyNotRetried>[0]> = {},
    ) => whyNotRetried({ kind, method, hasRetryPolicy: false, replayable: true, retriesLeft: 1, ...more });
    assert.equal(why('reset', 'GET'), undefined, 'a GET is retried');
    assert.equal(why('reset', 'post'), 'POST is not idempotent');
    assert.equal(why('reset', 'POST', { grpc: true }), 'a gRPC call (POST) is not idempotent');
    assert.equal(why('reset', 'POST', { retriesLeft: 0 }), 'POST is not idempotent', 'the method first');
    assert.equal(why('reset', 'GET', { retriesLeft: 0 }), 'its retry was already used');
    assert.equal(
      why('reset', 'POST', { hasRetryPolicy: true, retriesLeft: 0 }),
      'its retry was already used',
    );
    assert.equal(
      why('reset', 'GET', { replayable: false }),
      'its body was streamed and cannot be sent again',
    );
    assert.match(why('other', 'GET') ?? '', /not one a request is sent again after/);
  });

  it('HTTP/1.1: the keep-alive race is a reset of a reused connection soon after writing, its body unread', () => {
    const base = {
      code: 'ECONNRESET',
      connectFailed: false,
      reused: true,
      sinceWrittenMs: 3,
      bodyRead: false,
    };
    assert.equal(classifyHttp1(base), 'stale_connection');
    assert.equal(classifyHttp1({ ...base, code: 'EPIPE' }), 'stale_connection');
    assert.equal(classifyHttp1({ ...base, reused: false }), 'reset', 'a fresh connection');
    assert.equal(classifyHttp1({ ...base, bodyRead: true }), 'reset', 'part of the body went out');
    assert.equal(
      classifyHttp1({ ...base, sinceWrittenMs: STALE_RACE_MS + 1 }),
      'reset',
      'too late for a race',
    );
    assert.equal(classifyHttp1({ ...base, connectFailed: true, code: 'ECONNREFUSED' }), 'connect');
    assert.equal(classifyHttp1({ ...base, code: 'ERR_UPSTREAM_HEADERS_TIMEOUT' }), 'other');
    assert.equal(classifyHttp1({ ...base, code: 'ERR_UPSTREAM_PARSE' }), 'other', 'a misframed response');
  });

  it('HTTP/2: not started is a connect failure, REFUSED_STREAM and GOAWAY are refusals', () => {
    assert.equal(classifyHttp2({ code: 'ECONNREFUSED', rstCode: undefined, started: false }), 'connect');
    assert.equal(classifyHttp2({ code: 'ERR_HTTP2_STREAM_ERROR', rstCode: 7, started: true }), 'refused');
    assert.equal(
      classifyHttp2({ code: 'ERR_HTTP2_GOAWAY_SESSION', rstCode: undefined, started: true }),
      'refused',
    );
    assert.equal(classifyHttp2({ code: 'ERR_HTTP2_STREAM_ERROR', rstCode: 2, started: true }), 'reset');
  });
});
