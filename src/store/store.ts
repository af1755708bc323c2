import type { Message } from '../hub/message.js';
import type { ChannelLog } from './channel-log.js';

export interface AppendInput {
  channel: string;
  event?: string | undefined;
  /** The message's data, already JSON-encoded. */
  dataJson: string;
  idempotencyKey?: string | undefined;
}

export interface AppendResult {
  message: Message;
  /** True when the idempotency key was seen before: `message` is the original and nothing was appended. */
  isDuplicate: boolean;
}

export interface Retention {
  maxMessages: number;
  ttlMs: number;
}

/**
 * The log of every channel. A store is where a message is *kept*; it never delivers anything.
 */
export interface Store {
  readonly kind: string;
  /**
   * Appends the batch in order, all or nothing, giving each message the next offset of its channel.
   * Resolves once the batch is as durable as this store promises (see docs/protocol.md); rejects with
   * nothing stored. A message whose idempotencyKey its channel still retains resolves to the original.
   */
  append(batch: readonly AppendInput[]): Promise<AppendResult[]>;
  /**
   * The channel's retained window, in memory. Synchronous by contract: resuming a subscriber never
   * waits on a disk or the network. A channel never published to has an empty log.
   */
  log(channel: string): ChannelLog;
  /**
   * Applies the TTL retention and lets go of windows no one uses (a channel merely subscribed to, or
   * one the store can load again); `isInUse` says whether a channel has subscribers. Called from a
   * shared periodic sweep.
   */
  sweep(nowMs: number, isInUse: (channel: string) => boolean): void;
  /** Number of channels with a log in memory. */
  readonly channelCount: number;
  close(): void;
}
