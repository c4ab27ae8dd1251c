import assert from 'node:assert/strict';
import { DueQueue } from '../../../bench/due-queue.ts';

const never = (due: number): void => assert.fail(`gave up ${due}`);

describe('bench DueQueue', () => {
  it('sends at most cap at once, in order, the next when one finishes', () => {
    const q = new DueQueue(2, undefined, () => 0);
    const sent: number[] = [];
    for (const due of [1, 2, 3]) q.push(due);
    q.take((d) => sent.push(d), never);
    assert.deepEqual(sent, [1, 2]);
    q.finished();
    q.take((d) => sent.push(d), never);
    assert.deepEqual(sent, [1, 2, 3]);
  });

  it('gives up the ones waiting longer than giveUpMs after they were due, without sending them', () => {
    let now = 0;
    const q = new DueQueue(1, 100, () => now);
    const sent: number[] = [];
    const gaveUp: number[] = [];
    for (const due of [0, 10, 50, 150]) q.push(due);
    q.take(
      (d) => sent.push(d),
      (d) => gaveUp.push(d),
    );
    now = 160; // 10 and 50 waited too long; 150 still may go
    q.finished();
    q.take(
      (d) => sent.push(d),
      (d) => gaveUp.push(d),
    );
    assert.deepEqual(sent, [0, 150]);
    assert.deepEqual(gaveUp, [10, 50]);
  });
});
