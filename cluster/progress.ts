/** Step-by-step progress on stderr: one line per step with its duration, details indented under it. */
export class Progress {
  readonly #out: NodeJS.WritableStream;

  constructor(out: NodeJS.WritableStream = process.stderr) {
    this.#out = out;
  }

  async step<T>(title: string, run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    this.#out.write(`• ${title}\n`);
    try {
      const result = await run();
      this.#out.write(`  ✓ ${title} (${seconds(started)})\n`);
      return result;
    } catch (error) {
      this.#out.write(`  ✗ ${title} (${seconds(started)})\n`);
      throw error;
    }
  }

  detail(line: string): void {
    this.#out.write(`    ${line}\n`);
  }
}

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}
