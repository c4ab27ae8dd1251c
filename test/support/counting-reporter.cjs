'use strict';
// Mocha's spec output, plus one line `<suite> <passed> <failed>` appended to $SLUICE_TEST_COUNTS when it
// is set, so .ci/run can sum every suite it ran into its last line. A failed hook counts as a failure.
const { appendFileSync } = require('node:fs');
const { reporters } = require('mocha');

class CountingReporter extends reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const file = process.env.SLUICE_TEST_COUNTS;
    if (!file) return;
    runner.once('end', () => {
      const { passes = 0, failures = 0 } = this.stats;
      const name = process.env.SLUICE_TEST_SUITE || 'mocha';
      appendFileSync(file, `${name} ${passes} ${failures}\n`);
    });
  }
}

module.exports = CountingReporter;
