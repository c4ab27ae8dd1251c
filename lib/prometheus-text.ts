// Prometheus text exposition (format 0.0.4) for the controller's /metrics. Label values come from our
// own names (resource types, outcomes), never from requests, so series stay bounded.

/** Config push latency buckets, seconds: the debounce alone is 50 ms, a slow fan-out takes seconds. */
export const PUSH_LATENCY_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

function escapeLabel(value: string): string {
  return value.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

function labelText(labels: Readonly<Record<string, string>> | undefined): string {
  const parts = Object.entries(labels ?? {}).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
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
    const out = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
    let cumulative = 0;
    this.buckets.forEach((le, i) => {
      cumulative += this.#counts[i]!;
      out.push(`${name}_bucket{le="${le}"} ${cumulative}`);
    });
    out.push(
      `${name}_bucket{le="+Inf"} ${this.#count}`,
      `${name}_sum ${this.#sum}`,
      `${name}_count ${this.#count}`,
    );
    return out;
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
    `# HELP ${name} ${help}`,
    `# TYPE ${name} ${type}`,
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
