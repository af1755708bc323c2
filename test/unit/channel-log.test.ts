import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Message } from '../../src/hub/message.js';
import { ChannelLog } from '../../src/store/channel-log.js';

function fill(log: ChannelLog, count: number, publishedAtMs = 0): void {
  for (let i = 0; i < count; i++) {
    const offset = log.headOffset + 1;
    log.push(new Message({ channel: log.channel, offset, epoch: log.epoch, dataJson: String(offset), publishedAtMs: publishedAtMs + offset, idempotencyKey: `k${offset}` }));
  }
}

describe('channel log', () => {
  it('reads after and before any offset, bounded by limit', () => {
    const log = new ChannelLog('c', 'E');
    fill(log, 10);
    assert.deepEqual(log.after(0, 3).map((m) => m.offset), [1, 2, 3]);
    assert.deepEqual(log.after(8, 100).map((m) => m.offset), [9, 10]);
    assert.deepEqual(log.after(10, 100), []);
    assert.deepEqual(log.before(4, 2).map((m) => m.offset), [3, 2]);
    assert.deepEqual(log.before(100, 2).map((m) => m.offset), [10, 9]);
  });

  it('trims by size and age, keeps offsets contiguous, forgets trimmed idempotency keys', () => {
    const log = new ChannelLog('c', 'E');
    fill(log, 500);
    assert.equal(log.trim(100, -Infinity), 400);
    assert.equal(log.oldestOffset, 401);
    assert.equal(log.size, 100);
    assert.equal(log.offsetForIdempotencyKey('k400'), undefined);
    assert.equal(log.offsetForIdempotencyKey('k401'), 401);
    assert.deepEqual(log.after(0, 2).map((m) => m.offset), [401, 402]);
    log.trim(100, 451); // drops messages published before t=451
    assert.equal(log.oldestOffset, 451);
    fill(log, 5);
    assert.equal(log.headOffset, 505);
    assert.deepEqual(log.after(503, 10).map((m) => m.offset), [504, 505]);
  });

  it('keeps its head when everything expired', () => {
    const log = new ChannelLog('c', 'E');
    fill(log, 3);
    log.trim(10, Infinity);
    assert.equal(log.size, 0);
    assert.equal(log.headOffset, 3);
    assert.equal(log.oldestOffset, 4);
  });

  it('refuses an offset out of sequence', () => {
    const log = new ChannelLog('c', 'E');
    assert.throws(() => log.push(new Message({ channel: 'c', offset: 2, epoch: 'E', dataJson: '1', publishedAtMs: 0 })));
  });
});
