import { cursorSegment } from './cursor.js';

/**
 * One wire format (SSE block, WebSocket payload, NDJSON line…). `id` indexes the per-message frame
 * cache; a negative id is never cached.
 */
export interface FrameFormat {
  readonly id: number;
  encode(message: Message, cursor: string): Buffer;
}

let nextFormatId = 0;
/** Defines a format; only a bounded number of formats may be cached, since each one costs every message. */
export function defineFormat(encode: (message: Message, cursor: string) => Buffer, isCached = true): FrameFormat {
  return { id: isCached ? nextFormatId++ : -1, encode };
}

/**
 * A stored message. Immutable once it has an offset; everything a transport writes about it is encoded
 * once per wire format and shared by every subscriber (hot-path rule 1).
 */
export class Message {
  readonly channel: string;
  readonly offset: number;
  readonly epoch: string;
  readonly event: string | undefined;
  /** The `data` value, JSON-encoded once at publish. */
  readonly dataJson: string;
  readonly publishedAtMs: number;
  readonly idempotencyKey: string | undefined;

  #cursorSegment: string | undefined;
  #envelopeHead: string | undefined;
  readonly #frames: (Buffer | undefined)[] = [];

  constructor(fields: {
    channel: string;
    offset: number;
    epoch: string;
    event?: string | undefined;
    dataJson: string;
    publishedAtMs: number;
    idempotencyKey?: string | undefined;
  }) {
    this.channel = fields.channel;
    this.offset = fields.offset;
    this.epoch = fields.epoch;
    this.event = fields.event;
    this.dataJson = fields.dataJson;
    this.publishedAtMs = fields.publishedAtMs;
    this.idempotencyKey = fields.idempotencyKey;
  }

  /** This message's part of a cursor; on its own it is the cursor of a one-channel subscription. */
  get cursorSegment(): string {
    return (this.#cursorSegment ??= cursorSegment(this.channel, this.epoch, this.offset));
  }

  /** The envelope JSON up to the cursor's opening quote: `{"channel":…,"data":…,"cursor":"`. */
  get envelopeHead(): string {
    if (this.#envelopeHead === undefined) {
      const event = this.event === undefined ? '' : `,"event":${JSON.stringify(this.event)}`;
      this.#envelopeHead =
        `{"channel":${JSON.stringify(this.channel)},"offset":${this.offset},"epoch":"${this.epoch}"` +
        `${event},"data":${this.dataJson},"cursor":"`;
    }
    return this.#envelopeHead;
  }

  /** The envelope as a JSON string (channel, offset, epoch, event?, data, cursor). */
  envelope(cursor: string): string {
    return `${this.envelopeHead}${cursor}"}`;
  }

  /**
   * The bytes of this message in `format` for a subscription whose cursor is `cursor`. One-channel
   * subscriptions (the fan-out case) all share one cached buffer; a multi-channel subscription's cursor
   * names other channels too, so its frame is built for it.
   */
  frame(format: FrameFormat, cursor: string): Buffer {
    if (format.id < 0 || cursor !== this.cursorSegment) return format.encode(this, cursor);
    let bytes = this.#frames[format.id];
    if (bytes === undefined) {
      bytes = format.encode(this, cursor);
      this.#frames[format.id] = bytes;
    }
    return bytes;
  }
}
