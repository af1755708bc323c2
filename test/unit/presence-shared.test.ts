// SharedPresence's merge and heal logic over an in-memory fake bus whose messages the test delivers,
// drops or reorders at will: users merge across nodes, join/leave fire once per node per transition,
// lost and reordered deltas heal from digests and states, silent nodes are dropped, a late node and a
// restarted node catch up without flapping. A randomized run checks that every node converges on the
// truth with a consistent event history. (The Redis-backed test is test/integration/presence-shared.)
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { ControlBus } from '../../src/engine/engine.js';
import type { PresenceChange, PresenceMember } from '../../src/presence/presence.js';
import { SharedPresence } from '../../src/presence/shared.js';

interface Envelope {
  from: string;
  to: string;
  topic: string;
  payload: string;
}

/** Nodes' buses; nothing is delivered until the test says so. */
class FakeNetwork {
  readonly buses = new Map<string, FakeBus>();
  queue: Envelope[] = [];
  /** Decides each delivered message's fate. */
  fate: (message: Envelope) => 'deliver' | 'drop' = () => 'deliver';

  bus(nodeId: string): FakeBus {
    const bus = new FakeBus(this, nodeId);
    this.buses.set(nodeId, bus);
    return bus;
  }

  /** Delivers (or drops) every queued message, and what those cause, until nothing is left. */
  async settle(): Promise<void> {
    for (;;) {
      await new Promise((resolve) => setImmediate(resolve)); // the deltas' end-of-turn flushes
      if (this.queue.length === 0) return;
      const batch = this.queue;
      this.queue = [];
      for (const message of batch) this.deliver(message);
    }
  }

  deliver(message: Envelope): void {
    if (this.fate(message) === 'drop') return;
    this.buses.get(message.to)?.handlers.get(message.topic)?.(message.payload, message.from);
  }
}

class FakeBus implements ControlBus {
  readonly handlers = new Map<string, (payload: string, fromNodeId: string) => void>();
  readonly #net: FakeNetwork;
  readonly nodeId: string;

  constructor(net: FakeNetwork, nodeId: string) {
    this.#net = net;
    this.nodeId = nodeId;
  }

  broadcast(topic: string, payload: string): void {
    for (const to of this.#net.buses.keys()) this.#net.queue.push({ from: this.nodeId, to, topic, payload });
  }

  sendTo(nodeId: string, topic: string, payload: string): void {
    this.#net.queue.push({ from: this.nodeId, to: nodeId, topic, payload });
  }

  on(topic: string, handler: (payload: string, fromNodeId: string) => void): void {
    this.handlers.set(topic, handler);
  }
}

const TIMEOUT_MS = 2000;
const BEAT_MS = TIMEOUT_MS / 4;

interface Node {
  id: string;
  presence: SharedPresence;
  events: string[];
}

function cluster(): { net: FakeNetwork; clock: { ms: number }; start(id: string, options?: { maxEntriesPerNode?: number }): Node; tickAll(nodes: Node[]): void } {
  const net = new FakeNetwork();
  const clock = { ms: 1_000_000 };
  return {
    net,
    clock,
    start(id, options = {}) {
      const presence = new SharedPresence(net.buses.get(id) ?? net.bus(id), { timeoutMs: TIMEOUT_MS, autoTick: false, now: () => clock.ms, ...options });
      const events: string[] = [];
      presence.onChange((c: PresenceChange) => events.push(`${c.kind} ${c.channel} ${c.user}`));
      return { id, presence, events };
    },
    tickAll(nodes) {
      for (const node of nodes) node.presence.tick(clock.ms);
    },
  };
}

const sorted = (members: PresenceMember[]): PresenceMember[] => [...members].sort((a, b) => a.user.localeCompare(b.user));
const info = (user: string): Record<string, unknown> => ({ name: user.toUpperCase() });

describe('shared presence', () => {
  it('a user on two nodes is one member; join and leave once per node, when the first connection appears and the last goes', async () => {
    const { net, start } = cluster();
    const a = start('A');
    const b = start('B');
    await net.settle();
    a.presence.enter('room', 'c1', 'ada', info('ada'));
    await net.settle();
    b.presence.enter('room', 'c1', 'ada', info('ada')); // the same connection id on another node: another connection
    b.presence.enter('room', 'c2', 'bob', undefined);
    await net.settle();
    for (const node of [a, b]) {
      assert.deepEqual(sorted(node.presence.members('room')), [
        { user: 'ada', info: { name: 'ADA' }, connections: 2 },
        { user: 'bob', info: undefined, connections: 1 },
      ], node.id);
      assert.equal(node.presence.count('room'), 2);
      assert.deepEqual(node.events, ['join room ada', 'join room bob'], node.id);
    }
    a.presence.exit('room', 'c1');
    await net.settle();
    for (const node of [a, b]) {
      assert.deepEqual(node.events, ['join room ada', 'join room bob'], `${node.id}: ada is still on B`);
      assert.deepEqual(sorted(node.presence.members('room'))[0], { user: 'ada', info: { name: 'ADA' }, connections: 1 });
    }
    b.presence.exit('room', 'c1');
    b.presence.exit('room', 'c1');
    await net.settle();
    for (const node of [a, b]) assert.deepEqual(node.events, ['join room ada', 'join room bob', 'leave room ada'], node.id);
  });

  it("a polling user's `poll:` connection is one connection over every node, and does not flap when its polls move", async () => {
    const { net, start } = cluster();
    const a = start('A');
    const b = start('B');
    a.presence.enter('room', 'poll:ada', 'ada', undefined, 10_000);
    await net.settle();
    b.presence.enter('room', 'poll:ada', 'ada', undefined, 20_000); // its next poll, on B
    await net.settle();
    for (const node of [a, b]) assert.deepEqual(node.presence.members('room'), [{ user: 'ada', info: undefined, connections: 1 }]);
    a.presence.sweep(15_000); // its poll on A expires
    b.presence.sweep(15_000);
    await net.settle();
    for (const node of [a, b]) {
      assert.deepEqual(node.presence.members('room'), [{ user: 'ada', info: undefined, connections: 1 }]);
      assert.deepEqual(node.events, ['join room ada'], node.id);
    }
    b.presence.sweep(20_000);
    await net.settle();
    for (const node of [a, b]) assert.deepEqual(node.events, ['join room ada', 'leave room ada'], node.id);
  });

  it('a refresh (a poll) sends nothing; an info change does, without an event', async () => {
    const { net, start } = cluster();
    const a = start('A');
    const b = start('B');
    await net.settle();
    a.presence.enter('room', 'c1', 'ada', { v: 1 });
    await net.settle();
    for (let i = 0; i < 5; i++) a.presence.enter('room', 'c1', 'ada', { v: 1 }, 1e12);
    assert.equal(net.queue.length, 0);
    await net.settle();
    a.presence.enter('room', 'c1', 'ada', { v: 2 });
    await net.settle();
    assert.deepEqual(b.presence.members('room'), [{ user: 'ada', info: { v: 2 }, connections: 1 }]);
    assert.deepEqual(b.events, ['join room ada']);
  });

  it('a lost delta is healed by the next beat; a gap asks for the state at once', async () => {
    const { net, clock, start, tickAll } = cluster();
    const a = start('A');
    const b = start('B');
    await net.settle();
    net.fate = (m) => (m.topic === 'presence:delta' ? 'drop' : 'deliver');
    a.presence.enter('room', 'c1', 'ada', undefined);
    await net.settle();
    assert.deepEqual(b.presence.members('room'), [], 'lost');
    net.fate = () => 'deliver';
    clock.ms += BEAT_MS;
    tickAll([a, b]);
    await net.settle();
    assert.deepEqual(b.presence.members('room'), [{ user: 'ada', info: undefined, connections: 1 }], 'healed by the digest');
    assert.deepEqual(b.events, ['join room ada']);

    // The next delta is lost, the one after arrives: B sees the gap and asks for A's state.
    let dropped = 0;
    net.fate = (m) => (m.topic === 'presence:delta' && m.to === 'B' && dropped++ === 0 ? 'drop' : 'deliver');
    a.presence.enter('room', 'c2', 'bob', undefined);
    await net.settle();
    a.presence.enter('room', 'c3', 'cy', undefined);
    await net.settle();
    assert.deepEqual(sorted(b.presence.members('room')).map((m) => m.user), ['ada', 'bob', 'cy']);
    assert.deepEqual(b.events, ['join room ada', 'join room cy', 'join room bob']);
  });

  it('a state that moves a user to another connection does not make it flap', async () => {
    const { net, clock, start, tickAll } = cluster();
    const a = start('A');
    const b = start('B');
    a.presence.enter('room', 'c1', 'ada', undefined);
    await net.settle();
    net.fate = (m) => (m.topic === 'presence:delta' ? 'drop' : 'deliver');
    a.presence.exit('room', 'c1'); // ada reloads her page: a new connection
    a.presence.enter('room', 'c2', 'ada', undefined);
    await net.settle();
    net.fate = () => 'deliver';
    clock.ms += BEAT_MS;
    tickAll([a, b]);
    await net.settle();
    assert.deepEqual(b.presence.members('room'), [{ user: 'ada', info: undefined, connections: 1 }]);
    assert.deepEqual(b.events, ['join room ada'], 'healed without a leave and a join');
    a.presence.exit('room', 'c2');
    await net.settle();
    assert.deepEqual(b.events, ['join room ada', 'leave room ada'], 'the healed copy follows deltas again');
  });

  it('reordered deltas end in the right state', async () => {
    const { net, clock, start, tickAll } = cluster();
    const a = start('A');
    const b = start('B');
    await net.settle();
    a.presence.enter('room', 'c1', 'ada', undefined);
    await net.settle();
    a.presence.exit('room', 'c1');
    a.presence.flush();
    a.presence.enter('room', 'c2', 'bob', undefined);
    a.presence.flush();
    const [exitAda, enterBob] = net.queue.filter((m) => m.to === 'B');
    net.queue = [];
    net.deliver(enterBob!);
    net.deliver(exitAda!); // older than what B applied: ignored, and B asks for A's state
    await net.settle();
    clock.ms += BEAT_MS;
    tickAll([a, b]);
    await net.settle();
    assert.deepEqual(b.presence.members('room'), [{ user: 'bob', info: undefined, connections: 1 }]);
    assert.deepEqual(b.events, ['join room ada', 'join room bob', 'leave room ada']);
  });

  it('a node not heard from within the timeout is dropped: its users leave everywhere, users also elsewhere stay', async () => {
    const { net, clock, start, tickAll } = cluster();
    const a = start('A');
    const b = start('B');
    const c = start('C');
    await net.settle();
    a.presence.enter('room', 'c1', 'ada', undefined);
    a.presence.enter('room', 'c2', 'both', undefined);
    b.presence.enter('room', 'c1', 'both', undefined);
    await net.settle();
    // A dies: it beats no more.
    net.buses.delete('A');
    for (let elapsed = BEAT_MS; elapsed < TIMEOUT_MS - BEAT_MS; elapsed += BEAT_MS) {
      clock.ms += BEAT_MS;
      tickAll([b, c]);
      await net.settle();
      assert.equal(c.presence.count('room'), 2, `still there after ${elapsed} ms`);
    }
    clock.ms += BEAT_MS;
    tickAll([b, c]);
    await net.settle();
    for (const node of [b, c]) {
      assert.deepEqual(node.presence.members('room'), [{ user: 'both', info: undefined, connections: 1 }], node.id);
      assert.deepEqual(node.events.slice(0, 2).sort(), ['join room ada', 'join room both'], node.id);
      assert.deepEqual(node.events.slice(2), ['leave room ada'], node.id);
      assert.deepEqual(node.presence.nodeIds.sort(), ['A', 'B', 'C'].filter((id) => id !== 'A' && id !== node.id));
    }
  });

  it('a node that closes says goodbye: its users leave at once', async () => {
    const { net, start } = cluster();
    const a = start('A');
    const b = start('B');
    a.presence.enter('room', 'c1', 'ada', undefined);
    await net.settle();
    assert.equal(b.presence.count('room'), 1);
    a.presence.close();
    a.presence.exit('room', 'c1'); // after close: local only
    await net.settle();
    assert.deepEqual(b.presence.members('room'), []);
    assert.deepEqual(b.events, ['join room ada', 'leave room ada']);
    assert.deepEqual(b.presence.nodeIds, []);
  });

  it('a late node gets every state when it starts, in parts when big, and re-asks when a part is lost', async () => {
    const { net, clock, start, tickAll } = cluster();
    const a = start('A');
    const b = start('B');
    await net.settle();
    const big = { bio: 'x'.repeat(1000) };
    for (let i = 0; i < 200; i++) a.presence.enter(`room/${i % 3}`, `c${i}`, `u${i}`, big);
    b.presence.enter('room/0', 'c1', 'bea', undefined);
    await net.settle();
    let stateParts = 0;
    net.fate = (m) => (m.topic === 'presence:state' && m.to === 'C' && m.from === 'A' && stateParts++ === 1 ? 'drop' : 'deliver');
    const c = start('C');
    await net.settle();
    assert.ok(stateParts > 2, `A's state came in ${stateParts} parts`);
    assert.equal(c.presence.count('room/0'), 1, "B's state arrived, A's lost a part");
    for (let beat = 0; beat < 2; beat++) {
      clock.ms += BEAT_MS; // the incomplete state is given up after two beats, then asked for again
      tickAll([a, b, c]);
      await net.settle();
    }
    for (let r = 0; r < 3; r++) assert.deepEqual(sorted(c.presence.members(`room/${r}`)), sorted(a.presence.members(`room/${r}`)));
    assert.equal(c.presence.count('room/0'), 68);
    assert.equal(c.events.length, 201, 'each user joined once');
  });

  it('a big state goes out over several turns; deltas made meanwhile are replayed on it, with no event twice', async () => {
    const { net, start } = cluster();
    const a = start('A');
    await net.settle();
    const big = { bio: 'x'.repeat(1000) };
    for (let i = 0; i < 1500; i++) a.presence.enter('room', `c${i}`, `u${i}`, big);
    await net.settle();
    const c = start('C');
    await new Promise((resolve) => setImmediate(resolve));
    const deliverQueued = (): number => {
      const batch = net.queue;
      net.queue = [];
      for (const message of batch) net.deliver(message);
      return batch.filter((m) => m.topic === 'presence:state' && m.to === 'C').length;
    };
    deliverQueued(); // C's hello reaches A, which sends the first parts of its state at once
    const firstParts = deliverQueued();
    assert.equal(firstParts, 16, 'the first parts, at once');
    a.presence.exit('room', 'c0');
    a.presence.enter('room', 'c-new', 'newcomer', undefined);
    a.presence.flush();
    deliverQueued(); // the delta, before the rest of the state
    assert.deepEqual(c.events, ['join room newcomer']);
    await net.settle(); // the other parts, over the next turns
    assert.ok(c.events.length > 1);
    assert.deepEqual(sorted(c.presence.members('room')), sorted(a.presence.members('room')));
    assert.equal(c.presence.count('room'), 1500);
    assert.equal(c.events.length, 1500, 'each present user joined once, u0 never');
    assert.ok(!c.events.includes('join room u0') && c.events.every((e) => e.startsWith('join')));
  });

  it('a node restarted under the same id replaces its old entries without making users flap', async () => {
    const { net, start } = cluster();
    const a = start('A');
    const b = start('B');
    a.presence.enter('room', 'c1', 'ada', undefined);
    a.presence.enter('room', 'c2', 'gone', undefined);
    await net.settle();
    // A restarts (a new incarnation, counters from 1 again); ada reconnects at once, 'gone' does not.
    const a2 = start('A');
    a2.presence.enter('room', 'c1', 'ada', undefined);
    await net.settle();
    assert.deepEqual(b.presence.members('room'), [{ user: 'ada', info: undefined, connections: 1 }]);
    assert.deepEqual(b.events, ['join room ada', 'join room gone', 'leave room gone']);
  });

  it('bounds the entries of a node: past the cap, local entries are not shown, remote ones not kept', async () => {
    const { net, start } = cluster();
    const a = start('A', { maxEntriesPerNode: 3 });
    const b = start('B', { maxEntriesPerNode: 2 });
    for (let i = 0; i < 5; i++) a.presence.enter('room', `c${i}`, `u${i}`, undefined);
    await net.settle();
    assert.equal(a.presence.count('room'), 3);
    assert.equal(b.presence.count('room'), 2);
    a.presence.exit('room', 'c0');
    a.presence.enter('room', 'c9', 'u9', undefined);
    await net.settle();
    assert.deepEqual(sorted(a.presence.members('room')).map((m) => m.user), ['u1', 'u2', 'u9']);
  });

  it('ignores malformed messages', async () => {
    const { net, start } = cluster();
    const a = start('A');
    await net.settle();
    for (const topic of ['presence:delta', 'presence:beat', 'presence:state', 'presence:sync', 'presence:bye']) {
      for (const payload of ['', 'null', '[]', '{"e":1}', '{"e":"x","s":1,"d":[["+"],["+",1,2,3],["-"],5]}', '{"e":"x","s":0,"p":3,"m":2,"d":[]}']) {
        net.deliver({ from: 'Z', to: 'A', topic, payload });
      }
    }
    await net.settle();
    assert.deepEqual(a.presence.members('room'), []);
    assert.deepEqual(a.events, []);
  });

  it('randomized: with losses, reorders and restarts, every node converges on the truth, with alternating events', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            node: fc.integer({ min: 0, max: 2 }),
            op: fc.constantFrom('enter', 'enter', 'exit', 'poll', 'sweep', 'deliver', 'beat'),
            channel: fc.constantFrom('r1', 'r2'),
            connection: fc.integer({ min: 0, max: 3 }),
            user: fc.constantFrom('ada', 'bob', 'cy'),
            info: fc.constantFrom(undefined, { v: 1 }, { v: 2 }),
          }),
          { minLength: 1, maxLength: 60 },
        ),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        async (steps, seed) => {
          let state = seed;
          const random = (): number => {
            state = (Math.imul(state, 1103515245) + 12345) >>> 0;
            return state / 2 ** 32;
          };
          const { net, clock, start, tickAll } = cluster();
          const nodes = ['A', 'B', 'C'].map((id) => start(id));
          await net.settle();
          // While steps run: a fifth of the messages is lost, deliveries come in random order.
          net.fate = () => (random() < 0.2 ? 'drop' : 'deliver');
          const pollTime = { ms: 0 };
          // The truth: each node's own entries, `channel\nconnection` → user and expiry.
          const own = nodes.map(() => new Map<string, { user: string; expiresAtMs: number }>());
          for (const step of steps) {
            const node = nodes[step.node]!;
            const mine = own[step.node]!;
            switch (step.op) {
              case 'enter':
                node.presence.enter(step.channel, `c${step.connection}`, step.user, step.info);
                mine.set(`${step.channel}\nc${step.connection}`, { user: step.user, expiresAtMs: Infinity });
                break;
              case 'exit':
                node.presence.exit(step.channel, `c${step.connection}`);
                mine.delete(`${step.channel}\nc${step.connection}`);
                break;
              case 'poll':
                node.presence.enter(step.channel, `poll:${step.user}`, step.user, undefined, (pollTime.ms += 10) + 30);
                mine.set(`${step.channel}\npoll:${step.user}`, { user: step.user, expiresAtMs: pollTime.ms + 30 });
                break;
              case 'sweep':
                node.presence.sweep(pollTime.ms);
                for (const [key, { expiresAtMs }] of mine) if (expiresAtMs <= pollTime.ms) mine.delete(key);
                break;
              case 'deliver': {
                await new Promise((resolve) => setImmediate(resolve));
                const batch = net.queue.sort(() => random() - 0.5);
                net.queue = [];
                for (const message of batch) net.deliver(message);
                break;
              }
              case 'beat':
                clock.ms += 10; // well within the timeout: nobody is dropped
                node.presence.tick(clock.ms);
                break;
            }
          }
          // Then the network heals: a beat or two brings every copy back.
          net.fate = () => 'deliver';
          await net.settle();
          for (let i = 0; i < 3; i++) {
            clock.ms += BEAT_MS;
            tickAll(nodes);
            await net.settle();
          }
          for (const channel of ['r1', 'r2']) {
            const truth = new Map<string, Set<string>>();
            nodes.forEach((node, i) => {
              for (const [key, { user }] of own[i]!) {
                const [c, id] = key.split('\n') as [string, string];
                if (c !== channel) continue;
                if (!truth.has(user)) truth.set(user, new Set());
                truth.get(user)!.add(id.startsWith('poll:') ? id : `${node.id}/${id}`);
              }
            });
            const expected = [...truth].map(([user, ids]) => `${user}×${ids.size}`).sort();
            for (const node of nodes) {
              assert.deepEqual(node.presence.members(channel).map((m) => `${m.user}×${m.connections}`).sort(), expected, `${node.id} ${channel}`);
              // Events alternate join/leave per user and end where the list is.
              for (const user of ['ada', 'bob', 'cy']) {
                const mine = node.events.filter((e) => e.endsWith(` ${channel} ${user}`)).map((e) => e.split(' ')[0]);
                mine.forEach((kind, i) => assert.equal(kind, i % 2 === 0 ? 'join' : 'leave', `${node.id} ${channel} ${user}: ${mine.join(',')}`));
                assert.equal(mine.length % 2 === 1, truth.has(user), `${node.id} ${channel} ${user} ends present iff present`);
              }
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
