// A trace as Jaeger's query API returns it (GET /api/traces/<id>), printed as an indented tree: one line per
// span with its service, kind, what it did and its timing relative to the trace's start. Pure.

export interface JaegerSpan {
  readonly traceID: string;
  readonly spanID: string;
  readonly operationName: string;
  readonly references?: readonly { readonly refType: string; readonly spanID: string }[];
  /** Microseconds since the epoch, and microseconds. */
  readonly startTime: number;
  readonly duration: number;
  readonly tags?: readonly { readonly key: string; readonly value: unknown }[];
  readonly processID: string;
}

export interface JaegerTrace {
  readonly traceID: string;
  readonly spans: readonly JaegerSpan[];
  readonly processes: Readonly<Record<string, { readonly serviceName: string }>>;
}

export function tag(span: JaegerSpan, key: string): unknown {
  return span.tags?.find((t) => t.key === key)?.value;
}

/** A tag's value as text, '' when absent. */
function text(span: JaegerSpan, key: string): string {
  const value = tag(span, key);
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
    ? String(value)
    : '';
}

export function serviceOf(trace: JaegerTrace, span: JaegerSpan): string {
  return trace.processes[span.processID]?.serviceName ?? '?';
}

function parentOf(span: JaegerSpan): string | undefined {
  return span.references?.find((r) => r.refType === 'CHILD_OF')?.spanID;
}

const ms = (micros: number): string => `${(micros / 1000).toFixed(1)} ms`;

/** What a span did, in a few words: the request for a SERVER span, the backend for a CLIENT span. */
function describe(span: JaegerSpan): string {
  const kind = text(span, 'span.kind').toUpperCase();
  const parts = [kind || 'SPAN', span.operationName];
  const backend = text(span, 'sluice.backend.service') || text(span, 'server.address');
  if (kind === 'CLIENT' && backend) parts.push(`→ ${backend}`);
  if (kind !== 'CLIENT' && text(span, 'url.path')) parts.push(text(span, 'url.path'));
  if (text(span, 'sluice.route.name')) parts.push(`(route ${text(span, 'sluice.route.name')})`);
  if (text(span, 'http.response.status_code')) parts.push(text(span, 'http.response.status_code'));
  if (tag(span, 'error') === true) parts.push(`ERROR ${text(span, 'error.type')}`.trim());
  return parts.join(' ');
}

/**
 * The tree, roots first (spans whose parent is not in the trace), children by start time: service, what
 * the span did, when it started after the trace's first span and how long it took.
 */
export function formatTraceTree(trace: JaegerTrace): string[] {
  const spans = [...trace.spans].sort((a, b) => a.startTime - b.startTime);
  if (spans.length === 0) return [`trace ${trace.traceID}: no spans`];
  const ids = new Set(spans.map((s) => s.spanID));
  const children = new Map<string | undefined, JaegerSpan[]>();
  for (const s of spans) {
    const parent = parentOf(s);
    const key = parent !== undefined && ids.has(parent) ? parent : undefined;
    children.set(key, [...(children.get(key) ?? []), s]);
  }
  const t0 = spans[0]!.startTime;
  const end = Math.max(...spans.map((s) => s.startTime + s.duration));
  const width = Math.max(...spans.map((s) => serviceOf(trace, s).length));
  const lines = [`trace ${trace.traceID}: ${spans.length} spans, ${ms(end - t0)}`];
  const walk = (parent: string | undefined, depth: number): void => {
    for (const s of children.get(parent) ?? []) {
      const what = `${'  '.repeat(depth)}${serviceOf(trace, s).padEnd(width)}  ${describe(s)}`;
      lines.push(`${what}   at +${ms(s.startTime - t0)}, took ${ms(s.duration)}`);
      walk(s.spanID, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines;
}

/**
 * Whether the trace is the chain a request through a gateway and two sidecars makes: gateway SERVER →
 * gateway CLIENT → first sidecar SERVER → its CLIENT → second sidecar SERVER (the app between the first
 * sidecar's two spans passes the context on). The problem, or undefined when it is.
 */
export function chainProblem(
  trace: JaegerTrace,
  chain: readonly { service: string; kind: 'server' | 'client' }[],
): string | undefined {
  let parent: string | undefined;
  for (const [i, step] of chain.entries()) {
    const found = trace.spans.find(
      (s) =>
        serviceOf(trace, s) === step.service &&
        tag(s, 'span.kind') === step.kind &&
        (i === 0 || parentOf(s) === parent),
    );
    if (!found) {
      const have = trace.spans.map((s) => `${serviceOf(trace, s)}/${text(s, 'span.kind')}`);
      return `no ${step.kind} span of ${step.service}${i === 0 ? '' : ` under the ${chain[i - 1]!.service} ${chain[i - 1]!.kind} span`} (spans: ${have.join(', ')})`;
    }
    parent = found.spanID;
  }
  return undefined;
}

/** The spans one storefront request makes, in order (the front app passes traceparent on). */
export const STOREFRONT_CHAIN = [
  { service: 'storefront-sluice', kind: 'server' },
  { service: 'storefront-sluice', kind: 'client' },
  { service: 'front', kind: 'server' },
  { service: 'front', kind: 'client' },
  { service: 'reviews', kind: 'server' },
] as const;
