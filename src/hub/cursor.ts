// A cursor is the whole state needed to resume a subscription, carried by the client: for each channel,
// the epoch and the offset of the last message seen. It is stateless on purpose, so any transport and
// any node can resume it. Wire form: one segment per channel, sorted by channel, joined by ".", each
// segment base64url("channel\nepoch\noffset"). A message's own segment is computed once and shared, so a
// one-channel subscription's cursor costs nothing per subscriber.

import { HeraldError } from '../http/errors.js';

export interface Position {
  epoch: string;
  /** Offset of the last message seen; 0 means "before the first message". */
  offset: number;
}

export const CHANNEL_PATTERN = /^[A-Za-z0-9_.:@/-]{1,200}$/;
const EPOCH_PATTERN = /^[A-Za-z0-9]{1,32}$/;
const OFFSET_PATTERN = /^(0|[1-9][0-9]{0,15})$/;
export const MAX_CHANNELS_PER_SUBSCRIPTION = 256;
const MAX_CURSOR_CHARS = MAX_CHANNELS_PER_SUBSCRIPTION * 300;

export function isValidChannel(name: unknown): name is string {
  return typeof name === 'string' && CHANNEL_PATTERN.test(name);
}

export function cursorSegment(channel: string, epoch: string, offset: number): string {
  return Buffer.from(`${channel}\n${epoch}\n${offset}`).toString('base64url');
}

/** Parses a cursor; throws `cursor_invalid` on anything this server could not have issued. */
export function decodeCursor(cursor: string): Map<string, Position> {
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_CHARS) throw new HeraldError('cursor_invalid');
  const positions = new Map<string, Position>();
  for (const segment of cursor.split('.')) {
    if (!/^[A-Za-z0-9_-]+$/.test(segment)) throw new HeraldError('cursor_invalid');
    const parts = Buffer.from(segment, 'base64url').toString('utf8').split('\n');
    if (parts.length !== 3) throw new HeraldError('cursor_invalid');
    const [channel, epoch, offset] = parts as [string, string, string];
    if (!CHANNEL_PATTERN.test(channel) || !EPOCH_PATTERN.test(epoch) || !OFFSET_PATTERN.test(offset)) {
      throw new HeraldError('cursor_invalid');
    }
    positions.set(channel, { epoch, offset: Number(offset) });
  }
  if (positions.size > MAX_CHANNELS_PER_SUBSCRIPTION) throw new HeraldError('too_many_channels');
  return positions;
}

export function encodeCursor(positions: ReadonlyMap<string, Position>): string {
  return [...positions.keys()]
    .sort()
    .map((channel) => {
      const { epoch, offset } = positions.get(channel)!;
      return cursorSegment(channel, epoch, offset);
    })
    .join('.');
}

/** A channel's position with its cursor segment, kept together so each costs one map entry. */
interface Entry extends Position {
  segment: string;
}

/**
 * The positions of one subscription (one connection's channels). `advance` is called for every message
 * delivered and refuses anything at or before the known position, so a message can never be delivered
 * twice, whatever order replay and live fan-out interleave in. One per connection: kept small.
 */
export class SubscriptionCursor {
  readonly #entries = new Map<string, Entry>();
  #sortedChannels: readonly string[] = [];
  /** Segments a client's resume cursor holds for channels not subscribed (yet); see `carry`. */
  #carried: Map<string, string> | undefined;
  #cached: string | undefined;

  get channels(): readonly string[] {
    return this.#sortedChannels;
  }

  get size(): number {
    return this.#entries.size;
  }

  has(channel: string): boolean {
    return this.#entries.has(channel);
  }

  position(channel: string): Position | undefined {
    return this.#entries.get(channel);
  }

  set(channel: string, { epoch, offset }: Position): void {
    if (!this.#entries.has(channel)) this.#sortedChannels = [...this.#sortedChannels, channel].sort();
    this.#entries.set(channel, { epoch, offset, segment: cursorSegment(channel, epoch, offset) });
    this.#carried?.delete(channel);
    this.#cached = undefined;
  }

  delete(channel: string): void {
    if (this.#carried?.delete(channel)) this.#cached = undefined;
    if (!this.#entries.delete(channel)) return;
    this.#sortedChannels = this.#sortedChannels.filter((c) => c !== channel);
    this.#cached = undefined;
  }

  /**
   * Keeps the positions `resumeCursor` holds for channels not subscribed here in every cursor this one
   * issues, until they are subscribed. A WebSocket client resumes channel by channel with one cursor;
   * without this, the envelopes replayed for its first channel would carry cursors without the others'
   * positions, and a client dropped before subscribing them would lose them. Replaces what an earlier
   * call carried, and stays within MAX_CHANNELS_PER_SUBSCRIPTION so the cursor stays valid.
   */
  carry(resumeCursor: ReadonlyMap<string, Position>): void {
    const carried = new Map<string, string>();
    for (const [channel, { epoch, offset }] of resumeCursor) {
      if (this.#entries.has(channel)) continue;
      if (this.#entries.size + carried.size >= MAX_CHANNELS_PER_SUBSCRIPTION) break;
      carried.set(channel, cursorSegment(channel, epoch, offset));
    }
    this.#carried = carried.size > 0 ? carried : undefined;
    this.#cached = undefined;
  }

  /** Moves the channel's position to `message`; false when the message is not new to this subscription. */
  advance(message: { channel: string; epoch: string; offset: number; cursorSegment: string }): boolean {
    const entry = this.#entries.get(message.channel);
    if (entry === undefined) return false;
    if (entry.epoch === message.epoch && message.offset <= entry.offset) return false;
    entry.epoch = message.epoch;
    entry.offset = message.offset;
    entry.segment = message.cursorSegment;
    this.#cached = undefined;
    return true;
  }

  toString(): string {
    if (this.#cached !== undefined) return this.#cached;
    const channels = this.#sortedChannels;
    if (this.#carried !== undefined && this.#carried.size > 0) {
      const segments = new Map(this.#carried);
      for (const [channel, entry] of this.#entries) segments.set(channel, entry.segment);
      this.#cached = [...segments.keys()].sort().map((c) => segments.get(c)!).join('.');
    } else if (channels.length === 1) {
      // The fan-out case: the same string as the message's own segment, so frames are shared.
      this.#cached = this.#entries.get(channels[0]!)!.segment;
    } else {
      this.#cached = channels.map((c) => this.#entries.get(c)!.segment).join('.');
    }
    return this.#cached;
  }
}
