import type { AppendInput, AppendResult, Engine } from '../engine/engine.js';
import { HeraldError } from '../errors.js';
import type { ChannelLog } from '../store/channel-log.js';
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
  /**
   * The channel's history started over under the subscriber (the engine lost it, or it no longer
   * reaches the window): what comes next continues from `notice.from` in `notice.epoch`.
   */
  onReset(notice: ResetNotice): void;
}

export interface ResolvedStart {
  position: Position;
  reset: ResetNotice | undefined;
}

/**
 * The middle of Herald: accepted messages go into the engine (which stores them and carries them to
 * every node), and come back in here to be fanned out to this node's subscribers. Transports only
 * ever talk to the hub; the hub never knows which engine runs.
 *
 * Reads are synchronous, from this node's window of each channel, so that a subscriber's last read and
 * its attach are one step. A channel's window may first need loading (the engine may be across the
 * network): callers `await hub.ready(channels)` before resolving, reading or attaching.
 */
export class Hub {
  readonly engine: Engine;
  readonly #counters: Counters;
  readonly #subscribers = new ChannelSets<Subscriber>();
  #version = 0;

  constructor(engine: Engine, counters: Counters) {
    this.engine = engine;
    this.#counters = counters;
    engine.connect({
      onMessages: (messages) => this.#fanOut(messages),
      onReset: (notice) => this.#reset(notice),
    });
  }

  /** Stores the batch (atomic as the engine says); the engine announces the new messages. */
  async publish(batch: readonly AppendInput[]): Promise<AppendResult[]> {
    const results = await this.engine.publish(batch);
    for (const result of results) if (!result.isDuplicate) this.#counters.published++;
    return results;
  }

  /**
   * Resolves once every channel's window is on this node; undefined (nothing to wait for) when they
   * all are already, so the common case stays synchronous.
   */
  ready(channels: Iterable<string>): Promise<void> | undefined {
    let missing: string[] | undefined;
    for (const channel of channels) {
      if (this.engine.window(channel) === undefined) (missing ??= []).push(channel);
    }
    return missing === undefined ? undefined : this.engine.load(missing);
  }

  /**
   * `ready` for subscriptions starting at `starts`. On an engine elsewhere this node's window may lag
   * behind the engine (a cursor handed out by a faster node): a position past the window's head, or
   * of another epoch, is first caught up with the engine, so only what the engine itself no longer
   * has is a reset.
   */
  readyFor(starts: ReadonlyMap<string, StartAt>): Promise<void> | undefined {
    const loading = this.ready(starts.keys());
    return loading === undefined ? this.#catchUpFor(starts) : loading.then(() => this.#catchUpFor(starts));
  }

  #catchUpFor(starts: ReadonlyMap<string, StartAt>): Promise<void> | undefined {
    let behind: string[] | undefined;
    for (const [channel, start] of starts) {
      const log = this.engine.window(channel);
      if (log === undefined) throw new HeraldError('engine_unavailable', `The window of ${channel} could not be loaded.`);
      // Past the head, in another epoch (this node may not have heard of a new one yet), or before the
      // window (a reset: told as the engine sees it, not as this node's cache last did).
      if (typeof start !== 'object' || start.offset === 0) continue;
      const isOutside = start.offset > log.headOffset || start.offset < log.oldestOffset - 1 || start.epoch !== log.epoch;
      if (isOutside) (behind ??= []).push(channel);
    }
    return behind === undefined ? undefined : this.engine.catchUp(behind);
  }

  /** The channel's window; only after `ready` resolved for it. */
  window(channel: string): ChannelLog {
    const log = this.engine.window(channel);
    if (log === undefined) throw new Error(`channel ${channel} read before hub.ready()`);
    return log;
  }

  /**
   * Where a subscription starting at `start` really starts: the last offset it has seen. When the
   * position lies outside the retained history of the current epoch, a reset notice says so.
   */
  resolve(channel: string, start: StartAt): ResolvedStart {
    const log = this.window(channel);
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
    return this.window(channel).after(afterOffset, limit);
  }

  attach(channel: string, subscriber: Subscriber): void {
    this.#subscribers.add(channel, subscriber);
  }

  detach(channel: string, subscriber: Subscriber): void {
    this.#subscribers.remove(channel, subscriber);
  }

  /** Applies retention and lets the engine forget windows no subscriber here uses. */
  sweep(nowMs: number): void {
    this.#version++;
    this.engine.sweep(nowMs, (channel) => this.#subscribers.has(channel));
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

  #reset(notice: ResetNotice): void {
    this.#version++;
    const set = this.#subscribers.get(notice.channel);
    if (set === undefined) return;
    this.#counters.resets += set.size;
    for (const subscriber of [...set]) subscriber.onReset(notice);
  }
}
