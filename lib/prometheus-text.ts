// Prometheus text exposition (format 0.0.4), for the controller's, the injector's and the proxy's /metrics.
// Callers keep label values to their own names (resource types, outcomes, route names, status codes), never
// request data, so series stay bounded.

export function escapeLabel(value: string): string {
  return value.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** `a="x",b="y"`, without braces (empty for no labels). */
export function labelPairs(names: readonly string[], values: readonly string[]): string {
  return names.map((n, i) => `${n}="${escapeLabel(values[i]!)}"`).join(',');
}

function labelText(labels: Readonly<Record<string, string>> | undefined): string {
  const pairs = labelPairs(Object.keys(labels ?? {}), Object.values(labels ?? {}));
  return pairs === '' ? '' : `{${pairs}}`;
}

/** The HELP and TYPE lines of a family. */
export function familyHeader(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
}

/** One sample line; `pairs` as from labelPairs(). */
export function sampleLine(name: string, pairs: string, value: number): string {
  return `${name}${pairs === '' ? '' : `{${pairs}}`} ${numberText(value)}`;
}

/** The lines of one histogram series: per-bucket (non-cumulative) `counts`, summed here. */
export function histogramLines(
  name: string,
  pairs: string,
  buckets: readonly number[],
  counts: readonly number[],
  sum: number,
  count: number,
): string[] {
  const prefix = pairs === '' ? '' : `${pairs},`;
  const out: string[] = [];
  let cumulative = 0;
  buckets.forEach((le, i) => {
    cumulative += counts[i]!;
    out.push(`${name}_bucket{${prefix}le="${le}"} ${cumulative}`);
  });
  out.push(
    `${name}_bucket{${prefix}le="+Inf"} ${count}`,
    sampleLine(`${name}_sum`, pairs, sum),
    sampleLine(`${name}_count`, pairs, count),
  );
  return out;
}

function numberText(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

export class Histogram {
  readonly buckets: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(buckets: readonly number[]) {
    this.buckets = [...buckets].sort((a, b) => a - b);
    this.#counts = this.buckets.map(() => 0);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const i = this.buckets.findIndex((le) => value <= le);
    if (i !== -1) this.#counts[i]!++;
    this.#sum += value;
    this.#count++;
  }

  get count(): number {
    return this.#count;
  }

  render(name: string, help: string): string[] {
    return [
      ...familyHeader(name, 'histogram', help),
      ...histogramLines(name, '', this.buckets, this.#counts, this.#sum, this.#count),
    ];
  }
}

export interface Sample {
  readonly labels?: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A counter or gauge family: HELP, TYPE and one line per sample. */
export function renderFamily(
  name: string,
  type: 'counter' | 'gauge',
  help: string,
  samples: readonly Sample[],
): string[] {
  return [
    ...familyHeader(name, type, help),
    ...samples.map((s) => `${name}${labelText(s.labels)} ${numberText(s.value)}`),
  ];
}

/** The process's own memory and CPU, under the names Prometheus client libraries use. */
export function processFamilies(): string[] {
  const memory = process.memoryUsage();
  const cpu = process.cpuUsage();
  return [
    ...renderFamily('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes', [
      { value: memory.rss },
    ]),
    ...renderFamily('process_cpu_seconds_total', 'counter', 'User and system CPU time in seconds', [
      { value: (cpu.user + cpu.system) / 1e6 },
    ]),
    ...renderFamily('nodejs_heap_size_used_bytes', 'gauge', 'V8 heap in use', [{ value: memory.heapUsed }]),
    ...renderFamily('nodejs_heap_size_total_bytes', 'gauge', 'V8 heap committed', [
      { value: memory.heapTotal },
    ]),
    ...renderFamily('nodejs_external_memory_bytes', 'gauge', 'Memory of C++ objects bound to JS objects', [
      { value: memory.external },
    ]),
  ];
}
