import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_CHANNELS_PER_SUBSCRIPTION, SubscriptionCursor, cursorSegment, decodeCursor, encodeCursor, type Position } from '../../src/hub/cursor.js';
import { HeraldError } from '../../src/errors.js';

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

  describe('subscription cursor, one channel and more', () => {
    const E = 'E';
    const message = (c: string, offset: number, epoch = E) => ({ channel: c, epoch, offset, cursorSegment: cursorSegment(c, epoch, offset) });

    it('goes from no channel to one, two and back to one, the same at every step as a map of positions', () => {
      const cursor = new SubscriptionCursor();
      assert.deepEqual([cursor.size, cursor.channels, cursor.has('a'), cursor.position('a'), cursor.toString()], [0, [], false, undefined, '']);
      assert.equal(cursor.advance(message('a', 1)), false, 'nothing is subscribed');

      cursor.set('b', { epoch: E, offset: 2 });
      assert.deepEqual([cursor.size, cursor.channels, cursor.has('b'), cursor.has('a')], [1, ['b'], true, false]);
      assert.deepEqual(cursor.position('b'), { epoch: E, offset: 2 });
      assert.equal(cursor.position('a'), undefined);
      assert.equal(cursor.toString(), cursorSegment('b', E, 2));

      cursor.set('a', { epoch: E, offset: 5 });
      assert.deepEqual([cursor.size, cursor.channels, cursor.has('a'), cursor.has('b')], [2, ['a', 'b'], true, true]);
      assert.deepEqual({ ...cursor.position('a') }, { epoch: E, offset: 5, segment: cursorSegment('a', E, 5) });
      assert.equal(cursor.position('b')!.offset, 2, 'the first channel keeps its position in the map');
      assert.equal(cursor.toString(), `${cursorSegment('a', E, 5)}.${cursorSegment('b', E, 2)}`);
      assert.equal(cursor.advance(message('b', 3)), true, 'the first channel advances in the map');

      cursor.delete('a');
      assert.deepEqual([cursor.size, cursor.channels, cursor.has('a'), cursor.has('b')], [1, ['b'], false, true]);
      assert.deepEqual(cursor.position('b'), { epoch: E, offset: 3 }, 'the position advanced in the map survives');
      assert.equal(cursor.toString(), cursorSegment('b', E, 3));
      assert.equal(cursor.advance(message('b', 4)), true);
      assert.equal(cursor.advance(message('a', 9)), false, 'a deleted channel is refused');
      assert.equal(cursor.toString(), cursorSegment('b', E, 4));

      cursor.delete('x');
      assert.equal(cursor.size, 1, 'deleting a channel not subscribed changes nothing');
      cursor.delete('b');
      assert.deepEqual([cursor.size, cursor.channels, cursor.toString()], [0, [], '']);
      cursor.set('c', { epoch: E, offset: 0 });
      assert.deepEqual([cursor.channels, cursor.toString()], [['c'], cursorSegment('c', E, 0)]);
    });

    it('setting the one channel again moves it (to another epoch too)', () => {
      const cursor = new SubscriptionCursor();
      cursor.set('a', { epoch: E, offset: 7 });
      cursor.set('a', { epoch: 'F', offset: 1 });
      assert.deepEqual([cursor.size, cursor.position('a'), cursor.toString()], [1, { epoch: 'F', offset: 1 }, cursorSegment('a', 'F', 1)]);
      assert.equal(cursor.advance(message('a', 1, 'F')), false);
      assert.equal(cursor.advance(message('a', 0, 'G')), true, 'a new epoch is new whatever its offset');
      assert.equal(cursor.toString(), cursorSegment('a', 'G', 0));
    });

    it('a one-channel cursor advances only forwards, and its string is the message segment itself', () => {
      const cursor = new SubscriptionCursor();
      cursor.set('a', { epoch: E, offset: 3 });
      const fourth = message('a', 4);
      assert.equal(cursor.advance(message('a', 3)), false, 'the known position is refused');
      assert.equal(cursor.advance(message('a', 2)), false, 'an older message is refused');
      assert.equal(cursor.advance(fourth), true);
      assert.equal(cursor.advance(fourth), false, 'a duplicate is refused');
      assert.equal(cursor.toString(), fourth.cursorSegment);
      assert.deepEqual(cursor.position('a'), { epoch: E, offset: 4 });
    });

    it('caches its string until a position, a channel or the carried positions change', () => {
      const cursor = new SubscriptionCursor();
      cursor.set('a', { epoch: E, offset: 1 });
      cursor.set('b', { epoch: E, offset: 1 });
      const first = cursor.toString();
      assert.equal(cursor.toString(), first);
      assert.equal(cursor.advance(message('a', 1)), false);
      assert.equal(cursor.toString(), first, 'a refused message changes nothing');
      cursor.advance(message('a', 2));
      const second = cursor.toString();
      assert.notEqual(second, first);
      assert.deepEqual(decodeCursor(second), new Map([['a', { epoch: E, offset: 2 }], ['b', { epoch: E, offset: 1 }]]));
      cursor.carry(new Map([['c', { epoch: E, offset: 9 }]]));
      assert.deepEqual(decodeCursor(cursor.toString()).get('c'), { epoch: E, offset: 9 });
      cursor.delete('c');
      assert.equal(cursor.toString(), second, 'deleting a carried position changes the string back');
      cursor.delete('b');
      assert.equal(cursor.toString(), cursorSegment('a', E, 2));
    });

    it('carries what a resume cursor holds for other channels, on one channel and on several', () => {
      const resume = new Map([
        ['a', { epoch: E, offset: 10 }],
        ['c', { epoch: E, offset: 20 }],
        ['d', { epoch: E, offset: 30 }],
      ]);
      const cursor = new SubscriptionCursor();
      cursor.carry(new Map());
      assert.equal(cursor.toString(), '', 'carrying nothing adds nothing');
      cursor.set('a', { epoch: E, offset: 10 });
      cursor.carry(resume);
      assert.deepEqual(decodeCursor(cursor.toString()), resume, 'the subscribed channel is not carried twice');
      assert.equal(cursor.advance(message('a', 11)), true);
      assert.deepEqual(decodeCursor(cursor.toString()), new Map([...resume, ['a', { epoch: E, offset: 11 }]]));
      cursor.set('c', { epoch: E, offset: 20 });
      assert.deepEqual(cursor.channels, ['a', 'c'], 'a carried channel, once subscribed, is a channel');
      assert.equal(cursor.advance(message('c', 21)), true);
      assert.deepEqual(decodeCursor(cursor.toString()), new Map([['a', { epoch: E, offset: 11 }], ['c', { epoch: E, offset: 21 }], ['d', { epoch: E, offset: 30 }]]));
      cursor.delete('a');
      assert.deepEqual(decodeCursor(cursor.toString()), new Map([['c', { epoch: E, offset: 21 }], ['d', { epoch: E, offset: 30 }]]), 'one channel and a carried one');
      cursor.carry(new Map([['c', { epoch: E, offset: 0 }]]));
      assert.equal(cursor.toString(), cursorSegment('c', E, 21), 'a later carry replaces the earlier one');
    });

    it('carries no more than a cursor may name', () => {
      const cursor = new SubscriptionCursor();
      cursor.set('a', { epoch: E, offset: 0 });
      const many = new Map(Array.from({ length: MAX_CHANNELS_PER_SUBSCRIPTION + 10 }, (_, i) => [`c${i}`, { epoch: E, offset: i }] as const));
      cursor.carry(many);
      assert.equal(decodeCursor(cursor.toString()).size, MAX_CHANNELS_PER_SUBSCRIPTION);
    });

    it('agrees with a map of positions over any sequence of changes', () => {
      const op = fc.oneof(
        fc.record({ kind: fc.constant('set' as const), channel: fc.constantFrom('a', 'b', 'c'), offset: fc.nat({ max: 20 }) }),
        fc.record({ kind: fc.constant('delete' as const), channel: fc.constantFrom('a', 'b', 'c', 'd'), offset: fc.constant(0) }),
        fc.record({ kind: fc.constant('advance' as const), channel: fc.constantFrom('a', 'b', 'c', 'd'), offset: fc.nat({ max: 20 }) }),
      );
      fc.assert(
        fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
          const cursor = new SubscriptionCursor();
          const model = new Map<string, Position>();
          for (const { kind, channel, offset } of ops) {
            if (kind === 'set') {
              cursor.set(channel, { epoch: E, offset });
              model.set(channel, { epoch: E, offset });
            } else if (kind === 'delete') {
              cursor.delete(channel);
              model.delete(channel);
            } else {
              const known = model.get(channel);
              const isNew = known !== undefined && offset > known.offset;
              assert.equal(cursor.advance(message(channel, offset)), isNew);
              if (isNew) model.set(channel, { epoch: E, offset });
            }
            assert.deepEqual(cursor.channels, [...model.keys()].sort());
            assert.equal(cursor.size, model.size);
            for (const c of ['a', 'b', 'c', 'd']) {
              assert.equal(cursor.has(c), model.has(c));
              const position = cursor.position(c);
              assert.deepEqual(position === undefined ? undefined : { epoch: position.epoch, offset: position.offset }, model.get(c));
            }
            assert.equal(cursor.toString(), model.size === 0 ? '' : encodeCursor(model));
          }
        }),
      );
    });
  });
});
