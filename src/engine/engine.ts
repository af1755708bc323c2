// The engine: the one place that owns what must be single-sourced across nodes — offsets (dense,
// gap-free, per channel), epochs, idempotency keys, retention, history, and fan-out between nodes.
// The hub talks to an Engine and nothing else; the hub, transports and HTTP edge never know which
// engine runs. Two shapes exist:
//   - EmbeddedEngine (embedded.ts): this process is the truth (SQLite or memory store, local fan-out).
//   - ReplicaEngine (replica.ts): the truth is elsewhere (Redis, the primary of `--workers`); this
//     node keeps a bounded window per active channel as a cache, fed by the engine's fan-out and
//     repaired from its history when the fan-out loses something.
import { HeraldError } from '../errors.js';
import type { ResetNotice } from '../hub/hub.js';
import type { Message } from '../hub/message.js';
import type { AppendInput, AppendResult } from '../store/store.js';
import type { ChannelLog } from '../store/channel-log.js';

export type { AppendInput, AppendResult };

/** What the engine tells the hub. Both are called synchronously, in offset order per channel. */
export interface EngineEvents {
  /** New messages, contiguous per channel with what the channel's window held before. */
  onMessages(messages: readonly Message[]): void;
  /**
   * The channel's history was lost (a new epoch) or no longer reaches what the window held: the
   * window now starts over and every live subscriber of the channel must be told.
   */
  onReset(notice: ResetNotice): void;
}

export type EngineHealth = { status: 'ok' } | { status: 'degraded'; reason: string };

/** Node-to-node notices beside the messages (presence, sessions, stats): small, best effort. */
export interface ControlBus {
  /** This node's id, unique among the nodes sharing the engine. */
  readonly nodeId: string;
  /** Sends `payload` to every node on `topic`, this one included. */
  broadcast(topic: string, payload: string): void;
  /** Sends `payload` to one node (by its nodeId) on `topic`. */
  sendTo(nodeId: string, topic: string, payload: string): void;
  /** Registers the handler of `topic` (one per topic). */
  on(topic: string, handler: (payload: string, fromNodeId: string) => void): void;
}

export interface Engine {
  /** 'sqlite', 'memory', 'redis', 'redis-cluster', 'worker'. */
  readonly kind: string;
  readonly bus: ControlBus;
  /** Registers the hub; called once, before anything is published. */
  connect(events: EngineEvents): void;
  /**
   * Stores the batch and resolves with a result per message once it is as durable as the engine
   * promises. Atomic per channel at least (what more, each engine says); rejects with a HeraldError
   * (`engine_unavailable`) with nothing stored when the engine cannot be reached.
   */
  publish(batch: readonly AppendInput[]): Promise<AppendResult[]>;
  /**
   * This node's window of `channel` (its retained messages, epoch and head), or undefined when it is
   * not loaded: then `load` first. Synchronous so that reading and attaching a subscriber happen in one
   * step, with no live message able to slip between.
   */
  window(channel: string): ChannelLog | undefined;
  /** Loads the windows of `channels` and starts their fan-out to this node; resolves when `window` has them. */
  load(channels: readonly string[]): Promise<void>;
  /**
   * Brings loaded windows up to the engine's head now (instead of waiting for the fan-out): a client
   * resuming here may hold a cursor from a node that is ahead. A no-op where the window is the truth.
   */
  catchUp(channels: readonly string[]): Promise<void>;
  /**
   * Applies time-based retention and lets go of windows no subscriber uses (`isInUse`): called from
   * the shared sweep.
   */
  sweep(nowMs: number, isInUse: (channel: string) => boolean): void;
  /** Number of channel windows in memory on this node. */
  readonly channelCount: number;
  health(): EngineHealth;
  close(): Promise<void>;
}

/**
 * A batch stored in part, where the engine is atomic per channel only (a Redis Cluster): `results`
 * has each stored message's result, undefined where it was not stored.
 */
export class PartialPublishError extends HeraldError {
  readonly results: (AppendResult | undefined)[];
  readonly #channels: string[];

  constructor(results: (AppendResult | undefined)[], channels: string[], detail: string) {
    super('engine_unavailable', `Part of the batch was stored (each channel is all or nothing on a Redis Cluster): ${detail}`);
    this.results = results;
    this.#channels = channels;
  }

  /** The error, and per message what became of it: its offset where stored, `stored: false` where not. */
  override toJSON(): { error: { code: 'engine_unavailable'; message: string } } {
    const results = this.results.map((r, i) =>
      r === undefined ? { channel: this.#channels[i], stored: false } : { channel: r.message.channel, offset: r.message.offset, epoch: r.message.epoch, ...(r.isDuplicate ? { duplicate: true } : {}) },
    );
    return { error: { code: 'engine_unavailable', message: this.message }, results } as ReturnType<PartialPublishError['toJSON']>;
  }
}
