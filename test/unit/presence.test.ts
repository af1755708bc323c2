import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryPresence } from '../../src/presence/memory.js';
import type { PresenceChange } from '../../src/presence/presence.js';

function tracked(): { presence: MemoryPresence; changes: string[] } {
  const presence = new MemoryPresence();
  const changes: string[] = [];
  presence.onChange((c: PresenceChange) => changes.push(`${c.kind} ${c.channel} ${c.user}`));
  return { presence, changes };
}

describe('memory presence', () => {
  it('joins a user on its first connection and leaves it on its last', () => {
    const { presence, changes } = tracked();
    presence.enter('room', 'c1', 'ada', { name: 'Ada' });
    presence.enter('room', 'c2', 'ada', { name: 'Ada' });
    presence.enter('room', 'c3', 'bob', undefined);
    assert.deepEqual(changes, ['join room ada', 'join room bob']);
    assert.deepEqual(presence.members('room'), [
      { user: 'ada', info: { name: 'Ada' }, connections: 2 },
      { user: 'bob', info: undefined, connections: 1 },
    ]);
    assert.equal(presence.count('room'), 2);
    presence.exit('room', 'c1');
    assert.deepEqual(changes, ['join room ada', 'join room bob'], 'a second tab is still there');
    presence.exit('room', 'c2');
    presence.exit('room', 'c2');
    presence.exit('room', 'nobody');
    assert.deepEqual(changes, ['join room ada', 'join room bob', 'leave room ada']);
    presence.exit('room', 'c3');
    assert.equal(presence.count('room'), 0);
    assert.deepEqual(presence.members('room'), []);
  });

  it('keeps channels apart', () => {
    const { presence, changes } = tracked();
    presence.enter('a', 'c1', 'ada', undefined);
    presence.enter('b', 'c1', 'ada', undefined);
    presence.exit('a', 'c1');
    assert.deepEqual(changes, ['join a ada', 'join b ada', 'leave a ada']);
    assert.equal(presence.count('b'), 1);
  });

  it('expires connections that are not refreshed, in the sweep', () => {
    const { presence, changes } = tracked();
    presence.enter('room', 'poll:ada', 'ada', undefined, 1000);
    presence.enter('room', 'ws1', 'bob', undefined);
    presence.sweep(500);
    assert.deepEqual(changes, ['join room ada', 'join room bob']);
    presence.enter('room', 'poll:ada', 'ada', undefined, 2000);
    presence.sweep(1500);
    assert.equal(presence.count('room'), 2, 'refreshed');
    presence.sweep(2000);
    assert.deepEqual(changes, ['join room ada', 'join room bob', 'leave room ada']);
    presence.sweep(1e12);
    assert.equal(presence.count('room'), 1, 'connections without an expiry stay');
  });
});
