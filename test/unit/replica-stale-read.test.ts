// ReplicaEngine, deterministically: a repair read that Redis answered before some live messages were
// published, and that comes back after the window applied those live messages, is a read of the past,
// not a loss. (Found by test/e2e/redis-faults.test.ts: a same-epoch reset to a live subscriber while
// publishes went on and a client resumed on a lagging node; the messages after the reset's `from` were
// then delivered a second time.)
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AppendResult, ControlBus, EngineHealth } from '../../src/engine/engine.js';
import { ReplicaEngine, type BackendEvents, type ChannelRead, type ReplicaBackend } from '../../src/engine/replica.js';
import type { ResetNotice } from '../../src/hub/hub.js';
import { Message } from '../../src/hub/message.js';

const EPOCH = 'E1';
const message = (offset: number): Message =>
  new Message({ channel: 'c', offset, epoch: EPOCH, dataJson: String(offset), publishedAtMs: Date.now() });

/** A backend whose reads are answered by the test, one at a time. */
class FakeBackend implements ReplicaBackend {
  readonly kind = 'fake';
  readonly bus: ControlBus = { nodeId: 'n', broadcast() {}, sendTo() {}, on() {} };
  events!: BackendEvents;
  readonly reads: { afterOffset: number; answer(read: ChannelRead): void }[] = [];

  listen(events: BackendEvents): void {
    this.events = events;
  }
  async subscribe(): Promise<void> {}
  unsubscribe(): void {}
  read(_channel: string, afterOffset: number): Promise<ChannelRead> {
    return new Promise((resolve) => this.reads.push({ afterOffset, answer: resolve }));
  }
  async publish(): Promise<AppendResult[]> {
    throw new Error('not used');
  }
  health(): EngineHealth {
    return { status: 'ok' };
  }
  async close(): Promise<void> {}
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('ReplicaEngine', () => {
  it('a catch-up read answered before live messages that the window applied meanwhile is not a loss', async () => {
    const backend = new FakeBackend();
    const engine = new ReplicaEngine(backend, { maxMessages: 1000, ttlMs: 3_600_000 }, { checkIntervalMs: 3_600_000, idleMs: 3_600_000 });
    const delivered: number[] = [];
    const resets: ResetNotice[] = [];
    engine.connect({ onMessages: (ms) => delivered.push(...ms.map((m) => m.offset)), onReset: (r) => resets.push(r) });
    try {
      // The window loads at head 2.
      const loading = engine.load(['c']);
      await tick();
      backend.reads.shift()!.answer({ epoch: EPOCH, head: 2, messages: [message(1), message(2)] });
      await loading;

      // A client resumes here with a cursor from a faster node: the window catches up with Redis...
      const catchingUp = engine.catchUp(['c']);
      await tick();
      const read = backend.reads.shift()!;
      assert.equal(read.afterOffset, 2);
      // ...while #3 and #4 come live (the read was answered by Redis when its head was 3).
      backend.events.onLive(message(3));
      backend.events.onLive(message(4));
      assert.deepEqual(delivered, [3, 4]);
      read.answer({ epoch: EPOCH, head: 3, messages: [message(3)] });
      await catchingUp;

      assert.deepEqual(resets, [], 'Redis lost nothing: no reset');
      assert.equal(engine.window('c')!.headOffset, 4, 'the window keeps what it applied');
      // And the next live message continues the window: nothing is delivered twice.
      backend.events.onLive(message(5));
      await tick();
      assert.deepEqual(delivered, [3, 4, 5]);
      assert.equal(backend.reads.length, 0, 'no repair read was needed');
    } finally {
      await engine.close();
    }
  });
});
