import type { ChannelLog } from '../store/channel-log.js';
import type { Store } from '../store/store.js';
import type { AppendInput, AppendResult, Engine, EngineEvents, EngineHealth } from './engine.js';
import { LocalBus } from './local-bus.js';

/**
 * One process is the truth: the store (SQLite or memory) assigns offsets and keeps the log, and its
 * windows are the hub's windows (loaded synchronously from disk when needed). Fan-out is a call.
 */
export class EmbeddedEngine implements Engine {
  readonly kind: string;
  readonly bus = new LocalBus();
  readonly store: Store;
  #events: EngineEvents | undefined;

  constructor(store: Store) {
    this.store = store;
    this.kind = store.kind;
  }

  connect(events: EngineEvents): void {
    this.#events = events;
  }

  async publish(batch: readonly AppendInput[]): Promise<AppendResult[]> {
    const results = await this.store.append(batch);
    const fresh = results.filter((r) => !r.isDuplicate).map((r) => r.message);
    if (fresh.length > 0) this.#events?.onMessages(fresh);
    return results;
  }

  window(channel: string): ChannelLog {
    return this.store.log(channel);
  }

  async load(): Promise<void> {}

  async catchUp(): Promise<void> {}

  sweep(nowMs: number, isInUse: (channel: string) => boolean): void {
    this.store.sweep(nowMs, isInUse);
  }

  get channelCount(): number {
    return this.store.channelCount;
  }

  health(): EngineHealth {
    return { status: 'ok' };
  }

  async close(): Promise<void> {
    this.#events = undefined;
    this.store.close();
  }
}
