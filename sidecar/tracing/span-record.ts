// A span as Sluice keeps it: one plain object with fixed fields, filled in by the request's HttpSpan and
// encoded as it is (otlp-encode.ts). No tracer, context or processor objects: at 1 % sampling a span is made
// about once a second, its code runs cold, and every object and call on its way costs (ADR 0017).
import { randomFillSync } from 'node:crypto';
import type { Attributes, HrTime } from '@opentelemetry/api';

// The values of @opentelemetry/api's SpanKind and SpanStatusCode, as plain numbers: with
// only its types imported, a proxy never loads the package (issue 16; test/unit/layout.test.ts).
export const SPAN_KIND = { INTERNAL: 0, SERVER: 1, CLIENT: 2, PRODUCER: 3, CONSUMER: 4 } as const;
export const SPAN_STATUS = { UNSET: 0, OK: 1, ERROR: 2 } as const;
export type SpanKindValue = (typeof SPAN_KIND)[keyof typeof SPAN_KIND];
export type SpanStatusValue = (typeof SPAN_STATUS)[keyof typeof SPAN_STATUS];

/** The attributes of the workload that made the spans (OTLP Resource); shared by a pipeline's spans. */
export interface SpanResource {
  readonly attributes: Readonly<Record<string, string>>;
}

export interface SpanEvent {
  readonly time: HrTime;
  readonly name: string;
  readonly attributes: Attributes;
}

export class SpanRecord {
  readonly resource: SpanResource;
  readonly traceId: string;
  readonly spanId: string;
  /** Undefined for a root span. */
  readonly parentSpanId: string | undefined;
  /** The parent came from another process (its context arrived in headers). */
  readonly parentIsRemote: boolean;
  readonly traceState: string | undefined;
  readonly name: string;
  readonly kind: SpanKindValue;
  /** Set as the request proceeds; values kept as they come (strings, numbers, booleans). */
  readonly attributes: Attributes;
  readonly startTime: HrTime;
  endTime: HrTime = [0, 0];
  events: SpanEvent[] | undefined = undefined;
  status: { code: SpanStatusValue; message: string | undefined } = {
    code: SPAN_STATUS.UNSET,
    message: undefined,
  };

  constructor(
    resource: SpanResource,
    ids: { traceId: string; spanId: string; parentSpanId: string | undefined; parentIsRemote: boolean },
    traceState: string | undefined,
    name: string,
    kind: SpanKindValue,
    attributes: Attributes,
    startTime: HrTime = hrNow(),
  ) {
    this.resource = resource;
    this.traceId = ids.traceId;
    this.spanId = ids.spanId;
    this.parentSpanId = ids.parentSpanId;
    this.parentIsRemote = ids.parentIsRemote;
    this.traceState = traceState;
    this.name = name;
    this.kind = kind;
    this.attributes = attributes;
    this.startTime = startTime;
  }
}

const ORIGIN_MS = performance.timeOrigin;

/** Wall-clock time as [seconds, nanoseconds], from the monotonic clock (as OpenTelemetry JS does). */
export function hrNow(): HrTime {
  const ms = ORIGIN_MS + performance.now();
  const s = Math.floor(ms / 1000);
  return [s, Math.floor((ms - s * 1000) * 1e6)];
}

// Random IDs, drawn from the system in blocks and turned into hex a block at a time: an ID is then a slice
// of one string (one getrandom and one hex conversion per ~1,000 requests, not a conversion per ID, which
// was the largest share of an unsampled request's tracing work in a CPU profile).
const POOL = Buffer.alloc(24 * 1000);
let hex = '';
let offset = 0;

/** `bytes` random bytes as lowercase hex (16: a trace ID, 8: a span ID). */
export function randomHex(bytes: number): string {
  const n = bytes * 2;
  if (offset + n > hex.length) {
    randomFillSync(POOL);
    hex = POOL.toString('hex');
    offset = 0;
  }
  const id = hex.slice(offset, offset + n);
  offset += n;
  return id;
}
