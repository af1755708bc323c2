import type { Broker } from '../broker/broker.js';
import type { AppendInput, AppendResult, Store } from '../store/store.js';
import type { Counters } from '../metrics.js';
import type { Position } from './cursor.js';
import { ChannelSets } from './channel-sets.js';
import type { Message } from './message.js';

/** Where a subscription to one channel starts. */
export type StartAt = 'head' | 'beginning' | Position;

/** Told to a subscriber before anything else of a channel whose history no longer reaches its position. */
export interface ResetNotice {
  channel: string;
  epoch: string;
  /** The offset delivery continues from. */
  from: number;
  /** How many messages the subscriber will never see, when the server can know. */
  missed?: number;
}

export interface Subscriber {
  /** Called synchronously, in offset order per channel; must not throw or wait. */
  onMessage(message: Message): void;
}

export interface ResolvedStart {
  position: Position;
  reset: ResetNotice | undefined;
}

/**
 * The middle of Herald: accepted messages go into the store, out through the broker, and back in here
 * to be fanned out to this node's subscribers. Transports only ever talk to the hub.
 */
export class Hub {
  readonly store: Store;
  readonly #broker: Broker;
  readonly #counters: Counters;
  readonly #subscribers = new ChannelSets<Subscriber>();
  #version = 0;

  constructor(store: Store, broker: Broker, counters: Counters) {
    this.store = store;
    this.#broker = broker;
    this.#counters = counters;
    broker.onMessages((messages) => this.#fanOut(messages));
  }

  /** Stores the batch (all or nothing), then announces the new messages. */
  async publish(batch: readonly AppendInput[]): Promise<AppendResult[]> {
    const results = await this.store.append(batch);
    const fresh = results.filter((r) => !r.isDuplicate).map((r) => r.message);
    if (fresh.length > 0) {
      this.#counters.published += fresh.length;
      this.#broker.publish(fresh);
    }
    return results;
  }

  /**
   * Where a subscription starting at `start` really starts: the last offset it has seen. When the
   * position lies outside the retained history of the current epoch, a reset notice says so.
   */
  resolve(channel: string, start: StartAt): ResolvedStart {
    const log = this.store.log(channel);
    const oldest = log.oldestOffset;
    const at = (offset: number, reset?: ResetNotice): ResolvedStart => {
      if (reset !== undefined) this.#counters.resets++;
      return { position: { epoch: log.epoch, offset }, reset };
    };
    if (start === 'head') return at(log.headOffset);
    if (start === 'beginning') return at(oldest - 1);
    const reset = (from: number, missed?: number): ResetNotice =>
      missed === undefined ? { channel, epoch: log.epoch, from } : { channel, epoch: log.epoch, from, missed };
    // Offset 0 means "saw nothing", which holds in any epoch.
    const isSameEpoch = start.epoch === log.epoch || start.offset === 0;
    if (!isSameEpoch) return at(oldest - 1, reset(oldest));
    // A position past the head means the store lost acknowledged messages (e.g. a power loss):
    // those offsets will be reused, so the client must hear that its view is no longer valid.
    if (start.offset > log.headOffset) return at(log.headOffset, reset(log.headOffset + 1));
    if (start.offset < oldest - 1) return at(oldest - 1, reset(oldest, oldest - 1 - start.offset));
    return at(start.offset);
  }

  /** Up to `limit` retained messages after `afterOffset`, from memory. */
  read(channel: string, afterOffset: number, limit: number): Message[] {
    return this.store.log(channel).after(afterOffset, limit);
  }

  attach(channel: string, subscriber: Subscriber): void {
    this.#subscribers.add(channel, subscriber);
  }

  detach(channel: string, subscriber: Subscriber): void {
    this.#subscribers.remove(channel, subscriber);
  }

  /** Applies retention and lets the store forget windows no subscriber here uses. */
  sweep(nowMs: number): void {
    this.#version++;
    this.store.sweep(nowMs, (channel) => this.#subscribers.has(channel));
  }

  /**
   * Changes whenever what a read returns may have changed (messages arrived, retention dropped some),
   * so an answer computed from reads can be shared until it does.
   */
  get version(): number {
    return this.#version;
  }

  subscriberCount(channel: string): number {
    return this.#subscribers.get(channel)?.size ?? 0;
  }

  /** Channels with at least one subscriber on this node, with their subscriber counts. */
  subscriberCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [channel, set] of this.#subscribers) counts.set(channel, set.size);
    return counts;
  }

  get subscriptionCount(): number {
    let total = 0;
    for (const set of this.#subscribers.values()) total += set.size;
    return total;
  }

  // Hot path: synchronous, no awaits, no encoding here (subscribers take cached frames).
  #fanOut(messages: readonly Message[]): void {
    this.#version++;
    for (const message of messages) {
      const set = this.#subscribers.get(message.channel);
      if (set === undefined) continue;
      for (const subscriber of set) subscriber.onMessage(message);
    }
  }
}
