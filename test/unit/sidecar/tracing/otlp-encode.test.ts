// Sluice's OTLP protobuf encoder against the OpenTelemetry JS serializer (a test-only reference): spans made
// by the SDK are copied into span records, both bodies are decoded with a schema-less wire reader and
// compared field by field.
import assert from 'node:assert/strict';
import { SpanKind, SpanStatusCode, ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { encodeTraceRequest } from '../../../../sidecar/tracing/otlp-encode.ts';
import { SpanRecord, type SpanResource } from '../../../../sidecar/tracing/span-record.ts';

type Field = [number, number, unknown];

/** Decodes protobuf wire format; a length-delimited field that parses as a message is shown as one. */
function decode(buf: Uint8Array): Field[] | undefined {
  const out: Field[] = [];
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (i >= buf.length || shift > 63n) throw new Error('bad varint');
      const b = buf[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
  };
  try {
    while (i < buf.length) {
      const key = Number(varint());
      const field = key >> 3;
      const wire = key & 7;
      if (field === 0) return undefined;
      if (wire === 0) out.push([field, wire, varint().toString()]);
      else if (wire === 1) {
        if (i + 8 > buf.length) return undefined;
        out.push([field, wire, Buffer.from(buf.subarray(i, i + 8)).toString('hex')]);
        i += 8;
      } else if (wire === 5) {
        if (i + 4 > buf.length) return undefined;
        out.push([field, wire, Buffer.from(buf.subarray(i, i + 4)).toString('hex')]);
        i += 4;
      } else if (wire === 2) {
        const n = Number(varint());
        if (i + n > buf.length) return undefined;
        const body = buf.subarray(i, i + n);
        i += n;
        out.push([field, wire, decode(body) ?? Buffer.from(body).toString('hex')]);
      } else return undefined;
    }
  } catch {
    return undefined;
  }
  // Fields in number order; repeated ones keep theirs (stable sort). A zero varint is proto3's default,
  // the same as no field.
  return out.filter((f) => !(f[1] === 0 && f[2] === '0')).sort((a, b) => a[0] - b[0]);
}

function spans(): ReadableSpan[] {
  const ended: ReadableSpan[] = [];
  const collect = {
    onStart: () => undefined,
    onEnd: (span: ReadableSpan) => void ended.push(span),
    forceFlush: () => Promise.resolve(),
    shutdown: () => Promise.resolve(),
  };
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'app-sluice', 'k8s.namespace.name': 'ns' }),
    sampler: new AlwaysOnSampler(),
    spanProcessors: [collect],
  });
  const tracer = provider.getTracer('sluice-sidecar');
  const parent = trace.setSpanContext(ROOT_CONTEXT, {
    traceId: '0af7651916cd43dd8448eb211c80319c',
    spanId: 'b7ad6b7169203331',
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
  });
  const a = tracer.startSpan(
    'GET',
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'http.request.method': 'GET',
        'server.port': 80,
        'sluice.retry.attempt': -3,
        big: 2 ** 40,
        ratio: 0.25,
        ok: true,
        list: ['a', 'b'],
        'url.full': 'é'.repeat(100), // a length over 127 bytes
      },
    },
    parent,
  );
  a.addEvent('retry', { 'sluice.retry.attempt': 1 });
  a.setStatus({ code: SpanStatusCode.ERROR, message: 'no_endpoint' });
  a.end();
  const b = tracer.startSpan('POST', { kind: SpanKind.SERVER });
  b.end();
  return ended;
}

/** The same span as Sluice's record, all spans sharing one resource. */
function records(sdk: readonly ReadableSpan[], traceState?: string): SpanRecord[] {
  const resource: SpanResource = { attributes: sdk[0]!.resource.attributes as Record<string, string> };
  return sdk.map((s) => {
    const sc = s.spanContext();
    const r = new SpanRecord(
      resource,
      {
        traceId: sc.traceId,
        spanId: sc.spanId,
        parentSpanId: s.parentSpanContext?.spanId,
        parentIsRemote: s.parentSpanContext?.isRemote ?? false,
      },
      traceState,
      s.name,
      s.kind,
      s.attributes,
      s.startTime,
    );
    r.endTime = s.endTime;
    r.events = s.events.map((e) => ({ time: e.time, name: e.name, attributes: e.attributes ?? {} }));
    r.status = { code: s.status.code, message: s.status.message };
    return r;
  });
}

describe('OTLP protobuf encoder', () => {
  const made = spans();
  it('encodes what the OpenTelemetry serializer encodes', () => {
    const s = made;
    assert.equal(s.length, 2);
    const ours = decode(encodeTraceRequest(records(s)));
    const reference = decode(ProtobufTraceSerializer.serializeRequest([...s])!);
    assert.ok(ours && reference);
    assert.deepEqual(ours, reference);
  });

  it('writes the ids, kind, status and attribute types at their field numbers', () => {
    const all = made;
    assert.equal(all.length, 2);
    const body = decode(encodeTraceRequest(records([all[0]!], 'v=1')))!;
    // ExportTraceServiceRequest.resource_spans(1) > ResourceSpans.scope_spans(2) > ScopeSpans.spans(2)
    const rs = body[0]![2] as Field[];
    const ss = rs.find((f) => f[0] === 2)![2] as Field[];
    const span = ss.find((f) => f[0] === 2)![2] as Field[];
    const get = (n: number): unknown => span.find((f) => f[0] === n)?.[2];
    assert.equal(get(1), '0af7651916cd43dd8448eb211c80319c');
    assert.equal(get(4), 'b7ad6b7169203331');
    assert.equal(Buffer.from(String(get(3)), 'hex').toString(), 'v=1'); // trace_state
    assert.equal(get(6), '3'); // SPAN_KIND_CLIENT
    const status = get(15) as Field[];
    assert.deepEqual(status.find((f) => f[0] === 3)?.[2], '2'); // STATUS_CODE_ERROR
    const attr = (key: string): Field => {
      const kv = span.filter((f) => f[0] === 9).map((f) => f[2] as Field[]);
      const found = kv.find(
        (f) => Buffer.from(String(f[0]![2]), 'hex').toString() === key || f[0]![2] === key,
      );
      return (found!.find((f) => f[0] === 2)![2] as Field[])[0]!;
    };
    assert.deepEqual(attr('server.port'), [3, 0, '80']);
    assert.deepEqual(attr('sluice.retry.attempt'), [3, 0, (2n ** 64n - 3n).toString()]);
    assert.deepEqual(attr('ok'), [2, 0, '1']);
    assert.equal(attr('ratio')[0], 4);
  });
});
