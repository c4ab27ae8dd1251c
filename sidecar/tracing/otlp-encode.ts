// OTLP/HTTP protobuf body (opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest) for ended span
// records, written straight from the field numbers of the OTLP trace, common and resource protos. Small and
// flat on purpose: at one span a second the generic transformer and serializer run cold and cost more than
// the span itself (ADR 0018, ADR 0017).
import type { Attributes, HrTime } from '@opentelemetry/api';
import { errorText } from '../../lib/error-text.ts';
import type { ExportFailure } from './span-pipeline.ts';
import type { SpanRecord, SpanResource } from './span-record.ts';

// Wire types.
const VARINT = 0;
const FIXED64 = 1;
const LEN = 2;
const FIXED32 = 5;
const tag = (field: number, wire: number): number => (field << 3) | wire;

/**
 * An append-only protobuf writer; a nested message is written in place and its length inserted after. Its
 * buffer is never a slice of Node's shared pool, so the exporter can transfer it to its thread.
 */
class Writer {
  buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafeSlow(size);
  }
  #room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  /** A varint below 2^53 (lengths, enums, non-negative integers). */
  varint(v: number): void {
    this.#room(10);
    while (v > 0x7f) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }
  key(field: number, wire: number): void {
    this.varint(tag(field, wire));
  }
  int64(field: number, v: number): void {
    this.key(field, VARINT);
    if (v >= 0 && v <= Number.MAX_SAFE_INTEGER) return this.varint(v);
    let u = BigInt.asUintN(64, BigInt(v)); // two's complement: ten bytes for a negative value
    this.#room(10);
    while (u > 0x7fn) {
      this.buf[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }
  bool(field: number, v: boolean): void {
    this.key(field, VARINT);
    this.varint(v ? 1 : 0);
  }
  double(field: number, v: number): void {
    this.key(field, FIXED64);
    this.#room(8);
    this.pos = this.buf.writeDoubleLE(v, this.pos);
  }
  fixed32(field: number, v: number): void {
    this.key(field, FIXED32);
    this.#room(4);
    this.pos = this.buf.writeUInt32LE(v >>> 0, this.pos);
  }
  /** Nanoseconds since the epoch from an HrTime ([seconds, nanoseconds]), as fixed64. */
  time(field: number, t: HrTime): void {
    this.key(field, FIXED64);
    this.#room(8);
    this.pos = this.buf.writeBigUInt64LE(BigInt(t[0]) * 1_000_000_000n + BigInt(t[1]), this.pos);
  }
  string(field: number, s: string): void {
    this.key(field, LEN);
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.#room(n);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }
  bytes(field: number, b: Uint8Array): void {
    this.key(field, LEN);
    this.varint(b.length);
    this.#room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  /** Hex ids (trace 16 bytes, span 8 bytes). */
  hex(field: number, s: string): void {
    this.key(field, LEN);
    const n = s.length >> 1;
    this.varint(n);
    this.#room(n);
    this.pos += this.buf.write(s, this.pos, 'hex');
  }
  /** Starts a nested message; returns where its body begins, for end(). */
  begin(field: number): number {
    this.key(field, LEN);
    return this.pos;
  }
  end(start: number): void {
    const len = this.pos - start;
    let n = 1;
    for (let v = len; v > 0x7f; v = Math.floor(v / 0x80)) n++;
    this.#room(n);
    this.buf.copyWithin(start + n, start, this.pos);
    const body = this.pos;
    this.pos = start;
    this.varint(len);
    this.pos = body + n;
  }
}

// AnyValue: 1 string, 2 bool, 3 int64, 4 double, 5 ArrayValue (1 values), 6 KeyValueList (1 values), 7 bytes.
function anyValue(w: Writer, field: number, v: unknown): void {
  const at = w.begin(field);
  if (typeof v === 'string') w.string(1, v);
  else if (typeof v === 'boolean') w.bool(2, v);
  else if (typeof v === 'number') {
    if (Number.isInteger(v)) w.int64(3, v);
    else w.double(4, v);
  } else if (v instanceof Uint8Array) w.bytes(7, v);
  else if (Array.isArray(v)) {
    const arr = w.begin(5);
    for (const item of v) {
      if (item === null || item === undefined) {
        w.end(w.begin(1)); // an empty AnyValue
      } else anyValue(w, 1, item);
    }
    w.end(arr);
  } else if (typeof v === 'object' && v !== null) {
    const list = w.begin(6);
    attributes(w, 1, v as Attributes);
    w.end(list);
  }
  w.end(at);
}

// KeyValue: 1 key, 2 value.
function attributes(w: Writer, field: number, attrs: Attributes): void {
  for (const key in attrs) {
    const v = attrs[key];
    if (v === undefined) continue;
    const at = w.begin(field);
    w.string(1, key);
    anyValue(w, 2, v);
    w.end(at);
  }
}

// Span: 1 trace_id, 2 span_id, 3 trace_state, 4 parent_span_id, 5 name, 6 kind, 7 start, 8 end,
// 9 attributes, 11 events, 15 status, 16 flags (Sluice's spans have no links and drop nothing).
function span(w: Writer, s: SpanRecord): void {
  const at = w.begin(2);
  w.hex(1, s.traceId);
  w.hex(2, s.spanId);
  if (s.traceState) w.string(3, s.traceState);
  if (s.parentSpanId) w.hex(4, s.parentSpanId);
  w.string(5, s.name);
  w.key(6, VARINT);
  w.varint(s.kind + 1); // the API's INTERNAL is 0, OTLP's SPAN_KIND_INTERNAL is 1
  w.time(7, s.startTime);
  w.time(8, s.endTime);
  attributes(w, 9, s.attributes);
  // Event: 1 time, 2 name, 3 attributes.
  if (s.events) {
    for (const e of s.events) {
      const ev = w.begin(11);
      w.time(1, e.time);
      w.string(2, e.name);
      attributes(w, 3, e.attributes);
      w.end(ev);
    }
  }
  // Status: 2 message, 3 code (1 is reserved).
  const st = w.begin(15);
  if (s.status.message) w.string(2, s.status.message);
  if (s.status.code) {
    w.key(3, VARINT);
    w.varint(s.status.code);
  }
  w.end(st);
  // SpanFlags: the W3C trace flags (sampled) in the low byte; bit 8: the parent's remoteness is known,
  // bit 9: the parent is remote.
  w.fixed32(16, s.parentSpanId && s.parentIsRemote ? 0x301 : 0x101);
  w.end(at);
}

const SCOPE_NAME = 'sluice-sidecar';

/**
 * The body of one export: spans grouped by resource, in their order, under Sluice's instrumentation scope.
 * A view from offset 0 of an ArrayBuffer of its own (transferable).
 */
export function encodeTraceRequest(spans: readonly SpanRecord[]): Buffer {
  const w = new Writer(512 + spans.length * 768);
  // ExportTraceServiceRequest: 1 resource_spans; ResourceSpans: 1 resource, 2 scope_spans;
  // Resource: 1 attributes; ScopeSpans: 1 scope, 2 spans; InstrumentationScope: 1 name.
  const byResource = new Map<SpanResource, SpanRecord[]>();
  for (const s of spans) {
    const list = byResource.get(s.resource);
    if (list) list.push(s);
    else byResource.set(s.resource, [s]);
  }
  for (const [resource, list] of byResource) {
    const rs = w.begin(1);
    const r = w.begin(1);
    attributes(w, 1, resource.attributes);
    w.end(r);
    const ss = w.begin(2);
    const sc = w.begin(1);
    w.string(1, SCOPE_NAME);
    w.end(sc);
    for (const s of list) span(w, s);
    w.end(ss);
    w.end(rs);
  }
  return w.buf.subarray(0, w.pos);
}

/** An exporter's batch as its request body, or why it could not be encoded (the batch is then dropped). */
export function encodeBatch(spans: readonly SpanRecord[]): Buffer | ExportFailure {
  try {
    return encodeTraceRequest(spans);
  } catch (error) {
    return { reason: 'encode_failed', error: errorText(error) };
  }
}
