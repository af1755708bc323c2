// A cursor is the whole state needed to resume a subscription, carried by the client: for each channel,
// the epoch and the offset of the last message seen. It is stateless on purpose, so any transport and
// any node can resume it. Wire form: one segment per channel, sorted by channel, joined by ".", each
// segment base64url("channel\nepoch\noffset"). A message's own segment is computed once and shared, so a
// one-channel subscription's cursor costs nothing per subscriber.

import { HeraldError } from '../errors.js';

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

const NO_CHANNELS: readonly string[] = Object.freeze([]);

/**
 * The positions of one subscription (one connection's channels). `advance` is called for every message
 * delivered and refuses anything at or before the known position, so a message can never be delivered
 * twice, whatever order replay and live fan-out interleave in. One per connection: kept small.
 *
 * Nearly every connection and poll follows one channel, so that channel, its position and its segment
 * are plain fields: no Map, no entry object, no channel array, and a delivery touches only this object.
 * A Map of entries exists only while two channels or more are subscribed.
 */
export class SubscriptionCursor {
  /** The one subscribed channel; undefined when none is, or when #entries holds two or more. */
  #soleChannel: string | undefined;
  #soleEpoch = '';
  #soleOffset = 0;
  #soleSegment = '';
  /** Every channel's entry while two or more are subscribed; undefined otherwise. */
  #entries: Map<string, Entry> | undefined;
  /** The channels of #entries, sorted; kept only alongside #entries. */
  #sortedChannels: readonly string[] = NO_CHANNELS;
  /** Segments a client's resume cursor holds for channels not subscribed (yet); see `carry`. */
  #carried: Map<string, string> | undefined;
  #cached: string | undefined;

  /** The subscribed channels, sorted. */
  get channels(): readonly string[] {
    // A one-channel cursor keeps no array: callers read the list on subscribe and close, not per message.
    return this.#soleChannel !== undefined ? [this.#soleChannel] : this.#sortedChannels;
  }

  get size(): number {
    if (this.#soleChannel !== undefined) return 1;
    return this.#entries?.size ?? 0;
  }

  has(channel: string): boolean {
    if (this.#soleChannel !== undefined) return channel === this.#soleChannel;
    return this.#entries?.has(channel) ?? false;
  }

  /** The channel's position as it is now (a snapshot for a one-channel cursor). */
  position(channel: string): Position | undefined {
    if (this.#soleChannel !== undefined) {
      return channel === this.#soleChannel ? { epoch: this.#soleEpoch, offset: this.#soleOffset } : undefined;
    }
    return this.#entries?.get(channel);
  }

  set(channel: string, { epoch, offset }: Position): void {
    const segment = cursorSegment(channel, epoch, offset);
    if (this.#entries !== undefined) {
      if (!this.#entries.has(channel)) this.#sortedChannels = [...this.#sortedChannels, channel].sort();
      this.#entries.set(channel, { epoch, offset, segment });
    } else if (this.#soleChannel === undefined || this.#soleChannel === channel) {
      this.#soleChannel = channel;
      this.#soleEpoch = epoch;
      this.#soleOffset = offset;
      this.#soleSegment = segment;
    } else {
      // A second channel: from here on both live in the map.
      this.#entries = new Map([
        [this.#soleChannel, { epoch: this.#soleEpoch, offset: this.#soleOffset, segment: this.#soleSegment }],
        [channel, { epoch, offset, segment }],
      ]);
      this.#sortedChannels = [this.#soleChannel, channel].sort();
      this.#clearSole();
    }
    this.#carried?.delete(channel);
    this.#cached = undefined;
  }

  delete(channel: string): void {
    if (this.#carried?.delete(channel)) this.#cached = undefined;
    if (this.#soleChannel !== undefined) {
      if (channel !== this.#soleChannel) return;
      this.#clearSole();
    } else {
      if (this.#entries === undefined || !this.#entries.delete(channel)) return;
      this.#sortedChannels = this.#sortedChannels.filter((c) => c !== channel);
      if (this.#entries.size === 1) {
        // Back to one channel: back to plain fields, and the map is freed.
        const sole = this.#sortedChannels[0]!;
        const entry = this.#entries.get(sole)!;
        this.#entries = undefined;
        this.#sortedChannels = NO_CHANNELS;
        this.#soleChannel = sole;
        this.#soleEpoch = entry.epoch;
        this.#soleOffset = entry.offset;
        this.#soleSegment = entry.segment;
      }
    }
    this.#cached = undefined;
  }

  #clearSole(): void {
    this.#soleChannel = undefined;
    this.#soleEpoch = '';
    this.#soleOffset = 0;
    this.#soleSegment = '';
  }

  /**
   * Keeps the positions `resumeCursor` holds for channels not subscribed here in every cursor this one
   * issues, until they are subscribed. A WebSocket client resumes channel by channel with one cursor;
   * without this, the envelopes replayed for its first channel would carry cursors without the others'
   * positions, and a client dropped before subscribing them would lose them. Replaces what an earlier
   * call carried, and stays within MAX_CHANNELS_PER_SUBSCRIPTION so the cursor stays valid.
   */
  carry(resumeCursor: ReadonlyMap<string, Position>): void {
    let carried: Map<string, string> | undefined;
    const size = this.size;
    for (const [channel, { epoch, offset }] of resumeCursor) {
      if (this.has(channel)) continue;
      if (size + (carried?.size ?? 0) >= MAX_CHANNELS_PER_SUBSCRIPTION) break;
      carried ??= new Map();
      carried.set(channel, cursorSegment(channel, epoch, offset));
    }
    this.#carried = carried;
    this.#cached = undefined;
  }

  /** Moves the channel's position to `message`; false when the message is not new to this subscription. */
  advance(message: { channel: string; epoch: string; offset: number; cursorSegment: string }): boolean {
    if (this.#soleChannel !== undefined) {
      if (message.channel !== this.#soleChannel) return false;
      if (this.#soleEpoch === message.epoch && message.offset <= this.#soleOffset) return false;
      this.#soleEpoch = message.epoch;
      this.#soleOffset = message.offset;
      this.#soleSegment = message.cursorSegment;
      this.#cached = undefined;
      return true;
    }
    const entry = this.#entries?.get(message.channel);
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
    if (this.#carried !== undefined && this.#carried.size > 0) {
      const segments = new Map(this.#carried);
      if (this.#soleChannel !== undefined) segments.set(this.#soleChannel, this.#soleSegment);
      for (const [channel, entry] of this.#entries ?? []) segments.set(channel, entry.segment);
      this.#cached = [...segments.keys()].sort().map((c) => segments.get(c)!).join('.');
    } else if (this.#soleChannel !== undefined) {
      // The fan-out case: the same string as the message's own segment, so frames are shared.
      this.#cached = this.#soleSegment;
    } else {
      const entries = this.#entries;
      this.#cached = entries === undefined ? '' : this.#sortedChannels.map((c) => entries.get(c)!.segment).join('.');
    }
    return this.#cached;
  }
}
