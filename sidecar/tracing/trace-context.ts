// Trace context on the wire: W3C Trace Context (traceparent/tracestate) and Zipkin's B3, single header and
// multi header. Pure; read on every request, so no allocation beyond the parsed result.
import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderMap } from '../../mesh-model/header-edits.ts';

export type ContextFormat = 'w3c' | 'b3' | 'b3multi';

/** A context received from the caller. `sampled` undefined: the caller left the decision to us (B3 only). */
export interface RemoteContext {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean | undefined;
  readonly traceState: string | undefined;
  readonly format: ContextFormat;
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const ZERO32 = '0'.repeat(32);
const ZERO16 = '0'.repeat(16);

function one(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
}

/** `version-traceid-parentid-flags`; version ff and all-zero IDs are invalid (W3C Trace Context §3.2). */
export function parseTraceparent(value: string): Omit<RemoteContext, 'traceState' | 'format'> | undefined {
  const v = value.trim().toLowerCase();
  if (v.length < 55 || v[2] !== '-' || v[35] !== '-' || v[52] !== '-') return undefined;
  const version = v.slice(0, 2);
  if (!/^[0-9a-f]{2}$/.test(version) || version === 'ff') return undefined;
  // Version 00 is exactly 55 characters; later versions may append fields after another '-'.
  if (version === '00' ? v.length !== 55 : v.length > 55 && v[55] !== '-') return undefined;
  const traceId = v.slice(3, 35);
  const spanId = v.slice(36, 52);
  const flags = v.slice(53, 55);
  if (!HEX32.test(traceId) || !HEX16.test(spanId) || !/^[0-9a-f]{2}$/.test(flags)) return undefined;
  if (traceId === ZERO32 || spanId === ZERO16) return undefined;
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

/** B3 trace IDs may be 64-bit; they are left-padded to 128 bits as Zipkin does. */
function b3TraceId(value: string): string | undefined {
  const v = value.toLowerCase();
  if (HEX16.test(v)) return v === ZERO16 ? undefined : ZERO16 + v;
  return HEX32.test(v) && v !== ZERO32 ? v : undefined;
}

function b3Sampled(flag: string | undefined): boolean | undefined {
  if (flag === undefined) return undefined;
  if (flag === '1' || flag === 'd' || flag === 'true') return true;
  if (flag === '0' || flag === 'false') return false;
  return undefined;
}

/** `b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]]`; a lone `0` (deny) carries no IDs. */
export function parseB3Single(value: string): RemoteContext | 'deny' | undefined {
  const v = value.trim().toLowerCase();
  if (v === '0') return 'deny';
  const [trace, span, flag] = v.split('-');
  const traceId = trace === undefined ? undefined : b3TraceId(trace);
  if (traceId === undefined || span === undefined || !HEX16.test(span) || span === ZERO16) return undefined;
  return { traceId, spanId: span, sampled: b3Sampled(flag), traceState: undefined, format: 'b3' };
}

function parseB3Multi(headers: IncomingHttpHeaders): RemoteContext | 'deny' | undefined {
  const trace = one(headers['x-b3-traceid']);
  const span = one(headers['x-b3-spanid']);
  const debug = one(headers['x-b3-flags']) === '1';
  const sampled = debug ? true : b3Sampled(one(headers['x-b3-sampled'])?.toLowerCase());
  if (trace === undefined || span === undefined) return sampled === false ? 'deny' : undefined;
  const traceId = b3TraceId(trace);
  const spanId = span.toLowerCase();
  if (traceId === undefined || !HEX16.test(spanId) || spanId === ZERO16) return undefined;
  return { traceId, spanId, sampled, traceState: undefined, format: 'b3multi' };
}

/**
 * The caller's context: traceparent first (W3C is the default), then B3 single, then B3 multi. 'deny': the
 * caller sent a B3 "do not sample" without IDs. Malformed headers count as absent.
 */
export function extractContext(headers: IncomingHttpHeaders): RemoteContext | 'deny' | undefined {
  const tp = one(headers.traceparent);
  if (tp !== undefined) {
    const parsed = parseTraceparent(tp);
    if (parsed) {
      const ts = headers.tracestate;
      const traceState = Array.isArray(ts) ? ts.join(',') : ts;
      return { ...parsed, traceState: traceState || undefined, format: 'w3c' };
    }
  }
  const b3 = one(headers.b3);
  if (b3 !== undefined) {
    const parsed = parseB3Single(b3);
    if (parsed) return parsed;
  }
  if (headers['x-b3-traceid'] !== undefined || headers['x-b3-sampled'] !== undefined)
    return parseB3Multi(headers);
  return undefined;
}

export interface OutgoingContext {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean;
  readonly traceState: string | undefined;
  /** B3 parent span ID (the multi-header form carries it). */
  readonly parentSpanId?: string | undefined;
}

/**
 * Writes the context into forwarded request headers: traceparent (and tracestate) always, B3 in the forms
 * listed. Any B3 the caller sent is replaced, so the next hop never sees two disagreeing contexts.
 */
export function injectContext(
  headers: HeaderMap,
  ctx: OutgoingContext,
  b3: ReadonlySet<ContextFormat>,
): void {
  const flag = ctx.sampled ? '1' : '0';
  headers.traceparent = `00-${ctx.traceId}-${ctx.spanId}-0${flag}`;
  if (ctx.traceState) headers.tracestate = ctx.traceState;
  else delete headers.tracestate;
  if (b3.has('b3')) headers.b3 = `${ctx.traceId}-${ctx.spanId}-${flag}`;
  else delete headers.b3;
  if (b3.has('b3multi')) {
    headers['x-b3-traceid'] = ctx.traceId;
    headers['x-b3-spanid'] = ctx.spanId;
    headers['x-b3-sampled'] = flag;
    if (ctx.parentSpanId) headers['x-b3-parentspanid'] = ctx.parentSpanId;
    else delete headers['x-b3-parentspanid'];
  } else {
    for (const h of ['x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-parentspanid']) delete headers[h];
  }
  delete headers['x-b3-flags'];
}
