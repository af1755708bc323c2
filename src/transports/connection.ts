import { SubscriptionCursor } from '../hub/cursor.js';
import type { ResetNotice, StartAt, Subscriber } from '../hub/hub.js';
import type { FrameFormat, Message } from '../hub/message.js';
import type { TransportName } from '../metrics.js';
import type { TransportContext } from './transport.js';
import type { ErrorCode } from '../http/errors.js';

/**
 * A long-lived client connection of any push transport (WebSocket, SSE, streams): its channels, its
 * cursor, and the bounded write path. Subclasses only say how bytes reach the wire.
 */
export abstract class Connection implements Subscriber {
  readonly cursor = new SubscriptionCursor();
  protected readonly ctx: TransportContext;
  readonly #transport: TransportName;
  readonly #format: FrameFormat;
  #isClosed = false;

  constructor(ctx: TransportContext, transport: TransportName, format: FrameFormat) {
    this.ctx = ctx;
    this.#transport = transport;
    this.#format = format;
    ctx.counters.connections[transport]++;
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Bytes queued for this client and not yet taken by the kernel. */
  protected abstract get bufferedBytes(): number;
  protected abstract send(bytes: Buffer): void;
  protected abstract resetFrame(notice: ResetNotice, cursor: string): Buffer;
  /** Ends the wire; `reason` is why, when the server ends it. */
  protected abstract end(reason: ErrorCode | undefined): void;

  /**
   * Subscribes to every channel, replaying what each missed, then live. All positions enter the cursor
   * first, so every cursor sent during replay already names every channel of the subscription.
   * Replay and attach happen in one synchronous step: no live message can slip between them.
   */
  subscribe(starts: ReadonlyMap<string, StartAt>): void {
    const resets = new Map<string, ResetNotice>();
    for (const [channel, start] of starts) {
      const { position, reset } = this.ctx.hub.resolve(channel, start);
      this.cursor.set(channel, position);
      if (reset !== undefined) resets.set(channel, reset);
    }
    for (const channel of starts.keys()) {
      const { offset } = this.cursor.position(channel)!;
      const reset = resets.get(channel);
      if (reset !== undefined) this.write(this.resetFrame(reset, this.cursor.toString()));
      for (const message of this.ctx.hub.read(channel, offset, Number.MAX_SAFE_INTEGER)) {
        if (this.#isClosed) return;
        this.onMessage(message);
      }
      if (this.#isClosed) return;
      this.ctx.hub.attach(channel, this);
    }
  }

  unsubscribe(channel: string): void {
    this.ctx.hub.detach(channel, this);
    this.cursor.delete(channel);
  }

  onMessage(message: Message): void {
    if (!this.cursor.advance(message)) return;
    this.write(message.frame(this.#format, this.cursor.toString()));
    this.ctx.counters.delivered[this.#transport]++;
  }

  /** Writes, and cuts the client once more than the configured bytes wait unsent (it resumes by cursor). */
  protected write(bytes: Buffer): void {
    if (this.#isClosed) return;
    this.send(bytes);
    if (this.bufferedBytes > this.ctx.config.maxBufferedBytes) {
      this.ctx.counters.slowConsumerCuts[this.#transport]++;
      this.close('slow_consumer');
    }
  }

  /** Releases everything the connection holds; safe to call more than once. */
  close(reason?: ErrorCode): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    for (const channel of this.cursor.channels) this.ctx.hub.detach(channel, this);
    this.ctx.counters.connections[this.#transport]--;
    this.end(reason);
  }
}
