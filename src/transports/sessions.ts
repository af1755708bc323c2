// Soft sessions for the HTTP listen transports (SSE, NDJSON stream, iframe, polls): control apart from
// data, as in Pushlet's join/subscribe/listen. A listen request made with `session=` gets an id; a
// `POST /v1/session/{id}` then changes its channels at once, without waiting behind the held poll or
// the open stream. A session is only a convenience, per node and in memory: it expires when idle, and
// resuming never depends on it (the cursor alone resumes, on any node).
import { randomBytes } from 'node:crypto';
import type { Access } from '../auth/access.js';
import { ndjsonPresenceJson } from '../frames/ndjson.js';
import { HeraldError } from '../errors.js';
import { MAX_CHANNELS_PER_SUBSCRIPTION, encodeCursor, type Position } from '../hub/cursor.js';
import type { Hub, ResolvedStart, StartAt } from '../hub/hub.js';
import type { Counters } from '../metrics.js';
import type { PresenceEvent, PresenceFanOut, PresenceListener } from '../presence/fan-out.js';

/** Join/leave events a poll session keeps for its next poll; past this the oldest are dropped (and counted). */
export const MAX_QUEUED_PRESENCE_EVENTS = 256;

/** A change of a stream session's channels, resolved: what the open stream applies at once. */
export interface StreamChange {
  subscribe: ReadonlyMap<string, ResolvedStart>;
  unsubscribe: readonly string[];
  /** The new channels that also get join/leave events. */
  presence: ReadonlySet<string>;
}

/** The open stream a session belongs to (the streaming transports' connection). */
export interface SessionStream {
  readonly channels: readonly string[];
  /**
   * Unsubscribes, then writes the in-band marker, then replays the new channels from their starts and
   * attaches them live: nothing of a new channel can come before the marker.
   */
  applySessionChange(change: StreamChange): void;
}

/** The held poll of a poll session, answered at once by a POST or a presence event. */
export interface HeldPoll {
  answerNow(): void;
}

/** What a POST asks: channels to add (with where each starts), channels to drop, and presence. */
export interface SessionChangeRequest {
  subscribe: ReadonlyMap<string, StartAt>;
  unsubscribe: ReadonlySet<string>;
  /** Explicit `presence` of the POST; undefined: as the session's listen request asked. */
  presence: boolean | undefined;
  access: Access;
}

export interface SessionChangeResult {
  channels: string[];
  /** Names only the channels this change added, where each starts; undefined when it added none. */
  cursor: string | undefined;
}

/** Whose a session is: a token's user, the backend, or anonymous. Another owner never finds it. */
export function ownerOf(access: Access): string {
  if (access.sub !== undefined) return `user:${access.sub}`;
  return access.isBackend ? 'backend' : 'anonymous';
}

export class Session implements PresenceListener {
  readonly id: string;
  readonly owner: string;
  readonly #registry: SessionRegistry;
  #stream: SessionStream | undefined;
  #heldPoll: HeldPoll | undefined;
  /** The session's channels when no stream holds it: its last poll's, as POSTs changed them since. */
  #channels = new Set<string>();
  /**
   * Changes the next polls have not confirmed yet (so an answer lost on the way changes nothing): an
   * addition holds until a poll's cursor names the channel, a removal until a poll no longer lists it.
   */
  readonly #pendingStarts = new Map<string, Position>();
  readonly #pendingRemovals = new Set<string>();
  /** The last listen request's `presence`: what a POST without `presence` does. */
  #isPresenceWanted = false;
  /** Channels whose join/leave events this (poll) session queues. */
  readonly #listening = new Set<string>();
  #presenceQueue: PresenceEvent[] = [];
  #presenceDropped = 0;

  constructor(id: string, owner: string, registry: SessionRegistry) {
    this.id = id;
    this.owner = owner;
    this.#registry = registry;
  }

  get channels(): string[] {
    return this.#stream !== undefined ? [...this.#stream.channels] : [...this.#channels].sort();
  }

  /**
   * The starts of a listen request with what the session still owes it: pending additions the
   * request's cursor does not name (they override `since`), minus pending removals. Changes nothing;
   * `too_many_channels` when the two together are too many.
   */
  withPending(starts: ReadonlyMap<string, StartAt>, cursorNames: ReadonlySet<string>): Map<string, StartAt> {
    const merged = new Map(starts);
    for (const channel of this.#pendingRemovals) merged.delete(channel);
    for (const [channel, position] of this.#pendingStarts) {
      // A cursor naming the channel counts only for a poll that also lists it: an answer can name a
      // channel its client has not confirmed yet (the POST's own answer may still be on the way).
      if (!cursorNames.has(channel) || !merged.has(channel)) merged.set(channel, { ...position });
    }
    if (merged.size > MAX_CHANNELS_PER_SUBSCRIPTION) throw new HeraldError('too_many_channels');
    return merged;
  }

  /** Forgets what a poll (listing `listed`, its cursor naming `cursorNames`) shows the client has taken in. */
  #settlePending(listed: ReadonlySet<string>, cursorNames: ReadonlySet<string>): void {
    for (const channel of this.#pendingStarts.keys()) if (cursorNames.has(channel) && listed.has(channel)) this.#pendingStarts.delete(channel);
    for (const channel of this.#pendingRemovals) if (!listed.has(channel)) this.#pendingRemovals.delete(channel);
  }

  /** A stream takes the session: changes now go to it. Polls and queued events of the session are let go. */
  attachStream(stream: SessionStream, isPresenceWanted: boolean): void {
    this.#stream = stream;
    this.#heldPoll = undefined;
    this.#pendingStarts.clear();
    this.#pendingRemovals.clear();
    this.#isPresenceWanted = isPresenceWanted;
    this.#releasePresence(); // the connection listens for itself
    this.#registry.markBusy(this);
  }

  /** The stream closed: the session idles, with the stream's last channels, until it expires or is taken again. */
  detachStream(stream: SessionStream): void {
    if (this.#stream !== stream) return; // another listen request took the session meanwhile
    this.#channels = new Set(stream.channels);
    this.#stream = undefined;
    this.#registry.markIdle(this);
  }

  /**
   * A poll of the session arrived, listing `listed` with a cursor naming `cursorNames`; `channels` are
   * its starts with the pending changes merged. Settles pending changes and follows presence: with
   * `presence=1` the session listens to all of its channels.
   */
  pollArrived(listed: ReadonlySet<string>, cursorNames: ReadonlySet<string>, channels: Iterable<string>, isPresenceWanted: boolean, access: Access): void {
    this.#stream = undefined;
    this.#heldPoll = undefined; // a poll still held is superseded: it is answered as usual, without events
    this.#settlePending(listed, cursorNames);
    this.#isPresenceWanted = isPresenceWanted;
    this.setPollChannels(channels);
    if (isPresenceWanted) for (const channel of this.#channels) if (access.canSeePresence(channel)) this.#listen(channel);
    this.#registry.markIdle(this);
  }

  /** The channels a poll of the session was answered with. */
  setPollChannels(channels: Iterable<string>): void {
    this.#channels = new Set(channels);
    for (const channel of [...this.#listening]) if (!this.#channels.has(channel)) this.#unlisten(channel);
  }

  holdPoll(poll: HeldPoll): void {
    this.#heldPoll = poll; // a poll held before it is no longer the session's: it gets no events
    this.#registry.markBusy(this);
  }

  /** Whether `poll` is the session's own held poll (not one a later poll superseded). */
  holds(poll: HeldPoll): boolean {
    return this.#heldPoll === poll;
  }

  releasePoll(poll: HeldPoll): void {
    if (this.#heldPoll !== poll) return;
    this.#heldPoll = undefined;
    this.#registry.markIdle(this);
  }

  /** Whether an answer would carry something now even without messages (queued presence events). */
  get hasQueuedEvents(): boolean {
    return this.#presenceQueue.length > 0 || this.#presenceDropped > 0;
  }

  /**
   * The fields a session poll's answer gains: `,"session":…` and, when `isCurrent` (the session's own
   * poll, not one it superseded), the queued presence events, which are then cleared.
   */
  answerTail(isCurrent: boolean): string {
    let tail = `,"session":"${this.id}"`;
    if (!isCurrent || !this.hasQueuedEvents) return tail;
    tail += `,"presence":[${this.#presenceQueue.map(ndjsonPresenceJson).join(',')}]`;
    if (this.#presenceDropped > 0) tail += `,"presenceDropped":${this.#presenceDropped}`;
    this.#presenceQueue = [];
    this.#presenceDropped = 0;
    return tail;
  }

  onPresence(event: PresenceEvent): void {
    if (this.#presenceQueue.length >= MAX_QUEUED_PRESENCE_EVENTS) {
      this.#presenceQueue.shift();
      this.#presenceDropped++;
    }
    this.#presenceQueue.push(event);
    this.#heldPoll?.answerNow();
  }

  /**
   * A POST: applies the whole change or, on an error (thrown before anything is applied), none of it.
   * The caller checked the access to each channel. A channel the session has is not subscribed again.
   */
  change(request: SessionChangeRequest, hub: Hub): SessionChangeResult {
    const current = new Set(this.channels);
    const added = [...request.subscribe.keys()].filter((c) => !current.has(c));
    const removed = [...request.unsubscribe].filter((c) => current.has(c));
    if (current.size - removed.length + added.length > MAX_CHANNELS_PER_SUBSCRIPTION) throw new HeraldError('too_many_channels');
    const isPresenceWanted = request.presence ?? this.#isPresenceWanted;
    const resolved = new Map<string, ResolvedStart>();
    // Where each new channel starts, as the answer's cursor says. When history no longer reaches the
    // position asked for, that position stays: whoever resumes from it is told of the gap (a reset).
    const starts = new Map<string, Position>();
    for (const channel of added) {
      const start = request.subscribe.get(channel)!;
      const result = hub.resolve(channel, start);
      resolved.set(channel, result);
      starts.set(channel, result.reset !== undefined && typeof start === 'object' ? start : result.position);
    }
    const presence = new Set(isPresenceWanted ? added.filter((c) => request.access.canSeePresence(c)) : []);
    if (this.#stream !== undefined) {
      this.#stream.applySessionChange({ subscribe: resolved, unsubscribe: removed, presence });
    } else {
      for (const channel of removed) {
        this.#channels.delete(channel);
        this.#pendingStarts.delete(channel);
        this.#pendingRemovals.add(channel);
        this.#unlisten(channel);
      }
      for (const [channel, position] of starts) {
        this.#channels.add(channel);
        this.#pendingRemovals.delete(channel);
        this.#pendingStarts.set(channel, position);
        if (presence.has(channel)) this.#listen(channel);
      }
      this.#registry.touch(this);
      if (added.length > 0 || removed.length > 0) this.#heldPoll?.answerNow();
    }
    return { channels: this.channels, cursor: starts.size > 0 ? encodeCursor(starts) : undefined };
  }

  #listen(channel: string): void {
    if (this.#listening.has(channel)) return;
    this.#listening.add(channel);
    this.#registry.presenceFanOut.listen(channel, this);
  }

  #unlisten(channel: string): void {
    if (this.#listening.delete(channel)) this.#registry.presenceFanOut.unlisten(channel, this);
  }

  #releasePresence(): void {
    for (const channel of [...this.#listening]) this.#unlisten(channel);
    this.#presenceQueue = [];
    this.#presenceDropped = 0;
  }

  /** Lets go of everything the session holds (it expired, or the server stops). */
  release(): void {
    this.#releasePresence();
    this.#pendingStarts.clear();
    this.#pendingRemovals.clear();
    this.#channels.clear();
    this.#stream = undefined;
    this.#heldPoll = undefined;
  }
}

/**
 * Idle sessions kept at most by default. Past it the one idle longest goes first, so a flood of
 * `session=new` cannot grow memory without bound; its client only loses the convenience (a POST gets
 * 404 and it listens again from its cursor).
 */
export const MAX_IDLE_SESSIONS = 50_000;

/**
 * This node's sessions. A session held by an open stream or a held poll never expires; otherwise it
 * expires `idleMs` after it was last used, found by the server's shared sweep (no timer per session).
 */
export class SessionRegistry {
  readonly presenceFanOut: PresenceFanOut;
  readonly #idleMs: number;
  readonly #counters: Counters;
  readonly #sessions = new Map<string, Session>();
  /**
   * Sessions no listen request holds, with when each expires. Every session idles for the same time,
   * so insertion order is expiry order when each use moves a session to the end: a tick reads only
   * the front, the expired ones.
   */
  readonly #idle = new Map<Session, number>();

  readonly #maxIdle: number;

  constructor(presenceFanOut: PresenceFanOut, idleMs: number, counters: Counters, maxIdle = MAX_IDLE_SESSIONS) {
    this.presenceFanOut = presenceFanOut;
    this.#idleMs = idleMs;
    this.#counters = counters;
    this.#maxIdle = maxIdle;
  }

  get size(): number {
    return this.#sessions.size;
  }

  /**
   * The session a listen request names (`session=new` or an id): the live session of that id when it
   * is this client's, else a fresh one. Never an error: the cursor alone resumes.
   */
  claim(param: string, access: Access): Session {
    const owner = ownerOf(access);
    const existing = this.#sessions.get(param);
    if (existing !== undefined && existing.owner === owner) return existing;
    let id: string;
    do id = randomBytes(16).toString('base64url'); // 128 bits: the id is the only thing that finds a session
    while (this.#sessions.has(id));
    const session = new Session(id, owner, this);
    this.#sessions.set(id, session);
    this.#counters.sessions++;
    this.markIdle(session);
    return session;
  }

  /** The live session `id` of this client, without changing anything; undefined when there is none. */
  peek(id: string | null, access: Access): Session | undefined {
    if (id === null) return undefined;
    const session = this.#sessions.get(id);
    return session?.owner === ownerOf(access) ? session : undefined;
  }

  /** The session a POST names; `session_not_found` when it is unknown, expired, or another client's. */
  require(id: string, access: Access): Session {
    const session = this.peek(id, access);
    if (session === undefined) throw new HeraldError('session_not_found');
    return session;
  }

  /** Held by an open stream or a held poll: does not expire. */
  markBusy(session: Session): void {
    this.#idle.delete(session);
  }

  /** Starts (or restarts) the session's idle time. */
  markIdle(session: Session, nowMs = Date.now()): void {
    if (this.#sessions.get(session.id) !== session) return; // expired
    this.#idle.delete(session);
    this.#idle.set(session, nowMs + this.#idleMs);
    if (this.#idle.size > this.#maxIdle) this.#expire(this.#idle.keys().next().value!);
  }

  /** A use (a POST) restarts the idle time of a session nothing holds. */
  touch(session: Session): void {
    if (this.#idle.has(session)) this.markIdle(session);
  }

  tick(nowMs: number): void {
    for (const [session, expiresAtMs] of this.#idle) {
      if (expiresAtMs > nowMs) break;
      this.#expire(session);
    }
  }

  #expire(session: Session): void {
    this.#idle.delete(session);
    if (!this.#sessions.delete(session.id)) return;
    this.#counters.sessions--;
    session.release();
  }

  closeAll(): void {
    for (const session of [...this.#sessions.values()]) this.#expire(session);
  }
}
