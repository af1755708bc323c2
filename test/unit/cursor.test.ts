import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SubscriptionCursor, cursorSegment, decodeCursor, encodeCursor, type Position } from '../../src/hub/cursor.js';
import { HeraldError } from '../../src/http/errors.js';

const channel = fc.stringMatching(/^[A-Za-z0-9_.:@/-]{1,40}$/);
const position = fc.record({ epoch: fc.stringMatching(/^[A-Za-z0-9]{1,16}$/), offset: fc.nat({ max: 2 ** 40 }) });

describe('cursor', () => {
  it('round-trips any set of positions', () => {
    fc.assert(
      fc.property(fc.dictionary(channel, position, { maxKeys: 20 }), (dict) => {
        const positions = new Map<string, Position>(Object.entries(dict).map(([c, p]) => [c, { ...p }]));
        fc.pre(positions.size > 0);
        assert.deepEqual(decodeCursor(encodeCursor(positions)), positions);
      }),
    );
  });

  it('is URL- and header-safe as it is', () => {
    const cursor = encodeCursor(new Map([['a/b:c@d', { epoch: 'E1', offset: 12 }], ['z', { epoch: 'E2', offset: 0 }]]));
    assert.match(cursor, /^[A-Za-z0-9_.-]+$/);
    assert.equal(encodeURIComponent(cursor), cursor);
  });

  it('joins cursors with ".", the last position of a channel winning', () => {
    const a = encodeCursor(new Map([['a', { epoch: 'E', offset: 1 }], ['b', { epoch: 'E', offset: 5 }]]));
    const b = encodeCursor(new Map([['b', { epoch: 'E', offset: 7 }]]));
    assert.deepEqual(decodeCursor(`${a}.${b}`), new Map([['a', { epoch: 'E', offset: 1 }], ['b', { epoch: 'E', offset: 7 }]]));
  });

  it('refuses garbage with cursor_invalid', () => {
    for (const bad of ['', '!!', 'a.b', Buffer.from('a\nE\n-1').toString('base64url'), Buffer.from('bad channel\nE\n1').toString('base64url'), Buffer.from('a\nE\n1\nx').toString('base64url'), 'x'.repeat(100_000)]) {
      assert.throws(() => decodeCursor(bad), (err: unknown) => err instanceof HeraldError && err.code === 'cursor_invalid', bad.slice(0, 30));
    }
  });

  it('refuses garbage of any shape without throwing anything else', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        try {
          decodeCursor(text);
        } catch (err) {
          assert.ok(err instanceof HeraldError);
        }
      }),
    );
  });

  it('a subscription cursor advances per channel and never goes back', () => {
    const cursor = new SubscriptionCursor();
    cursor.set('b', { epoch: 'E', offset: 0 });
    cursor.set('a', { epoch: 'E', offset: 3 });
    const message = (c: string, offset: number) => ({ channel: c, epoch: 'E', offset, cursorSegment: cursorSegment(c, 'E', offset) });
    assert.equal(cursor.advance(message('a', 4)), true);
    assert.equal(cursor.advance(message('a', 4)), false, 'a duplicate is refused');
    assert.equal(cursor.advance(message('a', 2)), false, 'an older message is refused');
    assert.equal(cursor.advance(message('c', 1)), false, 'a channel not subscribed is refused');
    assert.deepEqual(decodeCursor(cursor.toString()), new Map([['a', { epoch: 'E', offset: 4 }], ['b', { epoch: 'E', offset: 0 }]]));
    cursor.delete('a');
    assert.equal(cursor.toString(), cursorSegment('b', 'E', 0), 'a one-channel cursor is that channel segment');
  });
});
