// Sessions across nodes (nodes on one Redis, workers of `--workers`): a session lives on its home node,
// named in its id (`<node>.<random>`), and whatever names it on another node is relayed there over the
// engine's ControlBus, so that polls, streams and POSTs may each land on any node.
//
//   requests (sendTo home, answered on session:res within a bound, else taken as "no such session"):
//     peek          a listen request's first step: the session's pending changes (to merge into its starts)
//     poll          a poll arrived (Session.pollArrived at home); home holds it (its wake goes to this
//                   node) or gives it the queued presence events to answer with at once
//     change        a POST; applied at home, or forwarded on by home to the node whose stream holds the
//                   session (stream-change), where the stream's starts are resolved and applied
//   notices (one way): attach / ended (a stream or poll of this node took / let go of a session),
//     wake (home: answer your held poll now, with these pending changes and presence events),
//     renew (this node's listen requests still hold these sessions), hello / bye (a node starts / stops).
//
// The bus is at most once. Nothing here can lose a message: the cursor stays the truth for positions,
// pending changes stay at home until a poll confirms them, and a request with no answer within the bound
// is a 404 `session_not_found` (a POST) or a fresh session on this node (a listen request): the client
// listens again from its cursor (that node is then not asked for a few seconds, unless heard from, so
// that its next requests do not wait again). A lost notice costs latency (a wake: the poll is answered at its
// timeout, the change at the next poll), or the session (a lost `ended`: its lease runs out and it
// idles; a change forwarded to a stream that is gone answers 404). Presence events of a poll session
// travel with a wake or a poll's answer: those of a wake that is lost are lost.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ControlBus } from '../engine/engine.js';
import { LocalBus } from '../engine/local-bus.js';
import { ERRORS, HeraldError, type ErrorCode } from '../errors.js';
import type { Position } from '../hub/cursor.js';
import type { Hub, StartAt } from '../hub/hub.js';
import {
  REMOTE_LEASE_MS,
  changeStream,
  mergePending,
  type HeldPoll,
  type ListenSession,
  type PendingChanges,
  type PollArrival,
  type RemoteHolder,
  type Session,
  type SessionChangeRequest,
  type SessionChangeResult,
  type SessionRegistry,
  type SessionStream,
} from './sessions.js';

/** A request to another node not answered in this long is taken as "no such session". */
export const RELAY_TIMEOUT_MS = 2000;
/** Home forwarding a POST to a stream's node waits less, so that it can still answer the POST's node. */
const FORWARD_TIMEOUT_MS = 1500;
/** How often the listen requests held here renew their sessions' leases at home. */
const RENEW_MS = REMOTE_LEASE_MS / 3;
/** Holds per renew notice. */
const MAX_RENEWALS_PER_NOTICE = 1000;
/** A node that said bye is not asked anything for this long (unless it is heard from again). */
const DOWN_MS = 30_000;
/** Nor, for this long, a node that left a request unanswered (its next listen requests need not wait again). */
const SUSPECT_MS = 5000;
/** Requests waiting for an answer at most; past it new ones fail at once (ids naming unknown nodes cost a wait each). */
const MAX_IN_FLIGHT = 10_000;

const TOPIC_REQUEST = 'session:req';
const TOPIC_REPLY = 'session:res';
const TOPIC_NOTICE = 'session:note';

/** The node part of an id: the bus's node id as it is when URL-safe, else `~` and its base64url. */
const NODE_PART = /^[A-Za-z0-9_-]{1,64}$/;
const ENCODED_NODE_PART = /^~[A-Za-z0-9_-]{1,256}$/;
const RANDOM_PART = /^[A-Za-z0-9_-]{22}$/;

interface WireChange {
  subscribe: [string, StartAt][];
  unsubscribe: string[];
  presence?: boolean;
  /** The added channels whose presence the POST's client may see. */
  canSee: string[];
}

interface WireError {
  code: string;
  message: string;
}

type WireRequest = { r: number } & (
  | { op: 'peek'; id: string; owner: string }
  | {
      op: 'poll';
      id: string;
      owner: string;
      token: string;
      listed: string[];
      cursorNames: string[];
      channels: string[];
      presence: boolean;
      canSee: string[];
      wouldHold: boolean;
    }
  | ({ op: 'change'; id: string; owner: string; denied?: WireError } & WireChange)
  | ({ op: 'stream-change'; id: string; token: string } & WireChange)
);

type WireNotice =
  | { op: 'attach'; id: string; owner: string; token: string; presence: boolean; channels: string[] }
  | { op: 'ended'; id: string; token: string; channels?: string[] }
  | { op: 'renew'; holds: [string, string][] }
  | { op: 'wake'; id: string; token: string; pending: PendingChanges; events: string }
  | { op: 'hello' }
  | { op: 'bye' };

interface InFlight {
  node: string;
  resolve(value: unknown): void;
  reject(error: HeraldError): void;
  timer: NodeJS.Timeout;
}

/** The relay of the nodes sharing `bus`; none with the LocalBus of a node alone (every session is home). */
export function connectSessionRelay(bus: ControlBus, sessions: SessionRegistry, hub: Hub, logger: Logger): SessionRelay | undefined {
  if (bus instanceof LocalBus) return undefined;
  return new SessionRelay(bus, sessions, hub, logger);
}

/**
 * A listen request's session whose home is another node: what the transports see of it here. One per
 * listen request (home tells them apart by their tokens).
 */
export class RemoteSession implements ListenSession {
  readonly id: string;
  readonly home: string;
  readonly owner: string;
  readonly #relay: SessionRelay;
  #pendingStarts: Map<string, Position>;
  #pendingRemovals: Set<string>;
  #token: string | undefined;
  /** Home holds this node's poll as the session's (it will wake it), until woken or told it ended. */
  #isHeldAtHome = false;
  #wasWoken = false;
  #poll: HeldPoll | undefined;
  /** Presence event fields home sent, for the next answer of the session's own poll. */
  #events = '';
  #stream: SessionStream | undefined;

  constructor(relay: SessionRelay, home: string, id: string, owner: string, pending: PendingChanges) {
    this.#relay = relay;
    this.home = home;
    this.id = id;
    this.owner = owner;
    this.#pendingStarts = new Map(pending.starts);
    this.#pendingRemovals = new Set(pending.removals);
  }

  get token(): string | undefined {
    return this.#token;
  }

  get stream(): SessionStream | undefined {
    return this.#stream;
  }

  withPending(starts: ReadonlyMap<string, StartAt>, cursorNames: ReadonlySet<string>): Map<string, StartAt> {
    return mergePending(this.#pendingStarts, this.#pendingRemovals, starts, cursorNames);
  }

  // --- Polls -----------------------------------------------------------------------------------------

  /** Home's answer to this poll: whether it holds it, and the presence events to answer with. */
  arrived(token: string, isHeld: boolean, events: string): void {
    this.#token = token;
    this.#isHeldAtHome = isHeld && !this.#wasWoken; // a wake may come before the answer is taken in
    this.#events = events + this.#events;
  }

  /** Home answered the held poll at once (a POST, a presence event): home no longer holds it. */
  woken(pending: PendingChanges, events: string): void {
    this.#wasWoken = true;
    this.#isHeldAtHome = false;
    this.#pendingStarts = new Map(pending.starts);
    this.#pendingRemovals = new Set(pending.removals);
    this.#events += events;
    this.#poll?.answerNow();
  }

  /** A poll home does not hold is answered at once (home had events for it, or it had messages). */
  get hasQueuedEvents(): boolean {
    return !this.#isHeldAtHome;
  }

  holdPoll(poll: HeldPoll): void {
    this.#poll = poll;
  }

  holds(poll: HeldPoll): boolean {
    return this.#poll === poll;
  }

  releasePoll(poll: HeldPoll): void {
    if (this.#poll !== poll) return;
    this.#poll = undefined;
    this.#letGo();
  }

  /** Home sets the poll channels itself when it wakes the poll. */
  setPollChannels(): void {}

  answerTail(isCurrent: boolean): string {
    if (this.#poll === undefined) this.#letGo(); // answered without being held (messages came meanwhile)
    const events = isCurrent ? this.#events : '';
    if (isCurrent) this.#events = '';
    return `,"session":"${this.id}"${events}`;
  }

  /** The poll ended here without a wake: home stops holding it. */
  #letGo(): void {
    if (!this.#isHeldAtHome) return;
    this.#isHeldAtHome = false;
    this.#relay.pollEnded(this);
  }

  // --- Streams ---------------------------------------------------------------------------------------

  attachStream(stream: SessionStream, isPresenceWanted: boolean): void {
    this.#stream = stream;
    this.#token = this.#relay.streamAttached(this, isPresenceWanted, stream.channels);
  }

  detachStream(stream: SessionStream): void {
    if (this.#stream !== stream) return;
    this.#stream = undefined;
    this.#relay.streamDetached(this, stream.channels);
  }
}

/** A poll of another node held as a session's own: answering it now is a wake sent there. */
class RemotePoll implements HeldPoll {
  readonly remote: RemoteHolder;
  readonly session: Session;
  /** The channels the poll is held with. */
  readonly channels: readonly string[];
  readonly #wake: (poll: RemotePoll) => void;

  constructor(session: Session, remote: RemoteHolder, channels: readonly string[], wake: (poll: RemotePoll) => void) {
    this.session = session;
    this.remote = remote;
    this.channels = channels;
    this.#wake = wake;
  }

  answerNow(): void {
    this.#wake(this);
  }
}

export class SessionRelay {
  readonly #bus: ControlBus;
  readonly #registry: SessionRegistry;
  readonly #hub: Hub;
  readonly #logger: Logger;
  /** This node's part of the ids it gives. */
  readonly #nodePart: string;
  #nextRequest = 0;
  readonly #inFlight = new Map<number, InFlight>();
  #nextToken = 0;
  /** Polls held here for sessions of other nodes, by token (from before home answers: a wake may come first). */
  readonly #polls = new Map<string, RemoteSession>();
  /** Streams open here on sessions of other nodes, by token. */
  readonly #streams = new Map<string, RemoteSession>();
  /** Nodes that said bye or left a request unanswered, until when they are not asked (heard from: asked again). */
  readonly #down = new Map<string, number>();
  #lastRenewMs = Date.now();
  #isClosed = false;

  constructor(bus: ControlBus, registry: SessionRegistry, hub: Hub, logger: Logger) {
    this.#bus = bus;
    this.#registry = registry;
    this.#hub = hub;
    this.#logger = logger;
    this.#nodePart = NODE_PART.test(bus.nodeId) ? bus.nodeId : `~${Buffer.from(bus.nodeId).toString('base64url')}`;
    bus.on(TOPIC_REQUEST, (payload, from) => this.#onRequest(payload, from));
    bus.on(TOPIC_REPLY, (payload, from) => this.#onReply(payload, from));
    bus.on(TOPIC_NOTICE, (payload, from) => this.#onNotice(payload, from));
    registry.useRelay(this);
    bus.broadcast(TOPIC_NOTICE, JSON.stringify({ op: 'hello' } satisfies WireNotice));
  }

  /** A fresh id of a session of this node: 128 random bits, after the node's part. */
  newId(): string {
    return `${this.#nodePart}.${randomBytes(16).toString('base64url')}`;
  }

  /** The home node of `id` when that is another node; undefined for this node's ids (and ids of no node). */
  homeOf(id: string): string | undefined {
    const dot = id.lastIndexOf('.');
    if (dot <= 0 || !RANDOM_PART.test(id.slice(dot + 1))) return undefined;
    const part = id.slice(0, dot);
    if (part === this.#nodePart) return undefined;
    if (NODE_PART.test(part)) return part;
    if (!ENCODED_NODE_PART.test(part)) return undefined;
    const node = Buffer.from(part.slice(1), 'base64url').toString('utf8');
    return node === '' || node === this.#bus.nodeId ? undefined : node;
  }

  // --- This node asks a session's home --------------------------------------------------------------

  async find(home: string, id: string, owner: string): Promise<RemoteSession | undefined> {
    const found = (await this.#request(home, { op: 'peek', id, owner }, RELAY_TIMEOUT_MS)) as { pending: PendingChanges } | null | undefined;
    return found == null ? undefined : new RemoteSession(this, home, id, owner, found.pending);
  }

  /** Tells home a poll of its session arrived here; false when home has no such session (or did not answer). */
  async arrivePoll(found: ListenSession, arrival: PollArrival): Promise<boolean> {
    const session = found as RemoteSession;
    const token = this.#newToken();
    const channels = [...arrival.channels];
    this.#polls.set(token, session); // before asking: home's wake may come before its answer is taken in
    const asked = this.#request(
      session.home,
      {
        op: 'poll',
        id: session.id,
        owner: session.owner,
        token,
        listed: [...arrival.listed],
        cursorNames: [...arrival.cursorNames],
        channels,
        presence: arrival.isPresenceWanted,
        canSee: arrival.isPresenceWanted ? channels.filter((c) => arrival.canSeePresence(c)) : [],
        wouldHold: arrival.wouldHold(),
      },
      RELAY_TIMEOUT_MS,
    );
    let answer: { held: boolean; events: string } | null | undefined;
    try {
      answer = (await asked) as typeof answer;
    } finally {
      if (answer == null || !answer.held) this.#polls.delete(token);
    }
    if (answer == null) return false;
    session.arrived(token, answer.held, answer.events);
    return true;
  }

  /** A poll held at home's request ended here (answered by messages, its timeout, or its client left). */
  pollEnded(session: RemoteSession): void {
    const token = session.token!;
    this.#polls.delete(token);
    this.#notify(session.home, { op: 'ended', id: session.id, token });
  }

  /** A stream opened here on a session of another node; returns its token. */
  streamAttached(session: RemoteSession, isPresenceWanted: boolean, channels: readonly string[]): string {
    const token = this.#newToken();
    this.#streams.set(token, session);
    this.#notify(session.home, { op: 'attach', id: session.id, owner: session.owner, token, presence: isPresenceWanted, channels: [...channels] });
    return token;
  }

  streamDetached(session: RemoteSession, channels: readonly string[]): void {
    const token = session.token!;
    this.#streams.delete(token);
    this.#notify(session.home, { op: 'ended', id: session.id, token, channels: [...channels] });
  }

  /** A POST naming a session of `home`, applied there; `denied`: the client may not make it (said after the owner check). */
  async change(home: string, id: string, owner: string, request: SessionChangeRequest, denied: HeraldError | undefined): Promise<SessionChangeResult> {
    const denial = denied === undefined ? undefined : { code: denied.code, message: denied.message };
    const result = await this.#request(home, { op: 'change', id, owner, denied: denial, ...wireChange(request) }, RELAY_TIMEOUT_MS);
    if (result == null) throw new HeraldError('session_not_found');
    return result as SessionChangeResult;
  }

  // --- This node is home ----------------------------------------------------------------------------

  /**
   * A POST on a session of this node (made here or relayed): applied to its state here, or forwarded to
   * the node whose stream holds it. If that stream ended meanwhile, applied here after all.
   */
  async changeHere(id: string, owner: string, request: SessionChangeRequest, denied: HeraldError | undefined): Promise<SessionChangeResult> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const session = this.#require(id, owner);
      if (denied !== undefined) throw denied;
      const holder = session.remoteStream;
      if (holder === undefined) {
        await this.#hub.readyFor(request.subscribe);
        const ready = this.#require(id, owner);
        if (ready.remoteStream === undefined) return ready.change(request, this.#hub);
        continue; // a stream of another node took it meanwhile
      }
      const forwarded = { op: 'stream-change', id, token: holder.token, ...wireChange(request), presence: request.presence ?? session.isPresenceWanted } as const;
      const result = (await this.#request(holder.node, forwarded, FORWARD_TIMEOUT_MS)) as SessionChangeResult | null | undefined;
      // The stream's node did not answer: the client listens again from its cursor.
      if (result === undefined) throw new HeraldError('session_not_found');
      if (result !== null) {
        session.remoteStreamChanged(holder, result.channels);
        return result;
      }
      // The stream is gone there. Still holding the session here means its `ended` was lost: what it
      // last had is not known, so the session goes (its client listens again from its cursor).
      if (this.#registry.get(id) === session && session.remoteStream === holder) {
        this.#registry.drop(session);
        throw new HeraldError('session_not_found');
      }
    }
    throw new HeraldError('session_not_found');
  }

  #require(id: string, owner: string): Session {
    const session = this.#registry.peekOwned(id, owner);
    if (session === undefined) throw new HeraldError('session_not_found');
    return session;
  }

  #onPoll(request: Extract<WireRequest, { op: 'poll' }>, from: string): { held: boolean; events: string } | null {
    const session = this.#registry.peekOwned(request.id, request.owner);
    if (session === undefined) return null;
    const canSee = new Set(request.canSee);
    session.pollArrived({
      listed: new Set(request.listed),
      cursorNames: new Set(request.cursorNames),
      channels: request.channels,
      isPresenceWanted: request.presence,
      canSeePresence: (channel) => canSee.has(channel),
      wouldHold: () => request.wouldHold,
    });
    if (request.wouldHold && !session.hasQueuedEvents) {
      session.holdPoll(new RemotePoll(session, { node: from, token: request.token }, request.channels, (poll) => this.#wake(poll)));
      return { held: true, events: '' };
    }
    return { held: false, events: session.takeEvents() };
  }

  /** Answers a held poll of another node now: as Long poll's own answer at once, the rest done there. */
  #wake(poll: RemotePoll): void {
    const { session } = poll;
    if (!session.holds(poll)) return;
    session.releasePoll(poll);
    const held = new Map<string, StartAt>(poll.channels.map((channel) => [channel, 'head']));
    let channels: Iterable<string> = poll.channels;
    try {
      channels = session.withPending(held, new Set(poll.channels)).keys();
    } catch {
      // too many channels together: the poll is answered with its own (the rest stays pending)
    }
    session.setPollChannels(channels);
    const events = session.takeEvents();
    this.#notify(poll.remote.node, { op: 'wake', id: session.id, token: poll.remote.token, pending: session.pendingChanges(), events });
  }

  // --- This node holds a stream of a session of another node -----------------------------------------

  async #onStreamChange(request: Extract<WireRequest, { op: 'stream-change' }>): Promise<SessionChangeResult | null> {
    const session = this.#streams.get(request.token);
    if (session === undefined || session.id !== request.id) return null;
    const change = changeOf(request);
    // The new channels start where this node's windows say (a window here may lag behind home's).
    await this.#hub.readyFor(change.subscribe);
    const stream = session.stream;
    if (stream === undefined) return null;
    return changeStream(stream, change, request.presence ?? false, this.#hub);
  }

  // --- The bus ----------------------------------------------------------------------------------------

  #newToken(): string {
    return (++this.#nextToken).toString(36);
  }

  #request(node: string, body: DistributiveOmit<WireRequest, 'r'>, timeoutMs: number): Promise<unknown> {
    if (this.#isClosed || this.#inFlight.size >= MAX_IN_FLIGHT || (this.#down.get(node) ?? 0) > Date.now()) return Promise.resolve(undefined);
    const r = ++this.#nextRequest;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#inFlight.delete(r);
        this.#down.set(node, Math.max(this.#down.get(node) ?? 0, Date.now() + SUSPECT_MS));
        resolve(undefined);
      }, timeoutMs);
      this.#inFlight.set(r, { node, resolve, reject, timer });
      this.#bus.sendTo(node, TOPIC_REQUEST, JSON.stringify({ r, ...body }));
    });
  }

  #notify(node: string, notice: WireNotice): void {
    if (!this.#isClosed) this.#bus.sendTo(node, TOPIC_NOTICE, JSON.stringify(notice));
  }

  #heard(from: string): void {
    if (this.#down.size > 0) this.#down.delete(from);
  }

  #onRequest(payload: string, from: string): void {
    this.#heard(from);
    let r = 0;
    const reply = (body: { ok: unknown } | { error: WireError }): void => this.#bus.sendTo(from, TOPIC_REPLY, JSON.stringify({ r, ...body }));
    const fail = (error: unknown): void => {
      if (!(error instanceof HeraldError)) this.#logger.warn({ err: error }, 'relayed session request failed');
      const known = error instanceof HeraldError ? error : new HeraldError('internal');
      reply({ error: { code: known.code, message: known.message } });
    };
    try {
      const request = JSON.parse(payload) as WireRequest;
      r = request.r;
      const result = this.#handle(request, from);
      if (result instanceof Promise) result.then((ok) => reply({ ok: ok ?? null }), fail);
      else reply({ ok: result ?? null });
    } catch (error) {
      fail(error);
    }
  }

  #handle(request: WireRequest, from: string): unknown {
    switch (request.op) {
      case 'peek': {
        const session = this.#registry.peekOwned(request.id, request.owner);
        if (session === undefined) return null;
        this.#registry.touch(session); // so that it cannot expire before the listen request's next step
        return { pending: session.pendingChanges() };
      }
      case 'poll':
        return this.#onPoll(request, from);
      case 'change': {
        const denied = request.denied === undefined ? undefined : new HeraldError(errorCode(request.denied.code), request.denied.message);
        return this.changeHere(request.id, request.owner, changeOf(request), denied);
      }
      case 'stream-change':
        return this.#onStreamChange(request);
    }
  }

  #onReply(payload: string, from: string): void {
    this.#heard(from);
    let reply: { r: number; ok?: unknown; error?: WireError };
    try {
      reply = JSON.parse(payload) as typeof reply;
    } catch {
      return;
    }
    const call = this.#inFlight.get(reply.r);
    if (call === undefined || call.node !== from) return; // late: its request was taken as unanswered
    this.#inFlight.delete(reply.r);
    clearTimeout(call.timer);
    if (reply.error !== undefined) call.reject(new HeraldError(errorCode(reply.error.code), reply.error.message));
    else call.resolve(reply.ok ?? null);
  }

  #onNotice(payload: string, from: string): void {
    let notice: WireNotice;
    try {
      notice = JSON.parse(payload) as WireNotice;
    } catch {
      return;
    }
    if (notice.op === 'bye') return this.#onBye(from);
    this.#heard(from);
    try {
      switch (notice.op) {
        case 'attach':
          this.#registry.peekOwned(notice.id, notice.owner)?.attachRemoteStream({ node: from, token: notice.token }, notice.presence, notice.channels);
          break;
        case 'ended':
          this.#registry.get(notice.id)?.remoteEnded(from, notice.token, notice.channels);
          break;
        case 'renew':
          for (const [id, token] of notice.holds) this.#registry.get(id)?.remoteRenewed(from, token);
          break;
        case 'wake': {
          const session = this.#polls.get(notice.token);
          if (session === undefined || session.id !== notice.id) break; // the poll ended here meanwhile
          this.#polls.delete(notice.token);
          session.woken(notice.pending, notice.events);
          break;
        }
        case 'hello':
          break;
      }
    } catch (error) {
      this.#logger.warn({ err: error, op: notice.op }, 'session notice failed');
    }
  }

  /** A node stops: it is asked nothing for a while, and what was waiting for it gives up now. */
  #onBye(node: string): void {
    if (node === this.#bus.nodeId) return;
    this.#down.set(node, Date.now() + DOWN_MS);
    for (const [r, call] of this.#inFlight) {
      if (call.node !== node) continue;
      this.#inFlight.delete(r);
      clearTimeout(call.timer);
      call.resolve(undefined);
    }
  }

  /** From the shared sweep: renews at home the sessions this node's listen requests hold. */
  tick(nowMs: number): void {
    for (const [node, untilMs] of this.#down) if (untilMs <= nowMs) this.#down.delete(node);
    if (nowMs - this.#lastRenewMs < RENEW_MS) return;
    this.#lastRenewMs = nowMs;
    const byHome = new Map<string, [string, string][]>();
    const add = (session: RemoteSession, token: string): void => {
      let holds = byHome.get(session.home);
      if (holds === undefined) byHome.set(session.home, (holds = []));
      holds.push([session.id, token]);
    };
    for (const [token, session] of this.#polls) add(session, token);
    for (const [token, session] of this.#streams) add(session, token);
    for (const [home, holds] of byHome) {
      for (let i = 0; i < holds.length; i += MAX_RENEWALS_PER_NOTICE) this.#notify(home, { op: 'renew', holds: holds.slice(i, i + MAX_RENEWALS_PER_NOTICE) });
    }
  }

  /** The node stops: what waits gives up, and the other nodes stop asking this one at once. */
  close(): void {
    if (this.#isClosed) return;
    this.#bus.broadcast(TOPIC_NOTICE, JSON.stringify({ op: 'bye' } satisfies WireNotice));
    this.#isClosed = true;
    for (const call of this.#inFlight.values()) {
      clearTimeout(call.timer);
      call.resolve(undefined);
    }
    this.#inFlight.clear();
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function wireChange(request: SessionChangeRequest): WireChange {
  return {
    subscribe: [...request.subscribe],
    unsubscribe: [...request.unsubscribe],
    ...(request.presence === undefined ? {} : { presence: request.presence }),
    canSee: [...request.subscribe.keys()].filter((channel) => request.canSeePresence(channel)),
  };
}

function changeOf(wire: WireChange): SessionChangeRequest {
  const canSee = new Set(wire.canSee);
  return { subscribe: new Map(wire.subscribe), unsubscribe: new Set(wire.unsubscribe), presence: wire.presence, canSeePresence: (channel) => canSee.has(channel) };
}

function errorCode(code: string): ErrorCode {
  return Object.hasOwn(ERRORS, code) ? (code as ErrorCode) : 'internal';
}
