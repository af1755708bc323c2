// Soft sessions for the HTTP listen transports (SSE, NDJSON stream, iframe, polls): control apart from
// data, as in Pushlet's join/subscribe/listen. A listen request made with `session=` gets an id; a
// `POST /v1/session/{id}` then changes its channels at once, without waiting behind the held poll or
// the open stream. A session is only a convenience, in memory: it expires when idle, and resuming never
// depends on it (the cursor alone resumes, on any node).
//
// Nodes sharing an engine (Redis, `--workers`): a session lives on its home node, named in its id
// (`<node>.<random>`); a listen request or POST naming it on another node is relayed there over the
// engine's bus (session-relay.ts). With the LocalBus every session is home and ids have no node part.
import { randomBytes } from 'node:crypto';
import type { Access } from '../auth/access.js';
import { ndjsonPresenceJson } from '../frames/ndjson.js';
import { HeraldError } from '../errors.js';
import { MAX_CHANNELS_PER_SUBSCRIPTION, encodeCursor, type Position } from '../hub/cursor.js';
import type { Hub, ResolvedStart, StartAt } from '../hub/hub.js';
import type { Counters } from '../metrics.js';
import type { PresenceEvent, PresenceFanOut, PresenceListener } from '../presence/fan-out.js';
import type { SessionRelay } from './session-relay.js';

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
  /** Where the poll is held when that is another node (session-relay.ts): the session leases it. */
  readonly remote?: RemoteHolder;
}

/** A listen request of another node holding a session of this one: that node, and its name for the request. */
export interface RemoteHolder {
  readonly node: string;
  readonly token: string;
}

/** What a POST asks: channels to add (with where each starts), channels to drop, and presence. */
export interface SessionChangeRequest {
  subscribe: ReadonlyMap<string, StartAt>;
  unsubscribe: ReadonlySet<string>;
  /** Explicit `presence` of the POST; undefined: as the session's listen request asked. */
  presence: boolean | undefined;
  /** Whether the POST's client may see the presence of `channel` (its access, wherever it was checked). */
  canSeePresence(channel: string): boolean;
}

/** A poll of a session as the session hears of it. */
export interface PollArrival {
  /** The channels the poll lists. */
  listed: ReadonlySet<string>;
  /** The channels its cursor names. */
  cursorNames: ReadonlySet<string>;
  /** Its starts with the session's pending changes merged: what it is answered with. */
  channels: readonly string[];
  isPresenceWanted: boolean;
  canSeePresence(channel: string): boolean;
  /** Whether the poll would be held (nothing to answer yet), asked only when the session is elsewhere. */
  wouldHold(): boolean;
}

/** The pending changes of a poll session (see Session), as they travel between nodes. */
export interface PendingChanges {
  starts: [string, Position][];
  removals: string[];
}

/**
 * What a listen request holds of its session: the Session itself on its home node, a RemoteSession
 * (session-relay.ts) on another. The transports use only this.
 */
export interface ListenSession {
  readonly id: string;
  withPending(starts: ReadonlyMap<string, StartAt>, cursorNames: ReadonlySet<string>): Map<string, StartAt>;
  attachStream(stream: SessionStream, isPresenceWanted: boolean): void;
  detachStream(stream: SessionStream): void;
  holdPoll(poll: HeldPoll): void;
  holds(poll: HeldPoll): boolean;
  releasePoll(poll: HeldPoll): void;
  setPollChannels(channels: Iterable<string>): void;
  readonly hasQueuedEvents: boolean;
  answerTail(isCurrent: boolean): string;
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

/**
 * `starts` with the pending changes merged: pending additions the request's cursor does not name (they
 * override `since`), minus pending removals; `too_many_channels` when the two together are too many.
 */
export function mergePending(
  pendingStarts: ReadonlyMap<string, Position>,
  pendingRemovals: ReadonlySet<string>,
  starts: ReadonlyMap<string, StartAt>,
  cursorNames: ReadonlySet<string>,
): Map<string, StartAt> {
  const merged = new Map(starts);
  for (const channel of pendingRemovals) merged.delete(channel);
  for (const [channel, position] of pendingStarts) {
    // A cursor naming the channel counts only for a poll that also lists it: an answer can name a
    // channel its client has not confirmed yet (the POST's own answer may still be on the way).
    if (!cursorNames.has(channel) || !merged.has(channel)) merged.set(channel, { ...position });
  }
  if (merged.size > MAX_CHANNELS_PER_SUBSCRIPTION) throw new HeraldError('too_many_channels');
  return merged;
}

interface ChangePlan {
  added: string[];
  removed: string[];
  resolved: Map<string, ResolvedStart>;
  /** Where each new channel starts, as the answer's cursor says. */
  starts: Map<string, Position>;
  presence: Set<string>;
}

/**
 * What a change does to a session whose channels are `current`; throws (before anything is applied)
 * when it would make too many. The channels it adds are resolved: `hub.readyFor` them first.
 */
function planChange(current: ReadonlySet<string>, request: SessionChangeRequest, isPresenceWanted: boolean, hub: Hub): ChangePlan {
  const added = [...request.subscribe.keys()].filter((c) => !current.has(c));
  const removed = [...request.unsubscribe].filter((c) => current.has(c));
  if (current.size - removed.length + added.length > MAX_CHANNELS_PER_SUBSCRIPTION) throw new HeraldError('too_many_channels');
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
  const presence = new Set(isPresenceWanted ? added.filter((c) => request.canSeePresence(c)) : []);
  return { added, removed, resolved, starts, presence };
}

/** A change applied to an open stream of this node (its session's home may be another node). */
export function changeStream(stream: SessionStream, request: SessionChangeRequest, isPresenceWanted: boolean, hub: Hub): SessionChangeResult {
  const { resolved, removed, presence, starts } = planChange(new Set(stream.channels), request, isPresenceWanted, hub);
  stream.applySessionChange({ subscribe: resolved, unsubscribe: removed, presence });
  return { channels: [...stream.channels], cursor: starts.size > 0 ? encodeCursor(starts) : undefined };
}

export class Session implements PresenceListener, ListenSession {
  readonly id: string;
  readonly owner: string;
  readonly #registry: SessionRegistry;
  #stream: SessionStream | undefined;
  /** The open stream of another node that holds the session (its changes are forwarded there). */
  #remoteStream: RemoteHolder | undefined;
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
    return mergePending(this.#pendingStarts, this.#pendingRemovals, starts, cursorNames);
  }

  /** The pending changes, for a listen request of another node to merge. */
  pendingChanges(): PendingChanges {
    return { starts: [...this.#pendingStarts], removals: [...this.#pendingRemovals] };
  }

  /** The last listen request's `presence`. */
  get isPresenceWanted(): boolean {
    return this.#isPresenceWanted;
  }

  /** The stream of another node holding the session, if one does. */
  get remoteStream(): RemoteHolder | undefined {
    return this.#remoteStream;
  }

  /** Forgets what a poll (listing `listed`, its cursor naming `cursorNames`) shows the client has taken in. */
  #settlePending(listed: ReadonlySet<string>, cursorNames: ReadonlySet<string>): void {
    for (const channel of this.#pendingStarts.keys()) if (cursorNames.has(channel) && listed.has(channel)) this.#pendingStarts.delete(channel);
    for (const channel of this.#pendingRemovals) if (!listed.has(channel)) this.#pendingRemovals.delete(channel);
  }

  /** A stream takes the session: changes now go to it. Polls and queued events of the session are let go. */
  attachStream(stream: SessionStream, isPresenceWanted: boolean): void {
    this.#stream = stream;
    this.#remoteStream = undefined;
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

  /** `attachStream` for a stream of another node, opened with `channels`. */
  attachRemoteStream(holder: RemoteHolder, isPresenceWanted: boolean, channels: readonly string[]): void {
    this.#stream = undefined;
    this.#remoteStream = holder;
    this.#heldPoll = undefined;
    this.#pendingStarts.clear();
    this.#pendingRemovals.clear();
    this.#isPresenceWanted = isPresenceWanted;
    this.#channels = new Set(channels);
    this.#releasePresence();
    this.#registry.lease(this);
  }

  /** A change forwarded to the session's remote stream was applied there: its channels now. */
  remoteStreamChanged(holder: RemoteHolder, channels: readonly string[]): void {
    if (this.#remoteStream === holder) this.#channels = new Set(channels);
  }

  #isHeldBy(node: string, token: string): RemoteHolder | undefined {
    const holder = this.#remoteStream ?? this.#heldPoll?.remote;
    return holder !== undefined && holder.node === node && holder.token === token ? holder : undefined;
  }

  /** The listen request `token` of `node` ended (its stream closed with `channels`, or its poll was answered). */
  remoteEnded(node: string, token: string, channels: readonly string[] | undefined): void {
    const holder = this.#isHeldBy(node, token);
    if (holder === undefined) return; // another listen request took the session meanwhile
    if (holder === this.#remoteStream) {
      if (channels !== undefined) this.#channels = new Set(channels);
      this.#remoteStream = undefined;
      this.#registry.markIdle(this);
    } else this.releasePoll(this.#heldPoll!);
  }

  /** The listen request `token` of `node` still holds the session: its lease goes on. */
  remoteRenewed(node: string, token: string): void {
    if (this.#isHeldBy(node, token) !== undefined) this.#registry.lease(this);
  }

  /**
   * A poll of the session arrived, listing `listed` with a cursor naming `cursorNames`; `channels` are
   * its starts with the pending changes merged. Settles pending changes and follows presence: with
   * `presence=1` the session listens to all of its channels.
   */
  pollArrived({ listed, cursorNames, channels, isPresenceWanted, canSeePresence }: PollArrival): void {
    this.#stream = undefined;
    this.#remoteStream = undefined;
    this.#heldPoll = undefined; // a poll still held is superseded: it is answered as usual, without events
    this.#settlePending(listed, cursorNames);
    this.#isPresenceWanted = isPresenceWanted;
    this.setPollChannels(channels);
    if (isPresenceWanted) for (const channel of this.#channels) if (canSeePresence(channel)) this.#listen(channel);
    this.#registry.markIdle(this);
  }

  /** The channels a poll of the session was answered with. */
  setPollChannels(channels: Iterable<string>): void {
    this.#channels = new Set(channels);
    for (const channel of [...this.#listening]) if (!this.#channels.has(channel)) this.#unlisten(channel);
  }

  holdPoll(poll: HeldPoll): void {
    this.#heldPoll = poll; // a poll held before it is no longer the session's: it gets no events
    if (poll.remote !== undefined) this.#registry.lease(this);
    else this.#registry.markBusy(this);
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
    const tail = `,"session":"${this.id}"`;
    return isCurrent ? tail + this.takeEvents() : tail;
  }

  /** The queued presence events as answer fields (`,"presence":[…]`…, or ''), then cleared. */
  takeEvents(): string {
    if (!this.hasQueuedEvents) return '';
    let fields = `,"presence":[${this.#presenceQueue.map(ndjsonPresenceJson).join(',')}]`;
    if (this.#presenceDropped > 0) fields += `,"presenceDropped":${this.#presenceDropped}`;
    this.#presenceQueue = [];
    this.#presenceDropped = 0;
    return fields;
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
   * Not for a session a stream of another node holds (the relay forwards those: see remoteStream).
   */
  change(request: SessionChangeRequest, hub: Hub): SessionChangeResult {
    if (this.#remoteStream !== undefined) throw new Error('a remote stream session is changed where its stream is');
    const isPresenceWanted = request.presence ?? this.#isPresenceWanted;
    if (this.#stream !== undefined) return changeStream(this.#stream, request, isPresenceWanted, hub);
    const { added, removed, starts, presence } = planChange(new Set(this.channels), request, isPresenceWanted, hub);
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
    this.#remoteStream = undefined;
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
 * How long a session held by a listen request of another node lives without hearing from that node
 * (which renews it every third of this): a node that died, or a lost "ended" notice, cannot keep a
 * session forever. After the lease the session idles as usual.
 */
export const REMOTE_LEASE_MS = 60_000;

/**
 * This node's sessions. A session held by an open stream or a held poll never expires; otherwise it
 * expires `idleMs` after it was last used, found by the server's shared sweep (no timer per session).
 * One held from another node lives as long as that node renews its lease, then idles.
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
  /** Sessions held from another node, with when their lease ends (insertion order is again expiry order). */
  readonly #leased = new Map<Session, number>();

  readonly #maxIdle: number;
  /** Relays sessions of other nodes (session-relay.ts); undefined on a node alone. */
  #relay: SessionRelay | undefined;

  constructor(presenceFanOut: PresenceFanOut, idleMs: number, counters: Counters, maxIdle = MAX_IDLE_SESSIONS) {
    this.presenceFanOut = presenceFanOut;
    this.#idleMs = idleMs;
    this.#counters = counters;
    this.#maxIdle = maxIdle;
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** Called by the relay once: from now on ids name this node, and sessions of other nodes are relayed. */
  useRelay(relay: SessionRelay): void {
    this.#relay = relay;
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
    do id = this.#relay?.newId() ?? randomBytes(16).toString('base64url'); // 128 bits: the id is the only thing that finds a session
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
    return this.peekOwned(id, ownerOf(access));
  }

  /** `peek` by owner (ownerOf), for a request relayed from another node. */
  peekOwned(id: string, owner: string): Session | undefined {
    const session = this.#sessions.get(id);
    return session?.owner === owner ? session : undefined;
  }

  /** The session a POST names; `session_not_found` when it is unknown, expired, or another client's. */
  require(id: string, access: Access): Session {
    const session = this.peek(id, access);
    if (session === undefined) throw new HeraldError('session_not_found');
    return session;
  }

  /** The session `id`, whoever's it is (for notices of the nodes holding it). */
  get(id: string): Session | undefined {
    return this.#sessions.get(id);
  }

  /** The node whose session `id` is, when that is another node; undefined: this one. */
  homeOf(id: string): string | undefined {
    return this.#relay?.homeOf(id);
  }

  /**
   * `peek` for a listen request, wherever the session lives: here, or asked of its home node (then a
   * RemoteSession). Undefined when there is none, or its home did not answer.
   */
  find(id: string, access: Access): ListenSession | undefined | Promise<ListenSession | undefined> {
    const home = this.homeOf(id);
    if (home === undefined) return this.peek(id, access);
    return this.#relay!.find(home, id, ownerOf(access));
  }

  /** The session a stream takes: the one `find` found (here or elsewhere), else `claim` (a fresh one here). */
  take(param: string, access: Access, found: ListenSession | undefined): ListenSession {
    if (found !== undefined && !(found instanceof Session)) return found;
    return this.claim(param, access);
  }

  /**
   * The session a poll takes, told of the poll (Session.pollArrived): the one `find` found at its home,
   * if that home still has it, else `claim` here.
   */
  arrivePoll(param: string, access: Access, found: ListenSession | undefined, arrival: PollArrival): ListenSession | Promise<ListenSession> {
    const here = (): Session => {
      const session = this.claim(param, access);
      session.pollArrived(arrival);
      return session;
    };
    if (found === undefined || found instanceof Session) return here();
    return this.#relay!.arrivePoll(found, arrival).then((isThere) => (isThere ? found : here()));
  }

  /**
   * A POST: `authorize` throws when the client may not make the change (checked after the session is
   * found, so another client's session is a 404 whatever it asks). Applied here, at the session's home
   * node, or where its stream is.
   */
  async change(id: string, access: Access, request: SessionChangeRequest, authorize: () => void, hub: Hub): Promise<SessionChangeResult> {
    const home = this.homeOf(id);
    if (home !== undefined) {
      let denied: HeraldError | undefined;
      try {
        authorize();
      } catch (error) {
        if (!(error instanceof HeraldError)) throw error;
        denied = error;
      }
      return this.#relay!.change(home, id, ownerOf(access), request, denied);
    }
    await hub.readyFor(request.subscribe);
    const session = this.require(id, access);
    authorize();
    if (session.remoteStream === undefined) return session.change(request, hub);
    return this.#relay!.changeHere(id, ownerOf(access), request, undefined);
  }

  /** Held by an open stream or a held poll: does not expire. */
  markBusy(session: Session): void {
    this.#idle.delete(session);
    this.#leased.delete(session);
  }

  /** Starts (or restarts) the session's idle time. */
  markIdle(session: Session, nowMs = Date.now()): void {
    if (this.#sessions.get(session.id) !== session) return; // expired
    this.#leased.delete(session);
    this.#idle.delete(session);
    this.#idle.set(session, nowMs + this.#idleMs);
    if (this.#idle.size > this.#maxIdle) this.#expire(this.#idle.keys().next().value!);
  }

  /** Held from another node: lives REMOTE_LEASE_MS from now unless renewed (then idles). */
  lease(session: Session, nowMs = Date.now()): void {
    if (this.#sessions.get(session.id) !== session) return; // expired
    this.#idle.delete(session);
    this.#leased.delete(session);
    this.#leased.set(session, nowMs + REMOTE_LEASE_MS);
  }

  /** A use (a POST) restarts the idle time of a session nothing holds. */
  touch(session: Session): void {
    if (this.#idle.has(session)) this.markIdle(session);
  }

  tick(nowMs: number): void {
    for (const [session, endsAtMs] of this.#leased) {
      if (endsAtMs > nowMs) break;
      this.markIdle(session, nowMs); // nothing heard of its holder: it idles (its holder may still renew it)
    }
    for (const [session, expiresAtMs] of this.#idle) {
      if (expiresAtMs > nowMs) break;
      this.#expire(session);
    }
    this.#relay?.tick(nowMs);
  }

  /** Lets the session go now (its holder on another node is gone, and what it held with it). */
  drop(session: Session): void {
    this.#expire(session);
  }

  #expire(session: Session): void {
    this.#idle.delete(session);
    this.#leased.delete(session);
    if (!this.#sessions.delete(session.id)) return;
    this.#counters.sessions--;
    session.release();
  }

  closeAll(): void {
    for (const session of [...this.#sessions.values()]) this.#expire(session);
    this.#relay?.close();
  }
}
