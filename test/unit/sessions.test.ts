import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Access } from '../../src/auth/access.js';
import { ChannelPolicy } from '../../src/auth/policy.js';
import { HeraldError } from '../../src/errors.js';
import { Counters } from '../../src/metrics.js';
import { PresenceFanOut } from '../../src/presence/fan-out.js';
import { MemoryPresence } from '../../src/presence/memory.js';
import { SessionRegistry } from '../../src/transports/sessions.js';

describe('session registry', () => {
  const anonymous = Access.anonymous(new ChannelPolicy(['*']));
  const registry = (maxIdle: number, idleMs = 60_000): { sessions: SessionRegistry; counters: Counters } => {
    const counters = new Counters();
    return { sessions: new SessionRegistry(new PresenceFanOut(new MemoryPresence()), idleMs, counters, maxIdle), counters };
  };
  const isGone = (sessions: SessionRegistry, id: string): boolean => {
    try {
      sessions.require(id, anonymous);
      return false;
    } catch (error) {
      assert.ok(error instanceof HeraldError && error.code === 'session_not_found');
      return true;
    }
  };

  it('keeps at most maxIdle idle sessions, letting the one idle longest go first', () => {
    const { sessions, counters } = registry(3);
    const ids = [1, 2, 3, 4, 5].map(() => sessions.claim('new', anonymous).id);
    assert.equal(sessions.size, 3);
    assert.equal(counters.sessions, 3);
    assert.deepEqual(ids.map((id) => isGone(sessions, id)), [true, true, false, false, false]);
    // A use moves a session to the back of the line.
    sessions.touch(sessions.require(ids[2]!, anonymous));
    sessions.claim('new', anonymous);
    assert.deepEqual(ids.map((id) => isGone(sessions, id)), [true, true, false, true, false]);
  });

  it('never lets a busy session go for the cap, and expires idle ones after idleMs', () => {
    const { sessions } = registry(1, 100);
    const busy = sessions.claim('new', anonymous);
    sessions.markBusy(busy);
    const idle = sessions.claim('new', anonymous);
    sessions.claim('new', anonymous);
    assert.equal(isGone(sessions, busy.id), false);
    assert.equal(isGone(sessions, idle.id), true);
    sessions.tick(Date.now() + 1000);
    assert.equal(isGone(sessions, busy.id), false);
    assert.equal(sessions.size, 1);
  });
});
