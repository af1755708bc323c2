// What the client knows of each subscribed channel, and the delivery rules that must survive every
// reconnect: the newest cursor naming each channel, the last offset delivered (the dedupe and gap
// guard), and gap repair. The connection lifecycle (client.ts) feeds it entries from whatever wire is
// current; this file never knows which one.
import { HeraldError, isFatal } from './errors.js';
import { getJson, type PollAnswer } from './http.js';
import type { Entry } from './transport.js';
import type { Envelope, ResetInfo, SubscribeOptions } from './types.js';

/** What the client knows of one subscribed channel. */
export interface Channel {
  since: 'head' | 'beginning';
  handlers: Set<SubscribeOptions<any>>;
  /** The last message (or reset) delivered: dedupe and gap detection compare against it. */
  epoch?: string;
  offset?: number;
  /** The newest cursor naming this channel, and its sequence number (newer cursors win a merge). */
  cursor?: string;
  seq: number;
  /** The cursor of this channel's own last entry: exact for it, so it can fetch a gap. */
  own?: string;
  /** Entries held back while a gap is fetched, with the channels each one's cursor covers. */
  held?: [Entry, string[]][];
  ready: Promise<void>;
  /** Settles `ready`: the start is fixed (a cursor, or `beginning`), or the subscription is over. */
  settle(): void;
  /** Subscribed with presence events (a handler of the first subscription has onJoin or onLeave). */
  hasPresence: boolean;
}

/** What the table needs from the client around it. */
export interface ChannelHost {
  readonly url: string;
  fetch: typeof fetch | undefined;
  token(): string | undefined;
  isClosed(): boolean;
  /** Backoff delay before repair attempt number `attempt`. */
  backoffMs(attempt: number): number;
  /** An envelope carried this event name (SSE must listen for it). */
  learn(event: string): void;
  /** The server refused a channel's gap repair for good. */
  refused(error: HeraldError, channel: string): void;
}

const REPAIR_TIMEOUT_MS = 10_000;

export class ChannelTable {
  readonly #host: ChannelHost;
  readonly #channels = new Map<string, Channel>();
  #seq = 0;

  constructor(host: ChannelHost) {
    this.#host = host;
  }

  get size(): number {
    return this.#channels.size;
  }

  get(channel: string): Channel | undefined {
    return this.#channels.get(channel);
  }

  set(channel: string, ch: Channel): void {
    this.#channels.set(channel, ch);
  }

  delete(channel: string): void {
    this.#channels.delete(channel);
  }

  names(): string[] {
    return [...this.#channels.keys()];
  }

  values(): IterableIterator<Channel> {
    return this.#channels.values();
  }

  entries(): IterableIterator<[string, Channel]> {
    return this.#channels.entries();
  }

  /** Settles every subscription and forgets every channel (the client is closed). */
  clear(): void {
    for (const ch of this.#channels.values()) ch.settle();
    this.#channels.clear();
  }

  /** A sequence number newer than every cursor seen so far. */
  nextSeq(): number {
    return ++this.#seq;
  }

  /**
   * The query of an HTTP subscription. [spec] protocol.md "Cursors": a cursor is base64url segments
   * joined by "."; joining the newest cursor of each channel, oldest first, resumes every channel from
   * its newest position (a channel named twice takes its last segment). One cursor when all agree.
   */
  query(channels: readonly string[]): URLSearchParams {
    const newest = new Map<string, number>();
    let isFromBeginning = false;
    for (const channel of channels) {
      const ch = this.#channels.get(channel);
      if (ch?.cursor !== undefined) newest.set(ch.cursor, Math.max(newest.get(ch.cursor) ?? 0, ch.seq));
      else if (ch?.since === 'beginning') isFromBeginning = true;
    }
    const params = new URLSearchParams({ channel: channels.join(',') });
    const cursor = [...newest].sort((a, b) => a[1] - b[1]).map(([c]) => c).join('.');
    if (cursor !== '') params.set('cursor', cursor);
    if (isFromBeginning) params.set('since', 'beginning');
    if (channels.some((c) => this.#channels.get(c)?.hasPresence)) params.set('presence', '1');
    const token = this.#host.token();
    if (token !== undefined) params.set('token', token);
    return params;
  }

  /** `cursor` is the newest for every channel of `covered` (it names each of them). */
  cover(cursor: string, covered: Iterable<string>): void {
    const seq = ++this.#seq;
    for (const channel of covered) {
      const ch = this.#channels.get(channel);
      if (ch === undefined) continue;
      ch.cursor = cursor;
      ch.seq = seq;
      ch.settle();
    }
  }

  /** Delivers an entry to its channel's handlers once, in order, fetching any gap first. */
  receive(entry: Entry, covered: Iterable<string>, isRepair = false): void {
    const { channel } = entry;
    const ch = this.#channels.get(channel);
    if (ch === undefined) return; // unsubscribed meanwhile
    if (ch.held !== undefined) {
      ch.held.push([entry, [...covered]]);
      return;
    }
    if ('from' in entry) {
      // [spec] "Gaps are never silent": delivery continues from `from`.
      ch.epoch = entry.epoch;
      ch.offset = entry.from - 1;
      ch.own = entry.cursor;
      this.cover(entry.cursor, covered);
      const info: ResetInfo = { channel, epoch: entry.epoch, from: entry.from, cursor: entry.cursor };
      if (entry.missed !== undefined) info.missed = entry.missed;
      for (const handler of ch.handlers) if (handler.onReset) call(() => handler.onReset!(info));
      return;
    }
    const last = ch.epoch === entry.epoch ? ch.offset : undefined;
    // The last guard against duplicates: replays after a reconnect, overlapping wires, a repaired gap.
    if (last !== undefined && entry.offset <= last) return;
    // Offsets have no gaps within an epoch, and a gap the server knows of comes with a reset: this one
    // was lost on the way (an SSE event name nobody listened for). Fetch it before going on.
    if (last !== undefined && entry.offset > last + 1 && !isRepair && ch.own !== undefined) {
      ch.held = [[entry, [...covered]]];
      void this.#repair(channel, ch, entry.offset - last - 1);
      return;
    }
    ch.epoch = entry.epoch;
    ch.offset = entry.offset;
    ch.own = entry.cursor;
    this.cover(entry.cursor, covered);
    if (entry.event !== undefined) this.#host.learn(entry.event);
    const message: Envelope = { channel, offset: entry.offset, epoch: entry.epoch, data: entry.data, cursor: entry.cursor };
    if (entry.event !== undefined) message.event = entry.event;
    for (const handler of ch.handlers) call(() => handler.onMessage(message));
  }

  /** Fetches the `missing` entries after the channel's own cursor, then lets the held ones through. */
  async #repair(channel: string, ch: Channel, missing: number): Promise<void> {
    const host = this.#host;
    for (let attempt = 0; !host.isClosed() && this.#channels.get(channel) === ch; attempt++) {
      try {
        const query = new URLSearchParams({ channel, cursor: ch.own!, timeout: '0', limit: String(Math.min(missing, 1000)) });
        const token = host.token();
        if (token !== undefined) query.set('token', token);
        const answer = await getJson<PollAnswer>(host.fetch!, `${host.url}/v1/poll?${query}`, REPAIR_TIMEOUT_MS);
        if (this.#channels.get(channel) !== ch) return; // unsubscribed meanwhile
        this.#release(ch, answer.messages);
        return;
      } catch (error) {
        if (isFatal(error)) {
          host.refused(error as HeraldError, channel);
          this.#release(ch, []);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, host.backoffMs(attempt)));
      }
    }
  }

  #release(ch: Channel, repaired: Entry[]): void {
    const held = ch.held ?? [];
    ch.held = undefined;
    for (const entry of repaired) this.receive(entry, [entry.channel], true);
    // Held entries pass the guard again, so a later gap behind this one is fetched too; if the server
    // had nothing to fill this gap with, the gap is its own (it would have sent a reset): let them pass.
    const isRepair = repaired.length === 0;
    for (const [entry, covered] of held) this.receive(entry, covered, isRepair);
  }
}

/**
 * The segment of `cursor` that names `channel`, else the whole cursor. [spec] "Cursors": each segment is
 * base64url("channel\nepoch\noffset"). A cursor taken from a multi-channel connection also names other
 * channels; kept whole as one channel's start, its newer sequence would move those channels too.
 */
export function segmentOf(cursor: string, channel: string): string {
  const prefix = `${channel}\n`;
  return cursor.split('.').find((segment) => decodeSegment(segment).startsWith(prefix)) ?? cursor;
}

function decodeSegment(segment: string): string {
  try {
    return atob(segment.replace(/-/g, '+').replace(/_/g, '/'));
  } catch {
    return '';
  }
}

/** Runs application code; its exception is rethrown on its own, never breaking delivery to the rest. */
export function call(fn: () => void): void {
  try {
    fn();
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}
