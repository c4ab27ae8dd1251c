// Reading the results out of the suite's `-test.v` output: one line per finished Go test,
// `--- PASS: TestConformance/MeshBasic (12.34s)`, indented four spaces per level of nesting.

export type Outcome = 'pass' | 'fail' | 'skip';

export interface TestResult {
  /** The conformance test's short name, e.g. MeshBasic. */
  readonly name: string;
  readonly outcome: Outcome;
  readonly seconds: number;
}

const RESULT_LINE = /^\s*--- (PASS|FAIL|SKIP): (\S+) \((\d+(?:\.\d+)?)s\)/;
const ROOT = 'TestConformance';

/**
 * Collects results line by line. Only the conformance tests count (`TestConformance/<name>`), not their
 * subtests nor the root test; the root's own outcome says whether the suite as a whole passed.
 */
export class ResultCollector {
  readonly tests: TestResult[] = [];
  root: Outcome | undefined;

  line(text: string): TestResult | undefined {
    const match = RESULT_LINE.exec(text);
    if (!match) return undefined;
    const outcome = match[1]!.toLowerCase() as Outcome;
    const path = match[2]!.split('/');
    if (path[0] !== ROOT) return undefined;
    if (path.length === 1) {
      this.root = outcome;
      return undefined;
    }
    if (path.length !== 2) return undefined;
    const result = { name: path[1]!, outcome, seconds: Number(match[3]) };
    this.tests.push(result);
    return result;
  }

  count(outcome: Outcome): number {
    return this.tests.filter((t) => t.outcome === outcome).length;
  }
}

/** The lines .ci/run sums (`<suite> / <test> <passed> <failed>`): one per test that ran, skips left out. */
export function countLines(suite: string, tests: readonly TestResult[]): string[] {
  return tests
    .filter((t) => t.outcome !== 'skip')
    .map((t) => `${suite} / ${t.name} ${t.outcome === 'pass' ? 1 : 0} ${t.outcome === 'fail' ? 1 : 0}`);
}

/** `22 passed, 0 failed, 3 skipped in 412 s` */
export function summary(collector: ResultCollector, seconds: number): string {
  const skipped = collector.count('skip');
  return (
    `${collector.count('pass')} passed, ${collector.count('fail')} failed` +
    (skipped > 0 ? `, ${skipped} skipped` : '') +
    ` in ${Math.round(seconds)} s`
  );
}
