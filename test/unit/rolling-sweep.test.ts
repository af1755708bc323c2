import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RollingSweep } from '../../src/transports/rolling-sweep.js';

describe('rolling sweep', () => {
  it('visits every member once per period, spread over the ticks', () => {
    const members = new Set(Array.from({ length: 1000 }, (_, i) => i));
    const sweep = new RollingSweep(members, 1000, 0);
    const visits = new Map<number, number>();
    const perTick: number[] = [];
    for (let nowMs = 250; nowMs <= 2000; nowMs += 250) {
      let count = 0;
      sweep.tick(nowMs, (m) => {
        visits.set(m, (visits.get(m) ?? 0) + 1);
        count++;
      });
      perTick.push(count);
    }
    assert.deepEqual(perTick, [250, 250, 250, 250, 250, 250, 250, 250]);
    assert.deepEqual(new Set(visits.values()), new Set([2]), 'each member twice in two periods');
  });

  it('gives a small set one visit every few ticks, and follows additions and deletions', () => {
    const members = new Set(['a', 'b']);
    const sweep = new RollingSweep(members, 1000, 0);
    const seen: string[] = [];
    for (let nowMs = 250; nowMs <= 1000; nowMs += 250) sweep.tick(nowMs, (m) => seen.push(m));
    assert.deepEqual(seen, ['a', 'b']);
    members.delete('a');
    members.add('c');
    for (let nowMs = 1250; nowMs <= 2000; nowMs += 250) sweep.tick(nowMs, (m) => seen.push(m));
    assert.deepEqual(seen, ['a', 'b', 'b', 'c'], 'a round later: b, then c (added at the end)');
  });

  it('visits everyone at each tick when the period is shorter than a tick, and never twice', () => {
    const members = new Set([1, 2, 3]);
    const sweep = new RollingSweep(members, 100, 0);
    const seen: number[] = [];
    sweep.tick(250, (m) => seen.push(m));
    assert.deepEqual(seen, [1, 2, 3]);
    sweep.tick(250, (m) => seen.push(m));
    assert.deepEqual(seen, [1, 2, 3], 'no time passed, nothing due');
  });
});
