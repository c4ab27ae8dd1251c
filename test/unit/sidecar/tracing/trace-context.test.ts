// Propagation: W3C and both B3 forms in, W3C plus the configured or received B3 forms out.
import assert from 'node:assert/strict';
import {
  extractContext,
  injectContext,
  parseTraceparent,
  type RemoteContext,
} from '../../../../sidecar/tracing/trace-context.ts';
import type { HeaderMap } from '../../../../mesh-model/header-edits.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

describe('trace context propagation', () => {
  it('reads a W3C traceparent with its tracestate', () => {
    const ctx = extractContext({ traceparent: `00-${TRACE}-${SPAN}-01`, tracestate: 'vendor=x' });
    assert.deepEqual(ctx, {
      traceId: TRACE,
      spanId: SPAN,
      sampled: true,
      traceState: 'vendor=x',
      format: 'w3c',
    });
    assert.equal((extractContext({ traceparent: `00-${TRACE}-${SPAN}-00` }) as RemoteContext).sampled, false);
  });

  it('refuses malformed and all-zero traceparents, and version ff', () => {
    for (const bad of [
      `00-${'0'.repeat(32)}-${SPAN}-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`,
      `ff-${TRACE}-${SPAN}-01`,
      `00-${TRACE}-${SPAN}-01-extra`,
      `00-${TRACE.slice(1)}-${SPAN}-01`,
      'garbage',
    ])
      assert.equal(parseTraceparent(bad), undefined, bad);
    // A later version may carry more fields.
    assert.equal(parseTraceparent(`01-${TRACE}-${SPAN}-01-more`)?.traceId, TRACE);
  });

  it('reads B3 single, with 64-bit trace IDs padded and the deny form', () => {
    assert.deepEqual(extractContext({ b3: `${TRACE}-${SPAN}-1` }), {
      traceId: TRACE,
      spanId: SPAN,
      sampled: true,
      traceState: undefined,
      format: 'b3',
    });
    const short = extractContext({ b3: `a3ce929d0e0e4736-${SPAN}` }) as RemoteContext;
    assert.equal(short.traceId, `0000000000000000a3ce929d0e0e4736`);
    assert.equal(short.sampled, undefined);
    assert.equal((extractContext({ b3: `${TRACE}-${SPAN}-d` }) as RemoteContext).sampled, true);
    assert.equal(extractContext({ b3: '0' }), 'deny');
  });

  it('reads B3 multi, debug flag included', () => {
    const ctx = extractContext({ 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '0' });
    assert.deepEqual(ctx, {
      traceId: TRACE,
      spanId: SPAN,
      sampled: false,
      traceState: undefined,
      format: 'b3multi',
    });
    const debug = extractContext({ 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-flags': '1' });
    assert.equal((debug as RemoteContext).sampled, true);
    assert.equal(extractContext({ 'x-b3-sampled': '0' }), 'deny');
  });

  it('prefers traceparent over B3, and a bad traceparent falls back to B3', () => {
    const both = { traceparent: `00-${TRACE}-${SPAN}-01`, b3: `${'1'.repeat(32)}-${SPAN}-1` };
    assert.equal((extractContext(both) as RemoteContext).format, 'w3c');
    const bad = { traceparent: 'nonsense', b3: `${TRACE}-${SPAN}-1` };
    assert.equal((extractContext(bad) as RemoteContext).format, 'b3');
    assert.equal(extractContext({}), undefined);
  });

  it('writes traceparent always and the B3 forms asked for, replacing stale ones', () => {
    const headers: HeaderMap = { b3: 'stale', 'x-b3-flags': '1', 'x-b3-traceid': 'stale' };
    const out = {
      traceId: TRACE,
      spanId: SPAN,
      sampled: true,
      traceState: 'a=b',
      parentSpanId: 'b7ad6b7169203331',
    };
    injectContext(headers, out, new Set(['b3multi']));
    assert.deepEqual(headers, {
      traceparent: `00-${TRACE}-${SPAN}-01`,
      tracestate: 'a=b',
      'x-b3-traceid': TRACE,
      'x-b3-spanid': SPAN,
      'x-b3-sampled': '1',
      'x-b3-parentspanid': 'b7ad6b7169203331',
    });
    const single: HeaderMap = { 'x-b3-traceid': 'stale', tracestate: 'old=1' };
    injectContext(single, { ...out, traceState: undefined }, new Set(['b3']));
    assert.deepEqual(single, { traceparent: `00-${TRACE}-${SPAN}-01`, b3: `${TRACE}-${SPAN}-1` });
  });
});
