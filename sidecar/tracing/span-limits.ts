// What a span keeps of the values a caller controls (path, Host, user agent, method, tracestate): bounded,
// so that the spans a proxy holds while its collector is slow cannot take its memory. A request's header
// section may be 60 KiB, and before these bounds 2,048 held spans of such requests took ~335 MB.

/** The longest string attribute value kept (OpenTelemetry's attribute value length limit). */
export const MAX_ATTRIBUTE_LENGTH = 1024;

/** The longest tracestate recorded on a span (W3C Trace Context asks vendors to pass on at least 512). */
export const MAX_RECORDED_TRACE_STATE = 512;

/**
 * `value`, a part of `source` or all of it, cut to MAX_ATTRIBUTE_LENGTH. A copy whenever `source` is longer
 * than that: V8 makes a slice point into its source string, which the span would keep alive until exported.
 */
export function bounded(value: string, source: string = value): string {
  if (source.length <= MAX_ATTRIBUTE_LENGTH) return value;
  let end = Math.min(value.length, MAX_ATTRIBUTE_LENGTH);
  const last = value.charCodeAt(end - 1);
  if (end < value.length && last >= 0xd800 && last <= 0xdbff) end--; // not half a surrogate pair
  return Buffer.from(value.slice(0, end), 'utf16le').toString('utf16le');
}

/** The caller's tracestate as a span records it: dropped when longer than MAX_RECORDED_TRACE_STATE. */
export function recordedTraceState(traceState: string | undefined): string | undefined {
  return traceState !== undefined && traceState.length <= MAX_RECORDED_TRACE_STATE ? traceState : undefined;
}
