import type { Access } from '../auth/access.js';
import type { Expiring } from '../auth/expiry.js';
import type { ErrorCode } from '../errors.js';
import { SubscriptionCursor } from '../hub/cursor.js';
import type { ResetNotice, ResolvedStart, StartAt, Subscriber } from '../hub/hub.js';
import type { FrameFormat, Message } from '../hub/message.js';
import type { TransportName } from '../metrics.js';
import type { PresenceEvent, PresenceListener } from '../presence/fan-out.js';
import type { TransportContext } from './transport.js';

/** Messages read from history at a time while replaying. */
const REPLAY_BATCH = 64;

let nextConnectionId = 0;

/**
 * A long-lived client connection of any push transport (WebSocket, SSE, streams): its channels, its
 * cursor, its access (token, expiry, presence), and the bounded write path. Subclasses only say how
 * bytes reach the wire.
 */

export abstract class Connection implements Subscriber, Expiring, PresenceListener {
  readonly cursor = new SubscriptionCursor();
  /** Names this connection in presence (one user may have several). */
  readonly connectionId = `c${++nextConnectionId}`;
  /** Channels where this connection shows in presence. */
  readonly #present = new Set<string>();
  /** Channels whose join/leave events this connection asked for. */
  readonly #listening = new Set<string>();
  protected readonly ctx: TransportContext;
  readonly #transport: TransportName;
  readonly #format: FrameFormat;
  #isClosed = false;
  #access: Access;
  /** Set once the token expired and the notice went out: the grace period is running. */
  #isInGrace = false;

  constructor(ctx: TransportContext, transport: TransportName, format: FrameFormat, access: Access) {
    this.ctx = ctx;
    this.#transport = transport;
    this.#format = format;
    this.#access = access;
    ctx.counters.connections[transport]++;
    this.#scheduleExpiry();
  }

  /** What this connection's client may do. */
  get access(): Access {
    return this.#access;
  }

  /** Replaces the client's access (a WebSocket auth or refresh): a fresh token ends any grace period. */
  protected setAccess(access: Access): void {
    this.#access = access;
    this.#isInGrace = false;
    this.#scheduleExpiry();
    for (const channel of [...this.#present]) {
      if (!access.canShowPresence(channel)) this.#exitPresence(channel);
      // Entering again updates the user's info.
      else this.ctx.presence.enter(channel, this.connectionId, access.sub!, access.info);
    }
    for (const channel of this.cursor.channels) this.enterPresence(channel, false);
    for (const channel of [...this.#listening]) {
      if (!access.canSeePresence(channel)) this.#unlisten(channel);
    }
  }

  /**
   * After subscribing to `channel`: shows this connection's user in its presence when the token's
   * presence claim covers it, and, when `wantsEvents` (the caller checked it may), sends it the
   * channel's join/leave events.
   */
  enterPresence(channel: string, wantsEvents: boolean): void {
    if (this.#isClosed || !this.cursor.has(channel)) return;
    if (wantsEvents && !this.#listening.has(channel)) {
      this.#listening.add(channel);
      this.ctx.presenceFanOut.listen(channel, this);
    }
    const access = this.#access;
    if (access.canShowPresence(channel) && !this.#present.has(channel)) {
      this.#present.add(channel);
      this.ctx.presence.enter(channel, this.connectionId, access.sub!, access.info);
    }
  }

  #exitPresence(channel: string): void {
    if (this.#present.delete(channel)) this.ctx.presence.exit(channel, this.connectionId);
  }

  #unlisten(channel: string): void {
    if (this.#listening.delete(channel)) this.ctx.presenceFanOut.unlisten(channel, this);
  }

  onPresence(event: PresenceEvent): void {
    this.write(this.presenceFrame(event));
  }

  /** A join/leave event in this wire's format, shared through `event.frame`. */
  protected abstract presenceFrame(event: PresenceEvent): Buffer;

  #scheduleExpiry(): void {
    const expiresAtMs = this.#access.expiresAtMs;
    if (expiresAtMs === undefined || this.#isClosed) this.ctx.expiry.cancel(this);
    else this.ctx.expiry.schedule(this, expiresAtMs);
  }

  /**
   * Called by the shared sweep (ExpirySchedule) when the token expires: the client is told, and has
   * `--token-grace` to present a fresh token; when that too has passed, it is disconnected. It resumes
   * from its cursor with a fresh token, losing nothing.
   */
  onExpiry(nowMs: number): void {
    if (this.#isClosed) return;
    if (this.#isInGrace) {
      this.close('token_expired');
      return;
    }
    this.#isInGrace = true;
    const graceMs = this.ctx.config.tokenGraceMs;
    const notice = this.tokenExpiredFrame(graceMs);
    if (notice !== undefined) this.write(notice);
    this.ctx.expiry.schedule(this, nowMs + graceMs);
  }

  /** The `token_expired` notice in this wire's format; undefined when the wire has none. */
  protected abstract tokenExpiredFrame(graceMs: number): Buffer | undefined;

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Bytes queued for this client and not yet taken by the kernel. */
  protected abstract get bufferedBytes(): number;
  protected abstract send(bytes: Buffer): void;
  protected abstract resetFrame(notice: ResetNotice, cursor: string): Buffer;
  /** Ends the wire; `reason` is why, when the server ends it. */
  protected abstract end(reason: ErrorCode | undefined): void;
  /** True when the wire asked to wait for 'drain' before more is written. */
  protected abstract get needsDrain(): boolean;
  /** Calls `resume` once, when the wire has taken what was queued. */
  protected abstract onDrain(resume: () => void): void;

  /** Channels subscribed whose replay is not done yet, in order (see #replay). */
  #replaying: string[] = [];
  #isAwaitingDrain = false;

  /**
   * Subscribes to every channel, replaying what each missed, then live. All positions enter the cursor
   * first, so every cursor sent during replay already names every channel of the subscription.
   * `subscribedFrame` acknowledges the subscription with that cursor before anything else: a client
   * dropped before its first message resumes from it instead of from a later head.
   */
  subscribe(starts: ReadonlyMap<string, StartAt>, subscribedFrame?: (cursor: string) => Buffer): void {
    const resolved = new Map<string, ResolvedStart>();
    for (const [channel, start] of starts) resolved.set(channel, this.ctx.hub.resolve(channel, start));
    this.subscribeResolved(resolved, subscribedFrame);
  }

  /** `subscribe`, for starts the caller already resolved (a session change answers with their positions). */
  subscribeResolved(starts: ReadonlyMap<string, ResolvedStart>, subscribedFrame?: (cursor: string) => Buffer): void {
    for (const [channel, { position }] of starts) this.cursor.set(channel, position);
    if (subscribedFrame !== undefined) this.write(subscribedFrame(this.cursor.toString()));
    for (const { reset } of starts.values()) {
      if (reset !== undefined) this.write(this.resetFrame(reset, this.cursor.toString()));
    }
    this.#replaying.push(...starts.keys());
    this.#replay();
  }

  /**
   * Replays what the subscribing channels missed, one after the other, then attaches each to live
   * fan-out. Replay is written as fast as the client takes it, pausing while the wire waits for
   * 'drain', so a client resuming far back is never cut as a slow consumer for the size of its own
   * backlog. A channel's last read and its attach happen in one synchronous step: no live message can
   * slip between them.
   */
  #replay(): void {
    while (this.#replaying.length > 0 && !this.#isClosed && !this.#isAwaitingDrain) {
      const channel = this.#replaying[0]!;
      const position = this.cursor.position(channel);
      if (position === undefined) {
        this.#replaying.shift(); // unsubscribed meanwhile
        continue;
      }
      if (this.needsDrain) {
        this.#isAwaitingDrain = true;
        this.onDrain(() => {
          this.#isAwaitingDrain = false;
          this.#recheckReplaying();
          this.#replay();
        });
        return;
      }
      if (position.offset !== 0 && position.epoch !== this.ctx.hub.window(channel).epoch) {
        this.#recheckReplaying(); // the channel's history started over while it replayed
        continue;
      }
      const messages = this.ctx.hub.read(channel, position.offset, REPLAY_BATCH);
      if (messages.length === 0) {
        this.#replaying.shift();
        this.ctx.hub.attach(channel, this);
        continue;
      }
      for (const message of messages) {
        this.onMessage(message);
        if (this.#isClosed || this.needsDrain) break;
      }
    }
  }

  /** While replay waited, retention may have dropped what a channel had yet to replay: say so. */
  #recheckReplaying(): void {
    if (this.#isClosed) return;
    for (const channel of new Set(this.#replaying)) {
      const position = this.cursor.position(channel);
      if (position === undefined) continue;
      const { position: resolved, reset } = this.ctx.hub.resolve(channel, { ...position });
      if (reset === undefined) continue;
      this.cursor.set(channel, resolved);
      this.write(this.resetFrame(reset, this.cursor.toString()));
    }
  }

  onReset(notice: ResetNotice): void {
    if (!this.cursor.has(notice.channel)) return;
    this.cursor.set(notice.channel, { epoch: notice.epoch, offset: notice.from - 1 });
    this.write(this.resetFrame(notice, this.cursor.toString()));
  }

  unsubscribe(channel: string): void {
    this.ctx.hub.detach(channel, this);
    this.cursor.delete(channel);
    this.#unlisten(channel);
    this.#exitPresence(channel);
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
    this.ctx.expiry.cancel(this);
    for (const channel of this.cursor.channels) this.ctx.hub.detach(channel, this);
    for (const channel of [...this.#listening]) this.#unlisten(channel);
    for (const channel of [...this.#present]) this.#exitPresence(channel);
    this.ctx.counters.connections[this.#transport]--;
    this.end(reason);
  }
}
