import { randomBytes } from 'node:crypto';
import { Message } from '../hub/message.js';

export function newEpoch(): string {
  // 12 base62-ish characters: unique enough that two lost histories never share an epoch.
  return randomBytes(9).toString('base64url').replace(/[-_]/g, 'x');
}

/**
 * The retained window of one channel, in memory: contiguous offsets from `oldestOffset` to
 * `headOffset`. Every resume and replay is answered from here; stores only make it durable.
 */
export class ChannelLog {
  readonly channel: string;
  readonly epoch: string;
  /** Offset of the newest message ever accepted (0: none yet). Never goes back within an epoch. */
  headOffset: number;
  #messages: Message[] = [];
  #start = 0;
  readonly #byIdempotencyKey = new Map<string, number>();

  constructor(channel: string, epoch: string, headOffset = 0) {
    this.channel = channel;
    this.epoch = epoch;
    this.headOffset = headOffset;
  }

  get size(): number {
    return this.#messages.length - this.#start;
  }

  /** Offset of the oldest retained message; headOffset + 1 when nothing is retained. */
  get oldestOffset(): number {
    return this.size === 0 ? this.headOffset + 1 : this.#messages[this.#start]!.offset;
  }

  offsetForIdempotencyKey(key: string): number | undefined {
    return this.#byIdempotencyKey.get(key);
  }

  /** Appends the next message; its offset must be headOffset + 1. */
  push(message: Message): void {
    if (message.offset !== this.headOffset + 1) {
      throw new Error(`channel ${this.channel}: offset ${message.offset} after ${this.headOffset}`);
    }
    this.#messages.push(message);
    this.headOffset = message.offset;
    if (message.idempotencyKey !== undefined) this.#byIdempotencyKey.set(message.idempotencyKey, message.offset);
  }

  /** Up to `limit` messages with offset > afterOffset, oldest first. */
  after(afterOffset: number, limit: number): Message[] {
    const from = Math.max(afterOffset + 1, this.oldestOffset);
    if (from > this.headOffset) return [];
    const index = this.#start + (from - this.oldestOffset);
    return this.#messages.slice(index, Math.min(index + limit, this.#messages.length));
  }

  /** Up to `limit` messages with offset < beforeOffset, newest first. */
  before(beforeOffset: number, limit: number): Message[] {
    const until = Math.min(beforeOffset - 1, this.headOffset);
    if (until < this.oldestOffset) return [];
    const end = this.#start + (until - this.oldestOffset) + 1;
    return this.#messages.slice(Math.max(this.#start, end - limit), end).reverse();
  }

  /** Drops messages beyond `maxSize` or published before `minPublishedAtMs`; returns how many went. */
  trim(maxSize: number, minPublishedAtMs: number): number {
    let dropped = 0;
    while (
      this.size > 0 &&
      (this.size > maxSize || this.#messages[this.#start]!.publishedAtMs < minPublishedAtMs)
    ) {
      const gone = this.#messages[this.#start]!;
      this.#messages[this.#start] = undefined as unknown as Message;
      this.#start++;
      dropped++;
      if (gone.idempotencyKey !== undefined) this.#byIdempotencyKey.delete(gone.idempotencyKey);
    }
    // Compact lazily so trimming stays O(1) amortised without an unbounded dead prefix.
    if (this.#start > 64 && this.#start * 2 > this.#messages.length) {
      this.#messages = this.#messages.slice(this.#start);
      this.#start = 0;
    }
    return dropped;
  }
}
