import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExpirySchedule, type Expiring } from '../../src/auth/expiry.js';
import { RateLimiter, TokenBucket } from '../../src/auth/rate-limit.js';

describe('token bucket', () => {
  it('allows a burst of one second, then the rate', () => {
    const bucket = new TokenBucket(10, undefined, 0);
    for (let i = 0; i < 10; i++) assert.equal(bucket.take(1, 0), true, `burst ${i}`);
    assert.equal(bucket.take(1, 0), false);
    assert.equal(bucket.take(1, 50), false, 'half a token after 50 ms');
    assert.equal(bucket.take(1, 100), true, 'one token after 100 ms');
    assert.equal(bucket.take(1, 100), false);
    assert.equal(bucket.isFull(100), false);
    assert.equal(bucket.isFull(1100), true);
    assert.equal(bucket.take(11, 5000), false, 'never more than the burst at once');
    assert.equal(bucket.take(10, 5000), true);
  });

  it('refuses a batch whole, taking nothing', () => {
    const bucket = new TokenBucket(5, undefined, 0);
    assert.equal(bucket.take(3, 0), true);
    assert.equal(bucket.take(3, 0), false);
    assert.equal(bucket.take(2, 0), true);
  });

  it('keeps buckets per key, bounded', () => {
    const limiter = new RateLimiter(1, 2);
    assert.equal(limiter.take('a', 1, 0), true);
    assert.equal(limiter.take('a', 1, 0), false);
    assert.equal(limiter.take('b', 1, 0), true);
    assert.equal(limiter.take('c', 1, 0), true, 'a third key evicts one');
    assert.equal(limiter.take('a', 1, 2000), true);
  });
});

describe('expiry schedule', () => {
  const item = (log: string[], name: string): Expiring => ({ onExpiry: () => log.push(name) });

  it('fires each deadline once, at the first tick at or after it', () => {
    const log: string[] = [];
    const schedule = new ExpirySchedule(10_000);
    schedule.schedule(item(log, 'a'), 11_500);
    schedule.schedule(item(log, 'b'), 13_000);
    schedule.tick(11_400);
    assert.deepEqual(log, []);
    schedule.tick(12_000);
    assert.deepEqual(log, ['a']);
    schedule.tick(12_500);
    assert.deepEqual(log, ['a']);
    schedule.tick(20_000);
    assert.deepEqual(log, ['a', 'b']);
    assert.equal(schedule.size, 0);
  });

  it('replaces and cancels', () => {
    const log: string[] = [];
    const schedule = new ExpirySchedule(0);
    const a = item(log, 'a');
    schedule.schedule(a, 1000);
    schedule.schedule(a, 5000);
    schedule.tick(2000);
    assert.deepEqual(log, []);
    schedule.cancel(a);
    schedule.tick(6000);
    assert.deepEqual(log, []);
    schedule.schedule(a, 0);
    schedule.tick(7000);
    assert.deepEqual(log, ['a'], 'a past deadline fires within the next bucket');
  });

  it('lets an item schedule itself again from onExpiry', () => {
    const schedule = new ExpirySchedule(0);
    let count = 0;
    const again: Expiring = {
      onExpiry: (nowMs) => {
        if (++count < 3) schedule.schedule(again, nowMs + 1000);
      },
    };
    schedule.schedule(again, 1000);
    for (let t = 0; t <= 10_000; t += 250) schedule.tick(t);
    assert.equal(count, 3);
  });
});
