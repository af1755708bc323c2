// Real-client helpers for the integration tests: the `eventsource` package for SSE, `ws` for WebSocket,
// and fetch for long/short polling, JSONP, NDJSON streams and the hidden-iframe stream. Every wait is
// bounded and event-driven: it fails with a message saying what it was waiting for and what it got.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { runInNewContext } from 'node:vm';
import { EventSource, type FetchLike } from 'eventsource';
import WebSocket from 'ws';

export const DEFAULT_WAIT_MS = 5000;
/** A bound on each test suite, so that a hang fails with "timed out" instead of stalling the run. */
export const SUITE_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------------

/** A growing list of things a client received, with bounded waits on its contents. */
export class Inbox<T> {
  readonly items: T[] = [];
  readonly #listeners = new Set<() => void>();
  #failure: Error | undefined;

  push(item: T): void {
    this.items.push(item);
    for (const listener of [...this.#listeners]) listener();
  }

  /** Re-runs pending waits, for predicates that also look at state outside this inbox. */
  poke(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  /** Records that nothing more will arrive because of `err`; pending and later waits reject with it. */
  fail(err: Error): void {
    this.#failure ??= err;
    for (const listener of [...this.#listeners]) listener();
  }

  get failure(): Error | undefined {
    return this.#failure;
  }

  /** Calls `onItem` for every item, those already here and those to come, and `onFail` on failure. */
  forEach(onItem: (item: T) => void, onFail: (err: Error) => void = () => {}): void {
    let seen = 0;
    let hasFailed = false;
    const listener = (): void => {
      while (seen < this.items.length) onItem(this.items[seen++]!);
      if (this.#failure !== undefined && !hasFailed) {
        hasFailed = true;
        onFail(this.#failure);
      }
    };
    this.#listeners.add(listener);
    listener();
  }

  /** Resolves once `predicate(items)` holds; rejects after `timeoutMs` or when the client failed. */
  until(predicate: (items: readonly T[]) => boolean, what: string, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (predicate(this.items)) {
          done();
          resolve();
          return true;
        }
        if (this.#failure !== undefined) {
          done();
          reject(new Error(`while waiting for ${what}: ${this.#failure.message}; got ${describe(this.items)}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${describe(this.items)}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.#listeners.delete(listener);
      };
      const listener = (): void => void check();
      this.#listeners.add(listener);
      check();
    });
  }

  /** Resolves with the first item matching `predicate` (already received or still to come). */
  async find(predicate: (item: T) => boolean, what: string, timeoutMs = DEFAULT_WAIT_MS): Promise<T> {
    await this.until((items) => items.some(predicate), what, timeoutMs);
    return this.items.find(predicate)!;
  }
}

function describe(items: readonly unknown[]): string {
  const text = JSON.stringify(items);
  return `${items.length} item(s): ${text.length > 1500 ? `${text.slice(0, 1500)}…` : text}`;
}

/**
 * For state with no event to await (a server-side counter): checks `condition` every few milliseconds,
 * failing with `what` after `timeoutMs`.
 */
export async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** `promise`, or a rejection naming `what` after `timeoutMs`. */
export async function withTimeout<T>(promise: Promise<T>, what: string, timeoutMs = DEFAULT_WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------------------------------

export interface PublishResult {
  channel: string;
  offset: number;
  epoch: string;
  duplicate?: true;
}

export interface OutgoingMessage {
  channel: string;
  data: unknown;
  event?: string;
  idempotencyKey?: string;
}

/** Publishes one message or a batch and asserts a 200; returns the results. */
export async function publishOk(baseUrl: string, body: OutgoingMessage | { messages: OutgoingMessage[] }, headers: Record<string, string> = {}): Promise<PublishResult[]> {
  const res = await fetch(`${baseUrl}/v1/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `publish answered ${res.status}: ${text}`);
  return (JSON.parse(text) as { results: PublishResult[] }).results;
}

/** Publishes `{n}` for each n in `ns` on `channel`, as one batch. */
export function publishNumbers(baseUrl: string, channel: string, ns: number[]): Promise<PublishResult[]> {
  return publishOk(baseUrl, { messages: ns.map((n) => ({ channel, data: { n } })) });
}

/** The JSON error body `{"error":{"code","message"}}` of a response, asserting its shape. */
export async function errorCode(res: Response): Promise<string> {
  const body = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
  assert.equal(typeof body.error?.code, 'string', `no error code in ${JSON.stringify(body)}`);
  assert.equal(typeof body.error?.message, 'string', `no error message in ${JSON.stringify(body)}`);
  return body.error!.code as string;
}

// ---------------------------------------------------------------------------------------------------
// What subscribers receive
// ---------------------------------------------------------------------------------------------------

export interface Envelope {
  channel: string;
  offset: number;
  epoch: string;
  event?: string;
  data: unknown;
  cursor: string;
}

export interface ResetNotice {
  channel: string;
  epoch: string;
  from: number;
  missed?: number;
  cursor: string;
}

export type Entry = ({ kind: 'message' } & Envelope) | ({ kind: 'reset' } & ResetNotice);

/** Turns a JSON object of a poll/stream body (`"reset":true` marks a reset notice) into an Entry. */
export function toEntry(value: unknown): Entry {
  assert.ok(typeof value === 'object' && value !== null, `not an object: ${JSON.stringify(value)}`);
  const record = value as Record<string, unknown>;
  assert.equal(typeof record.cursor, 'string', `no cursor in ${JSON.stringify(value)}`);
  if (record.reset === true) {
    const { reset: _reset, ...notice } = record;
    return { kind: 'reset', ...(notice as unknown as ResetNotice) };
  }
  assert.equal(typeof record.offset, 'number', `no offset in ${JSON.stringify(value)}`);
  return { kind: 'message', ...(record as unknown as Envelope) };
}

export interface SubscribeOptions {
  /** Channels to subscribe to; empty means "the channels the cursor names". */
  channels: string[];
  cursor?: string;
  since?: 'beginning' | 'head';
  /** A client token, sent as `?token=` (and as an `auth` frame on WebSocket). */
  token?: string;
}

/** One subscription on any transport, normalised: what arrived, in order. */
export interface Subscription {
  readonly entries: Inbox<Entry>;
  /** The cursor that resumes after everything received so far. */
  cursor(): string;
  messages(): Envelope[];
  /** Waits until at least `count` messages (not resets) arrived. */
  waitForMessages(count: number, timeoutMs?: number): Promise<Envelope[]>;
  close(): Promise<void>;
}

abstract class BaseSubscription implements Subscription {
  readonly entries = new Inbox<Entry>();
  protected lastCursor: string | undefined;
  protected readonly label: string;

  constructor(label: string, startCursor: string | undefined) {
    this.label = label;
    this.lastCursor = startCursor;
  }

  protected receive(entry: Entry): void {
    this.lastCursor = entry.cursor;
    this.entries.push(entry);
  }

  cursor(): string {
    assert.ok(this.lastCursor !== undefined, `${this.label}: no cursor received yet`);
    return this.lastCursor;
  }

  messages(): Envelope[] {
    return this.entries.items.filter((e): e is { kind: 'message' } & Envelope => e.kind === 'message');
  }

  async waitForMessages(count: number, timeoutMs = DEFAULT_WAIT_MS): Promise<Envelope[]> {
    await this.entries.until((items) => items.filter((e) => e.kind === 'message').length >= count, `${count} message(s) on ${this.label}`, timeoutMs);
    return this.messages();
  }

  abstract close(): Promise<void>;
}

function subscribeQuery(options: SubscribeOptions, extra: Record<string, string> = {}): URLSearchParams {
  const params = new URLSearchParams();
  for (const channel of options.channels) params.append('channel', channel);
  if (options.cursor !== undefined) params.set('cursor', options.cursor);
  if (options.since !== undefined) params.set('since', options.since);
  if (options.token !== undefined) params.set('token', options.token);
  for (const [key, value] of Object.entries(extra)) params.set(key, value);
  return params;
}

// ---------------------------------------------------------------------------------------------------
// SSE (the `eventsource` package)
// ---------------------------------------------------------------------------------------------------

export interface SseEvent {
  type: string;
  data: string;
  lastEventId: string;
}

export interface SseOptions {
  /** Extra request headers (e.g. Last-Event-ID on the first request). */
  headers?: Record<string, string>;
}

/**
 * An EventSource whose every dispatched event is recorded, and whose fetch is wrapped to record each
 * request's headers, each response's status and headers, and the raw bytes of the stream (comments and
 * `retry:` lines, which EventSource does not surface). `drop()` ends the current response as a network
 * failure would, so EventSource reconnects by itself (with Last-Event-ID).
 */
export class SseClient {
  readonly es: EventSource;
  readonly events = new Inbox<SseEvent>();
  readonly errors = new Inbox<{ code: number | undefined; message: string | undefined }>();
  readonly opens = new Inbox<number>();
  readonly requests: Record<string, string>[] = [];
  readonly responses: { status: number; headers: Headers }[] = [];
  /** Raw text of every response body, one string per connection. */
  readonly raw: string[] = [];
  readonly rawChanges = new Inbox<number>();
  #drop: (() => void) | undefined;

  constructor(url: string, options: SseOptions = {}) {
    const teeFetch: FetchLike = async (input, init) => {
      const headers = { ...init.headers, ...options.headers };
      this.requests.push(headers);
      const res = await fetch(input, { ...(init as RequestInit), headers });
      this.responses.push({ status: res.status, headers: res.headers });
      if (res.body === null) return res;
      const index = this.raw.push('') - 1;
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let isDropped = false;
      let controller!: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({
        start: (c) => {
          controller = c;
        },
        pull: async (c) => {
          try {
            const { done, value } = await reader.read();
            if (isDropped) return;
            if (done) {
              c.close();
              return;
            }
            this.raw[index] += decoder.decode(value, { stream: true });
            this.rawChanges.push(index);
            c.enqueue(value);
          } catch (err) {
            if (!isDropped) c.error(err);
          }
        },
        cancel: (reason) => reader.cancel(reason),
      });
      this.#drop = () => {
        if (isDropped) return;
        isDropped = true;
        try {
          controller.close();
        } catch {
          // The stream had already ended (the server closed it).
        }
        void reader.cancel().catch(() => {});
      };
      return { body, url: res.url, status: res.status, redirected: res.redirected, headers: res.headers };
    };
    this.es = new EventSource(url, { fetch: teeFetch });
    const es = this.es;
    const dispatch = es.dispatchEvent.bind(es);
    // Every event EventSource dispatches goes through here, whatever its type: record it.
    es.dispatchEvent = (event: Event): boolean => {
      if (event.type === 'open') this.opens.push(this.responses.length);
      else if (event.type === 'error') {
        const { code, message } = event as Event & { code?: number; message?: string };
        this.errors.push({ code, message });
        this.opens.poke();
      } else {
        const { data, lastEventId } = event as MessageEvent<string>;
        this.events.push({ type: event.type, data, lastEventId });
      }
      return dispatch(event);
    };
  }

  /** Waits for the (next) open, failing early on an error event. */
  async opened(count = 1, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    const errorsBefore = this.errors.items.length;
    await this.opens.until((items) => items.length >= count || this.errors.items.length > errorsBefore, `SSE open #${count}`, timeoutMs);
    if (this.opens.items.length < count) throw new Error(`SSE failed before opening: ${JSON.stringify(this.errors.items)}`);
  }

  /** Ends the current response as a dropped network connection would; EventSource will reconnect. */
  drop(): void {
    assert.ok(this.#drop !== undefined, 'no SSE response to drop');
    this.#drop();
  }

  close(): void {
    this.es.close();
    this.#drop?.();
  }
}

class SseSubscription extends BaseSubscription {
  readonly client: SseClient;

  constructor(client: SseClient, startCursor: string | undefined) {
    super('sse', startCursor);
    this.client = client;
    client.events.forEach((event) => {
      try {
        const value = JSON.parse(event.data) as Record<string, unknown>;
        // Presence events and the token_expired notice are not entries (they stay in client.events).
        if (typeof value.presence === 'string' || event.type === 'token_expired') return;
        assert.equal(event.lastEventId, value.cursor, 'SSE id: must equal the envelope cursor');
        if (event.type === 'reset') this.receive({ kind: 'reset', ...(value as unknown as ResetNotice) });
        else {
          assert.equal(event.type, (value.event as string | undefined) ?? 'message', 'SSE event: must be the message event or "message"');
          this.receive({ kind: 'message', ...(value as unknown as Envelope) });
        }
      } catch (err) {
        this.entries.fail(err as Error);
      }
    });
    // An error with a status code is a refused connection: EventSource will not reconnect.
    client.errors.forEach((error) => {
      if (error.code !== undefined) this.entries.fail(new Error(`SSE error ${JSON.stringify(error)}`));
    });
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

export async function subscribeSse(baseUrl: string, options: SubscribeOptions): Promise<Subscription & { client: SseClient }> {
  const client = new SseClient(`${baseUrl}/v1/sse?${subscribeQuery(options)}`);
  try {
    await client.opened();
  } catch (err) {
    client.close();
    throw err;
  }
  return new SseSubscription(client, options.cursor);
}

// ---------------------------------------------------------------------------------------------------
// WebSocket (`ws`)
// ---------------------------------------------------------------------------------------------------

export type WsFrame = Record<string, unknown> & { op: string };

/** A `ws` client recording every frame received, with request/reply by id. */
export class WsClient {
  readonly ws: WebSocket;
  readonly frames = new Inbox<WsFrame>();
  readonly closed: Promise<{ code: number; reason: string }>;
  #nextId = 1;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false, 'Herald sends text frames only');
      this.frames.push(JSON.parse(data.toString()) as WsFrame);
    });
    this.closed = new Promise((resolve) => {
      ws.once('close', (code, reason) => {
        this.frames.fail(new Error(`socket closed (${code} ${reason.toString()})`));
        resolve({ code, reason: reason.toString() });
      });
    });
  }

  static async connect(baseUrl: string, options: { query?: URLSearchParams; headers?: Record<string, string>; autoPong?: boolean } = {}): Promise<WsClient> {
    const query = options.query === undefined || options.query.size === 0 ? '' : `?${options.query}`;
    const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/ws${query}`, { headers: options.headers, autoPong: options.autoPong ?? true });
    const client = new WsClient(ws);
    const opened = new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res: IncomingMessage) => {
        reject(new Error(`WebSocket upgrade refused with ${res.statusCode}`));
        res.resume();
        ws.terminate();
      });
      ws.once('error', reject);
    });
    try {
      await withTimeout(opened, 'the WebSocket to open');
    } catch (err) {
      ws.terminate();
      throw err;
    }
    return client;
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** Sends `frame` with a fresh id and resolves with the reply carrying that id. */
  async request(frame: Record<string, unknown>, timeoutMs = DEFAULT_WAIT_MS): Promise<WsFrame> {
    const id = `r${this.#nextId++}`;
    this.ws.send(JSON.stringify({ ...frame, id }));
    return this.frames.find((f) => f.id === id, `a reply to ${JSON.stringify({ ...frame, id })}`, timeoutMs);
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    try {
      await withTimeout(this.closed, 'the WebSocket closing handshake');
    } catch {
      this.ws.terminate();
      await this.closed;
    }
  }
}

/** The status and JSON error code of a refused WebSocket upgrade (101 and no code when accepted). */
export async function wsUpgradeOutcome(baseUrl: string, options: { query?: URLSearchParams; headers?: Record<string, string> } = {}): Promise<{ status: number; code?: string }> {
  const query = options.query === undefined ? '' : `?${options.query}`;
  const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/ws${query}`, { headers: options.headers });
  const outcome = new Promise<{ status: number; code?: string }>((resolve, reject) => {
    ws.once('open', () => {
      ws.close();
      resolve({ status: 101 });
    });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        ws.terminate();
        const code = (JSON.parse(text) as { error: { code: string } }).error.code;
        resolve({ status: res.statusCode ?? 0, code });
      });
    });
    ws.once('error', (err) => {
      if (ws.readyState !== WebSocket.CLOSED && ws.readyState !== WebSocket.CLOSING) reject(err);
    });
  });
  return withTimeout(outcome, `the outcome of a WebSocket upgrade ?${options.query ?? ''}`).finally(() => ws.terminate());
}

class WsSubscription extends BaseSubscription {
  readonly client: WsClient;

  constructor(client: WsClient, startCursor: string | undefined) {
    super('websocket', startCursor);
    this.client = client;
    client.frames.forEach(
      ({ op, ...rest }) => {
        if (op === 'message') this.receive({ kind: 'message', ...(rest as unknown as Envelope) });
        else if (op === 'reset') this.receive({ kind: 'reset', ...(rest as unknown as ResetNotice) });
        else if (op === 'error') this.entries.fail(new Error(`error op: ${JSON.stringify(rest)}`));
      },
      (err) => this.entries.fail(err),
    );
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

/**
 * Subscribes over WebSocket: one `subscribe` frame per channel (each with the cursor/since given),
 * waiting for each `subscribed`; with no channels, the cursor goes in the upgrade URL instead.
 */
export async function subscribeWs(baseUrl: string, options: SubscribeOptions): Promise<Subscription & { client: WsClient }> {
  if (options.channels.length === 0) {
    const client = await WsClient.connect(baseUrl, { query: subscribeQuery(options) });
    return new WsSubscription(client, options.cursor);
  }
  const client = await WsClient.connect(baseUrl);
  const subscription = new WsSubscription(client, options.cursor);
  if (options.token !== undefined) {
    const reply = await client.request({ op: 'auth', token: options.token });
    assert.equal(reply.op, 'authenticated', `auth: ${JSON.stringify(reply)}`);
  }
  for (const channel of options.channels) {
    const frame: Record<string, unknown> = { op: 'subscribe', channel };
    if (options.cursor !== undefined) frame.cursor = options.cursor;
    if (options.since !== undefined) frame.since = options.since;
    const reply = await client.request(frame);
    assert.deepEqual(reply, { op: 'subscribed', channel, id: reply.id }, `subscribe to ${channel}`);
  }
  return subscription;
}

// ---------------------------------------------------------------------------------------------------
// Polling: long, short, JSONP (fetch)
// ---------------------------------------------------------------------------------------------------

export interface PollAnswer {
  messages: Entry[];
  cursor: string;
}

/** Runs a JSONP answer the way a browser's <script> would, and returns the one value passed to `callback`. */
export function runJsonp(body: string, callback: string): unknown {
  const calls: unknown[][] = [];
  runInNewContext(body, contextWithCallback(callback, (...args: unknown[]) => calls.push(args)), { timeout: 1000 });
  assert.equal(calls.length, 1, `a JSONP answer calls ${callback} exactly once`);
  assert.equal(calls[0]!.length, 1, 'with one argument');
  return fromOtherRealm(calls[0]![0]);
}

/** A value made in a vm context, rebuilt with this realm's prototypes (so deepStrictEqual compares contents). */
function fromOtherRealm(value: unknown): unknown {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** A vm context where the dotted path `callback` (e.g. "app.onData") is `fn`. */
function contextWithCallback(callback: string, fn: (...args: unknown[]) => void, root: Record<string, unknown> = {}): Record<string, unknown> {
  const parts = callback.split('.');
  let node = root;
  for (const part of parts.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
  node[parts.at(-1)!] = fn;
  return root;
}

/** One poll request; asserts a 200 and decodes JSON or JSONP. */
export async function pollOnce(baseUrl: string, params: URLSearchParams, signal?: AbortSignal): Promise<PollAnswer> {
  // A poll is answered by its timeout at the latest (25 s by default), plus some slack.
  const boundMs = Number(params.get('timeout') ?? 25) * 1000 + DEFAULT_WAIT_MS;
  const { res, text } = await withTimeout(
    fetch(`${baseUrl}/v1/poll?${params}`, { signal }).then(async (r) => ({ res: r, text: await r.text() })),
    `the answer to poll ?${params}`,
    boundMs,
  );
  assert.equal(res.status, 200, `poll ?${params} answered ${res.status}: ${text}`);
  const callback = params.get('callback');
  const value = callback === null ? JSON.parse(text) : runJsonp(text, callback);
  const { messages, cursor } = value as { messages: unknown[]; cursor: string };
  assert.ok(Array.isArray(messages) && typeof cursor === 'string', `bad poll answer ${text}`);
  return { messages: messages.map(toEntry), cursor };
}

class PollSubscription extends BaseSubscription {
  readonly #abort = new AbortController();
  #loop: Promise<void> = Promise.resolve();
  /** Every poll answer, in order (long-poll tests look at their cursors). */
  readonly answers: PollAnswer[] = [];

  constructor(label: string, startCursor: string | undefined) {
    super(label, startCursor);
  }

  start(run: (signal: AbortSignal) => Promise<void>): void {
    this.#loop = run(this.#abort.signal).catch((err: Error) => {
      if (!this.#abort.signal.aborted) this.entries.fail(err);
    });
  }

  take(answer: PollAnswer): void {
    this.answers.push(answer);
    for (const entry of answer.messages) this.receive(entry);
    this.lastCursor = answer.cursor;
  }

  get isClosed(): boolean {
    return this.#abort.signal.aborted;
  }

  async close(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
  }
}

export interface PollOptions {
  /** Seconds a poll is held; 0 is short polling. */
  timeoutS: number;
  /** Milliseconds between short polls that found nothing. */
  intervalMs?: number;
  callback?: string;
}

/**
 * A polling client: the first request (timeout=0) fixes the start position, then it polls from the
 * cursor of each answer, so no message can fall between two requests.
 */
export async function subscribePoll(baseUrl: string, options: SubscribeOptions, poll: PollOptions): Promise<Subscription & { answers: PollAnswer[] }> {
  const label = poll.callback !== undefined ? 'jsonp' : poll.timeoutS === 0 ? 'short-poll' : 'long-poll';
  const subscription = new PollSubscription(label, options.cursor);
  const extra: Record<string, string> = poll.callback === undefined ? {} : { callback: poll.callback };
  const channels = options.channels;
  const first = await pollOnce(baseUrl, subscribeQuery(options, { ...extra, timeout: '0' }));
  subscription.take(first);
  subscription.start(async (signal) => {
    while (!signal.aborted) {
      const params = subscribeQuery({ channels, cursor: subscription.cursor(), token: options.token }, { ...extra, timeout: String(poll.timeoutS) });
      const answer = await pollOnce(baseUrl, params, signal);
      if (signal.aborted) return;
      subscription.take(answer);
      if (poll.timeoutS === 0 && answer.messages.length === 0) {
        // Short polling: the client's polling interval.
        await new Promise((resolve) => setTimeout(resolve, poll.intervalMs ?? 20));
      }
    }
  });
  return subscription;
}

// ---------------------------------------------------------------------------------------------------
// Streams: NDJSON and the hidden iframe (fetch)
// ---------------------------------------------------------------------------------------------------

/** A streaming fetch: records the response and hands each decoded text chunk to `onText`. */
async function openStream(url: string, onText: (text: string) => void, signal: AbortSignal, onEnd: (err?: Error) => void): Promise<Response> {
  const res = await withTimeout(fetch(url, { signal }), `the response headers of ${url}`);
  if (res.status !== 200) {
    const text = await res.text();
    throw new Error(`${url} answered ${res.status}: ${text}`);
  }
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  void (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        onText(decoder.decode(value, { stream: true }));
      }
      onEnd();
    } catch (err) {
      onEnd(signal.aborted ? undefined : (err as Error));
    }
  })();
  return res;
}

export class StreamSubscription extends BaseSubscription {
  readonly abort = new AbortController();
  response!: Response;
  /** Heartbeats received (NDJSON heartbeat lines, iframe `<!-- -->` comments). */
  readonly heartbeats = new Inbox<number>();
  /** Notices (`{"notice":"token_expired",…}`), which are not entries. */
  readonly notices = new Inbox<Record<string, unknown>>();
  /** Presence events (`{"presence":"join"|"leave",…}`), which are not entries either. */
  readonly presence = new Inbox<Record<string, unknown>>();
  /** The raw body text received so far. */
  raw = '';

  constructor(label: string, startCursor: string | undefined) {
    super(label, startCursor);
  }

  accept(entry: Entry): void {
    this.receive(entry);
  }

  ended(err?: Error): void {
    if (!this.abort.signal.aborted) this.entries.fail(err ?? new Error(`${this.label}: the server ended the stream`));
  }

  async close(): Promise<void> {
    this.abort.abort();
  }
}

/** GET /v1/stream: one JSON object per line; `{"heartbeat":true}` lines are counted, not entries. */
export async function subscribeNdjson(baseUrl: string, options: SubscribeOptions): Promise<StreamSubscription> {
  const subscription = new StreamSubscription('stream', options.cursor);
  let pending = '';
  const onText = (text: string): void => {
    subscription.raw += text;
    pending += text;
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      const value = JSON.parse(line) as Record<string, unknown>;
      if (value.heartbeat === true) subscription.heartbeats.push(Date.now());
      else if (typeof value.notice === 'string') subscription.notices.push(value);
      else if (typeof value.presence === 'string') subscription.presence.push(value);
      else subscription.accept(toEntry(value));
    }
  };
  subscription.response = await openStream(
    `${baseUrl}/v1/stream?${subscribeQuery(options)}`,
    onText,
    subscription.abort.signal,
    (err) => subscription.ended(err),
  );
  return subscription;
}

/**
 * GET /v1/iframe: parses the HTML as a browser does for what matters here (a script element's text
 * ends at the first `</script`), and runs each script in a vm context where `parent.<callback>` records
 * its argument, as the parent page's callback would. Anything else a script tries to do fails the test.
 */
export async function subscribeIframe(baseUrl: string, options: SubscribeOptions, callback = 'onHerald'): Promise<StreamSubscription & { scripts: string[] }> {
  const subscription = Object.assign(new StreamSubscription('iframe', options.cursor), { scripts: [] as string[] });
  let pending = '';
  const onText = (text: string): void => {
    subscription.raw += text;
    pending += text;
    for (;;) {
      // The next markup that matters: a comment (padding, heartbeats) or a script element.
      const at = pending.search(/<!--|<script[\s>]/i);
      if (at < 0) return;
      if (pending.startsWith('<!--', at)) {
        const end = pending.indexOf('-->', at + 4);
        if (end < 0) return;
        if (pending.slice(at, end + 3) === '<!-- -->') subscription.heartbeats.push(Date.now());
        pending = pending.slice(end + 3);
        continue;
      }
      const bodyStart = pending.indexOf('>', at) + 1;
      if (bodyStart === 0) return;
      const close = pending.slice(bodyStart).search(/<\/script[\s/>]/i);
      if (close < 0 || pending.indexOf('>', bodyStart + close) < 0) return;
      const script = pending.slice(bodyStart, bodyStart + close);
      const end = pending.indexOf('>', bodyStart + close) + 1;
      pending = pending.slice(end);
      subscription.scripts.push(script);
      const calls: unknown[][] = [];
      const context = { parent: contextWithCallback(callback, (...args: unknown[]) => calls.push(args)) };
      try {
        runInNewContext(script, context, { timeout: 1000 });
      } catch (err) {
        subscription.entries.fail(new Error(`an iframe script failed to run (${(err as Error).message}): ${script}`));
        return;
      }
      if (calls.length !== 1 || calls[0]!.length !== 1) {
        subscription.entries.fail(new Error(`an iframe script must call parent.${callback} once with one argument: ${script}`));
        return;
      }
      const value = fromOtherRealm(calls[0]![0]) as Record<string, unknown>;
      if (typeof value?.notice === 'string') subscription.notices.push(value);
      else if (typeof value?.presence === 'string') subscription.presence.push(value);
      else subscription.accept(toEntry(value));
    }
  };
  const query = subscribeQuery(options, { callback });
  subscription.response = await openStream(`${baseUrl}/v1/iframe?${query}`, onText, subscription.abort.signal, (err) => subscription.ended(err));
  return subscription;
}

// ---------------------------------------------------------------------------------------------------
// Every transport, behind one shape
// ---------------------------------------------------------------------------------------------------

export interface TransportUnderTest {
  name: string;
  connect(baseUrl: string, options: SubscribeOptions): Promise<Subscription>;
  /** Requests a subscription with these query parameters and expects a refusal: its status and error code. */
  refusal(baseUrl: string, params: URLSearchParams): Promise<{ status: number; code: string | undefined }>;
}

async function httpRefusal(baseUrl: string, path: string, params: URLSearchParams, headers: Record<string, string> = {}): Promise<{ status: number; code: string | undefined }> {
  const res = await fetch(`${baseUrl}${path}?${params}`, { headers });
  if (res.status === 200) {
    await res.body?.cancel();
    return { status: 200, code: undefined };
  }
  return { status: res.status, code: await errorCode(res) };
}

function withParam(params: URLSearchParams, key: string, value: string): URLSearchParams {
  const copy = new URLSearchParams(params);
  copy.set(key, value);
  return copy;
}

export const TRANSPORTS: TransportUnderTest[] = [
  {
    name: 'sse',
    connect: subscribeSse,
    refusal: (url, params) => httpRefusal(url, '/v1/sse', params, { Accept: 'text/event-stream' }),
  },
  {
    name: 'websocket',
    connect: subscribeWs,
    refusal: async (url, params) => {
      const { status, code } = await wsUpgradeOutcome(url, { query: params });
      return { status, code };
    },
  },
  {
    name: 'long-poll',
    connect: (url, options) => subscribePoll(url, options, { timeoutS: 10 }),
    refusal: (url, params) => httpRefusal(url, '/v1/poll', withParam(params, 'timeout', '1')),
  },
  {
    name: 'short-poll',
    connect: (url, options) => subscribePoll(url, options, { timeoutS: 0 }),
    refusal: (url, params) => httpRefusal(url, '/v1/poll', withParam(params, 'timeout', '0')),
  },
  {
    name: 'jsonp',
    connect: (url, options) => subscribePoll(url, options, { timeoutS: 10, callback: 'app.onPoll' }),
    refusal: (url, params) => httpRefusal(url, '/v1/poll', withParam(withParam(params, 'timeout', '1'), 'callback', 'cb')),
  },
  {
    name: 'stream',
    connect: subscribeNdjson,
    refusal: (url, params) => httpRefusal(url, '/v1/stream', params),
  },
  {
    name: 'iframe',
    connect: (url, options) => subscribeIframe(url, options),
    refusal: (url, params) => httpRefusal(url, '/v1/iframe', withParam(params, 'callback', 'cb')),
  },
];
