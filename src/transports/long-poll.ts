import type { IncomingMessage, ServerResponse } from 'node:http';
import { scriptSafeJson, validateCallback } from '../frames/script.js';
import { resetJson } from '../frames/reset.js';
import { corsHeaders, type HeaderFields } from '../cors.js';
import { HeraldError } from '../errors.js';
import type { Access } from '../auth/access.js';
import { SubscriptionCursor } from '../hub/cursor.js';
import type { ResetNotice, StartAt, Subscriber } from '../hub/hub.js';
import type { Message } from '../hub/message.js';
import type { HeldPoll, ListenSession } from './sessions.js';
import { parseListenRequest, parsePresenceFlag, sessionParam } from './subscribe-request.js';
import type { HttpTransport, TransportContext } from './transport.js';

const MAX_TIMEOUT_S = 120;
const DEFAULT_TIMEOUT_S = 25;
/** Poll deadlines are kept in buckets this wide, swept by the shared tick: no timer per request. */
const DEADLINE_BUCKET_MS = 250;

interface PollRequest {
  cursor: SubscriptionCursor;
  resets: ResetNotice[];
  limit: number;
  callback: string | undefined;
}

/** An answer encoded once, with its headers, for every poll that gets the same bytes. */
interface EncodedAnswer {
  /** The JSON answer, before JSONP wraps it (a session poll's answer is this plus the session's fields). */
  body: string;
  bytes: Buffer;
  headers: HeaderFields;
  messageCount: number;
}

/** Bounds the shared-answer cache between two hub versions (distinct positions being polled). */
const MAX_CACHED_ANSWERS = 4096;

/**
 * What an anonymous poll without a session led to, by its raw query string: its answer, or the group
 * it waits in. Clients that follow one channel re-poll with identical queries, so the next one skips
 * parsing, cursor decoding and resolving. Valid while the hub's version stays (as the answers are).
 */
interface KnownQuery {
  answer?: EncodedAnswer;
  group?: WaitGroup;
  timeoutS: number;
}

interface Waiter {
  res: ServerResponse;
  group: WaitGroup;
  deadlineBucket: number;
  /** The session of a poll made with `session=`, and the handle it answers the poll through. */
  session?: { session: ListenSession; poll: HeldPoll };
}

/**
 * Every held poll waiting at the same position of the same channels, with the same limit and callback:
 * they will get byte-identical answers, so the answer is encoded once for all of them.
 */
class WaitGroup implements Subscriber {
  readonly key: string;
  readonly request: PollRequest;
  readonly waiters = new Set<Waiter>();
  readonly #transport: LongPollTransport;

  constructor(key: string, request: PollRequest, transport: LongPollTransport) {
    this.key = key;
    this.request = request;
    this.#transport = transport;
  }

  onMessage(message: Message): void {
    const position = this.request.cursor.position(message.channel);
    if (position === undefined || (position.epoch === message.epoch && message.offset <= position.offset)) return;
    this.#transport.answerGroup(this);
  }

  /** The held polls' positions mean nothing in the new history: each is answered, and its next poll hears of the reset. */
  onReset(): void {
    this.#transport.answerGroupEmpty(this);
  }
}

/**
 * GET /v1/poll — long polling (`timeout` seconds, default 25), short polling (`timeout=0`) and JSONP
 * (`callback=fn`). Answers `{"messages":[…],"cursor"}` as soon as anything lies past the cursor.
 */
export class LongPollTransport implements HttpTransport {
  readonly #ctx: TransportContext;
  readonly #groups = new Map<string, WaitGroup>();
  readonly #deadlines = new Map<number, Set<Waiter>>();
  /** Answers by request key, and what known queries led to: both valid while the hub's version is #cachedVersion. */
  readonly #answers = new Map<string, EncodedAnswer | null>();
  readonly #knownQueries = new Map<string, KnownQuery>();
  #cachedVersion = -1;
  /** An answer's header fields but its length, CORS included, per content type: built once. */
  readonly #jsonHeaders: HeaderFields;
  readonly #scriptHeaders: HeaderFields;

  constructor(ctx: TransportContext) {
    this.#ctx = ctx;
    const common = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', ...corsHeaders(ctx.config) };
    this.#jsonHeaders = { 'Content-Type': 'application/json; charset=utf-8', ...common };
    this.#scriptHeaders = { 'Content-Type': 'application/javascript; charset=utf-8', ...common };
  }

  handle(req: IncomingMessage, res: ServerResponse, url: URL): void | Promise<void> {
    const isAnonymous = req.headers.authorization === undefined;
    if (isAnonymous && this.#answerKnownQuery(res, url.search)) return;
    return this.#handleParsed(req, res, url, isAnonymous);
  }

  /** Answers (or holds) a poll whose raw query was seen since the hub's version last moved; false when it was not. */
  #answerKnownQuery(res: ServerResponse, query: string): boolean {
    this.#dropStaleCaches();
    const known = this.#knownQueries.get(query);
    if (known === undefined) return false;
    if (known.answer !== undefined) {
      this.#write(res, known.answer);
      this.#ctx.counters.delivered.poll += known.answer.messageCount;
      return true;
    }
    if (known.group === undefined || this.#groups.get(known.group.key) !== known.group) return false;
    this.#wait(res, known.group, known.timeoutS);
    return true;
  }

  /** Anything published since the caches were filled may change every answer: they start over. */
  #dropStaleCaches(): void {
    if (this.#cachedVersion === this.#ctx.hub.version) return;
    this.#answers.clear();
    this.#knownQueries.clear();
    this.#cachedVersion = this.#ctx.hub.version;
  }

  /** Remembers what an anonymous poll without a session led to (see KnownQuery). */
  #rememberQuery(query: string, known: KnownQuery): void {
    this.#dropStaleCaches();
    if (this.#knownQueries.size < MAX_CACHED_ANSWERS) this.#knownQueries.set(query, known);
  }

  async #handleParsed(req: IncomingMessage, res: ServerResponse, url: URL, isAnonymous: boolean): Promise<void> {
    const params = url.searchParams;
    const timeoutS = parseTimeout(params.get('timeout'));
    const limit = parseLimit(params.get('limit'), this.#ctx.config.pollBatchLimit);
    const callback = params.has('callback') ? validateCallback(params.get('callback')) : undefined;
    const sessionId = sessionParam(params);
    const asked = parseListenRequest(params, undefined, sessionId !== undefined);
    // Presence events reach a poll through its session only: without one, `presence` is ignored.
    const isPresenceWanted = sessionId !== undefined && parsePresenceFlag(params.get('presence'));
    // Each poll is authorized when it is made (a token that expires while a poll is held is noticed
    // at the next poll, at most `timeout` seconds later).
    const access = await this.#ctx.auth.fromRequest(req, url);
    // The session's home may be another node: then it is asked there (session-relay.ts).
    const previous = sessionId === undefined ? undefined : await this.#ctx.sessions.find(sessionId, access);
    const starts = previous?.withPending(asked.starts, asked.cursorNames) ?? asked.starts;
    for (const channel of starts.keys()) {
      access.requireSubscribe(channel);
      if (isPresenceWanted && asked.starts.has(channel)) access.requireSeePresence(channel);
    }
    await this.#ctx.hub.readyFor(starts);
    if (res.destroyed) return;
    const request = this.#resolve(starts, limit, callback);
    if (sessionId !== undefined) {
      const session = await this.#ctx.sessions.arrivePoll(sessionId, access, previous, {
        listed: new Set(asked.starts.keys()),
        cursorNames: asked.cursorNames,
        channels: request.cursor.channels,
        isPresenceWanted,
        canSeePresence: (channel) => access.canSeePresence(channel),
        wouldHold: () => timeoutS > 0 && this.#sharedAnswer(request) === undefined,
      });
      this.#showPresence(access, starts.keys(), timeoutS);
      this.#handleSessionPoll(res, request, timeoutS, session);
      return;
    }
    this.#showPresence(access, starts.keys(), timeoutS);
    // Only what any anonymous poll with these bytes would get is remembered: no token, no reset.
    const isRememberable = isAnonymous && !access.hasToken && request.resets.length === 0;
    let answer = this.#sharedAnswer(request);
    if (answer === undefined && timeoutS === 0) answer = this.#encode(this.#emptyAnswer(request), 0, callback);
    if (answer !== undefined) {
      if (isRememberable) this.#rememberQuery(url.search, { answer, timeoutS });
      this.#write(res, answer);
      this.#ctx.counters.delivered.poll += answer.messageCount;
    } else {
      const group = this.#hold(res, request, timeoutS);
      if (isRememberable) this.#rememberQuery(url.search, { group, timeoutS });
    }
  }

  /**
   * A polling user has no connection to watch: each poll keeps it present for the time the poll may
   * be held plus `--presence-timeout`, so it leaves that long after its last poll. All of one user's
   * polling tabs count as one connection.
   */
  #showPresence(access: Access, channels: Iterable<string>, timeoutS: number): void {
    if (access.sub === undefined) return;
    const expiresAtMs = Date.now() + timeoutS * 1000 + this.#ctx.config.presenceTimeoutMs;
    for (const channel of channels) {
      if (access.canShowPresence(channel)) this.#ctx.presence.enter(channel, `poll:${access.sub}`, access.sub, access.info, expiresAtMs);
    }
  }

  #resolve(starts: ReadonlyMap<string, StartAt>, limit: number, callback: string | undefined): PollRequest {
    const request: PollRequest = { cursor: new SubscriptionCursor(), resets: [], limit, callback };
    for (const [channel, start] of starts) {
      const { position, reset } = this.#ctx.hub.resolve(channel, start);
      request.cursor.set(channel, position);
      if (reset !== undefined) request.resets.push(reset);
    }
    return request;
  }

  /** A poll made with `session=`: answered as any poll, plus the session's fields; held where the session finds it. */
  #handleSessionPoll(res: ServerResponse, request: PollRequest, timeoutS: number, session: ListenSession): void {
    const answer = this.#sharedAnswer(request);
    if (answer === undefined && timeoutS > 0 && !session.hasQueuedEvents) {
      this.#hold(res, request, timeoutS, session);
      return;
    }
    const sent = answer ?? this.#encode(this.#emptyAnswer(request), 0, request.callback);
    this.#ctx.counters.delivered.poll += sent.messageCount;
    this.#writeWithSession(res, sent, session, true, request.callback);
  }

  /**
   * Answers a session's held poll at once (a POST changed its channels, or a presence event came): with
   * the held channels, plus the session's pending additions at their starts, minus its pending removals.
   */
  #answerSessionPoll(waiter: Waiter): void {
    if (!waiter.group.waiters.has(waiter) || waiter.session === undefined) return;
    const { session, poll } = waiter.session;
    const isCurrent = session.holds(poll);
    const { request } = waiter.group;
    const held = new Map<string, StartAt>();
    for (const channel of request.cursor.channels) held.set(channel, { ...request.cursor.position(channel)! });
    this.#release(waiter);
    const starts = session.withPending(held, new Set(held.keys()));
    // With the session's home on another node, the channels it added may not be loaded here yet.
    const ready = this.#ctx.hub.readyFor(starts);
    if (ready === undefined) return this.#answerMerged(waiter, starts, session, isCurrent);
    ready.then(
      () => this.#answerMerged(waiter, starts, session, isCurrent),
      () => this.#answerMerged(waiter, held, session, isCurrent), // the additions stay pending for the next poll
    );
  }

  #answerMerged(waiter: Waiter, starts: ReadonlyMap<string, StartAt>, session: ListenSession, isCurrent: boolean): void {
    const { request } = waiter.group;
    const merged = this.#resolve(starts, request.limit, request.callback);
    session.setPollChannels(merged.cursor.channels);
    const answer = this.#sharedAnswer(merged) ?? this.#encode(this.#emptyAnswer(merged), 0, request.callback);
    this.#ctx.counters.delivered.poll += answer.messageCount;
    this.#writeWithSession(waiter.res, answer, session, isCurrent, request.callback);
  }

  /** `answer` with `,"session":…` (and, for the session's own poll, its queued presence events) appended. */
  #writeWithSession(res: ServerResponse, answer: EncodedAnswer, session: ListenSession, isCurrent: boolean, callback: string | undefined): void {
    const body = `${answer.body.slice(0, -1)}${session.answerTail(isCurrent)}}`;
    this.#write(res, this.#encode(body, answer.messageCount, callback));
  }

  /** Writes a shared answer to one held poll, which it releases. */
  #answerWaiter(waiter: Waiter, answer: EncodedAnswer): void {
    const isCurrent = waiter.session !== undefined && waiter.session.session.holds(waiter.session.poll);
    this.#release(waiter);
    if (waiter.session === undefined) this.#write(waiter.res, answer);
    else this.#writeWithSession(waiter.res, answer, waiter.session.session, isCurrent, waiter.group.request.callback);
  }

  /** Holds the poll in the group of its request (made on first use); returns the group. */
  #hold(res: ServerResponse, request: PollRequest, timeoutS: number, session?: ListenSession): WaitGroup {
    const key = requestKey(request);
    let group = this.#groups.get(key);
    if (group === undefined) {
      group = new WaitGroup(key, request, this);
      this.#groups.set(key, group);
      for (const channel of request.cursor.channels) this.#ctx.hub.attach(channel, group);
    }
    this.#wait(res, group, timeoutS, session);
    return group;
  }

  #wait(res: ServerResponse, group: WaitGroup, timeoutS: number, session?: ListenSession): void {
    const deadlineBucket = Math.ceil((Date.now() + timeoutS * 1000) / DEADLINE_BUCKET_MS);
    const waiter: Waiter = { res, group, deadlineBucket };
    if (session !== undefined) {
      waiter.session = { session, poll: { answerNow: () => this.#answerSessionPoll(waiter) } };
      session.holdPoll(waiter.session.poll);
    }
    group.waiters.add(waiter);
    let bucket = this.#deadlines.get(deadlineBucket);
    if (bucket === undefined) {
      bucket = new Set();
      this.#deadlines.set(deadlineBucket, bucket);
    }
    bucket.add(waiter);
    this.#ctx.counters.connections.poll++;
    // The client went away before an answer: release what it held (a no-op once answered).
    res.on('close', () => this.#release(waiter));
    if (res.destroyed) this.#release(waiter); // it went while the session's home was asked
  }

  /** Answers every poll of the group with one shared body. Called from hub fan-out. */
  answerGroup(group: WaitGroup): void {
    const answer = this.#sharedAnswer(group.request);
    if (answer === undefined) return;
    this.#ctx.counters.delivered.poll += answer.messageCount * group.waiters.size;
    for (const waiter of [...group.waiters]) this.#answerWaiter(waiter, answer);
  }

  answerGroupEmpty(group: WaitGroup): void {
    for (const waiter of [...group.waiters]) this.#answerEmpty(waiter);
  }

  /**
   * The encoded answer to `request`, or undefined when nothing lies past its cursor. Polls at the
   * same position (most of them, when many clients follow one channel) share one answer until the
   * hub's version moves; a request with reset notices is answered for itself alone.
   */
  #sharedAnswer(request: PollRequest): EncodedAnswer | undefined {
    if (request.resets.length > 0) return this.#computeAnswer(request);
    this.#dropStaleCaches();
    const key = requestKey(request);
    let answer = this.#answers.get(key);
    if (answer === undefined) {
      answer = this.#computeAnswer(request) ?? null;
      if (this.#answers.size < MAX_CACHED_ANSWERS) this.#answers.set(key, answer);
    }
    return answer ?? undefined;
  }

  #computeAnswer(request: PollRequest): EncodedAnswer | undefined {
    const answer = this.#answer(request);
    return answer === undefined ? undefined : this.#encode(answer.body, answer.messageCount, request.callback);
  }

  #release(waiter: Waiter): void {
    const { group } = waiter;
    if (!group.waiters.delete(waiter)) return;
    this.#ctx.counters.connections.poll--;
    if (waiter.session !== undefined) waiter.session.session.releasePoll(waiter.session.poll);
    const bucket = this.#deadlines.get(waiter.deadlineBucket);
    bucket?.delete(waiter);
    if (bucket?.size === 0) this.#deadlines.delete(waiter.deadlineBucket);
    if (group.waiters.size === 0) {
      this.#groups.delete(group.key);
      for (const channel of group.request.cursor.channels) this.#ctx.hub.detach(channel, group);
    }
  }

  /** The answer body when something lies past the cursor (a reset counts), else undefined. */
  #answer(request: PollRequest): { body: string; messageCount: number } | undefined {
    const cursor = cloneCursor(request.cursor);
    const entries: string[] = [];
    for (const reset of request.resets) entries.push(resetJson(reset, cursor.toString(), '{"reset":true,'));
    let room = request.limit;
    for (const channel of request.cursor.channels) {
      if (room === 0) break;
      const messages = this.#ctx.hub.read(channel, request.cursor.position(channel)!.offset, room);
      room -= messages.length;
      for (const message of messages) {
        cursor.advance(message);
        entries.push(message.envelope(cursor.toString()));
      }
    }
    if (entries.length === 0) return undefined;
    return {
      body: `{"messages":[${entries.join(',')}],"cursor":"${cursor}"}`,
      messageCount: request.limit - room,
    };
  }

  #emptyAnswer(request: PollRequest): string {
    return `{"messages":[],"cursor":"${request.cursor}"}`;
  }

  #encode(body: string, messageCount: number, callback: string | undefined): EncodedAnswer {
    // `/**/` keeps the answer from starting with attacker-chosen bytes (the Rosetta Flash class of attacks).
    const bytes = Buffer.from(callback === undefined ? body : `/**/${callback}(${scriptSafeJson(body)});`);
    // One object per answer (shared by every poll it answers), written by writeHead alone: Node's fast path.
    const headers = { ...(callback === undefined ? this.#jsonHeaders : this.#scriptHeaders), 'Content-Length': bytes.length };
    return { body, bytes, headers, messageCount };
  }

  #write(res: ServerResponse, answer: EncodedAnswer): void {
    res.writeHead(200, answer.headers);
    res.end(answer.bytes);
  }

  /** Answers a poll that waited in vain: nothing new, and the cursor it came with. */
  #answerEmpty(waiter: Waiter): void {
    const { request } = waiter.group;
    this.#answerWaiter(waiter, this.#encode(this.#emptyAnswer(request), 0, request.callback));
  }

  tick(nowMs: number): void {
    const due = Math.floor(nowMs / DEADLINE_BUCKET_MS);
    for (const [bucketId, bucket] of this.#deadlines) {
      if (bucketId > due) continue;
      for (const waiter of [...bucket]) this.#answerEmpty(waiter);
    }
  }

  closeAll(): void {
    for (const bucket of [...this.#deadlines.values()]) {
      for (const waiter of [...bucket]) this.#answerEmpty(waiter);
    }
  }
}

function requestKey(request: PollRequest): string {
  return `${request.cursor}|${request.limit}|${request.callback ?? ''}`;
}

function cloneCursor(source: SubscriptionCursor): SubscriptionCursor {
  const copy = new SubscriptionCursor();
  for (const channel of source.channels) copy.set(channel, { ...source.position(channel)! });
  return copy;
}

function parseTimeout(text: string | null): number {
  if (text === null) return DEFAULT_TIMEOUT_S;
  const seconds = Number(text);
  if (text.trim() === '' || !Number.isFinite(seconds) || seconds < 0 || seconds > MAX_TIMEOUT_S) {
    throw new HeraldError('timeout_invalid');
  }
  return seconds;
}

function parseLimit(text: string | null, fallback: number): number {
  if (text === null) return fallback;
  const limit = Number(text);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new HeraldError('limit_invalid');
  return limit;
}
