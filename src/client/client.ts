// The Herald client: one resilient connection carrying every subscription. (The file is client.ts, not
// herald.ts, because dist/client/herald.js is the bundle's name.) It owns the connection's lifecycle:
// which transport, when to reconnect, tokens, the public API. What must survive a reconnect (cursors,
// dedupe, gap repair) is channels.ts; transports (transports/*) only move entries through a Link.
import { backoffMs } from './backoff.js';
import { HeraldError, isFatal } from './errors.js';
import { getJson, type PollAnswer } from './http.js';
import { call, ChannelTable, segmentOf } from './channels.js';
import { Tabs } from './tabs/tabs.js';
import { TokenSource } from './token.js';
import { isAvailable, type Link, type Settings, type Transport, type TransportFactory } from './transport.js';
import { iframeTransport } from './transports/iframe.js';
import { jsonpTransport } from './transports/jsonp.js';
import { longPollTransport } from './transports/long-poll.js';
import { sseTransport } from './transports/sse.js';
import { streamTransport } from './transports/stream.js';
import { webSocketTransport } from './transports/websocket.js';
import type {
  HeraldEvents,
  HeraldOptions,
  PresenceEvent,
  PresenceMember,
  Published,
  StateChange,
  SubscribeOptions,
  Subscription,
  TransportName,
} from './types.js';

// [spec] docs/protocol.md "Channels, offsets, epochs" and "Subscribing over HTTP" (256 per subscription).
const CHANNEL_PATTERN = /^[A-Za-z0-9_.:@/-]{1,200}$/;
const CURSOR_PATTERN = /^[A-Za-z0-9_.-]+$/;
const MAX_CHANNELS = 256;
const FACTORIES: Record<TransportName, TransportFactory> = {
  websocket: webSocketTransport,
  sse: sseTransport,
  stream: streamTransport,
  longpoll: longPollTransport,
  jsonp: jsonpTransport,
  iframe: iframeTransport,
};
/** The automatic fallback order; the legacy `jsonp` and `iframe` run only when asked for by name. */
const AUTOMATIC: TransportName[] = ['websocket', 'sse', 'stream', 'longpoll'];
const REQUEST_TIMEOUT_MS = 10_000;

type Timer = ReturnType<typeof setTimeout>;

/** One try at a connection, from `connecting` until it is lost. */
interface Attempt {
  /** `tab`: this instance follows another tab's connection (tabs/tab-transport.ts). */
  name: TransportName | 'tab';
  transport?: Transport;
  isOpen: boolean;
  openTimer?: Timer;
  watchdog?: ReturnType<typeof setInterval>;
  /** A stream that got no bytes in time: maybe a proxy that buffers streams. */
  isSilent?: boolean;
}

export class Herald {
  readonly #url: string;
  readonly #settings: Settings;
  readonly #order: TransportName[];
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #connectTimeoutMs: number;
  readonly #streamOpenMs: number;
  readonly #channels: ChannelTable;
  readonly #listeners: { [K in keyof HeraldEvents]: Set<(event: HeraldEvents[K]) => void> } = {
    state: new Set(),
    error: new Set(),
  };
  /** Transports that have opened at least once: they are retried, never given up for the next one. */
  readonly #hasOpened = new Set<string>();
  #attempt: Attempt | undefined;
  #retryTimer: Timer | undefined;
  #state: StateChange = { state: 'disconnected', reason: 'idle' };
  #orderIndex = 0;
  #failures = 0;
  #lastSeenMs = 0;
  #isClosed = false;
  #isSyncQueued = false;
  /** Connection changes run one after another, never interleaved. */
  #chain: Promise<void> = Promise.resolve();
  /** Removes the page listeners (online/offline, visibility) added by the constructor. */
  readonly #unlisten: (() => void)[] = [];
  readonly #token: TokenSource;
  /** The tabs of this browser sharing one connection (tabs/tabs.ts); undefined when not sharing. */
  readonly #tabs: Tabs | undefined;
  /** 401s in a row despite fresh tokens: past a few, the token is not the moment's fault. */
  #authFailures = 0;

  constructor(url: string, options: HeraldOptions = {}) {
    const base = new URL(url, (globalThis as { location?: { href: string } }).location?.href);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new HeraldError('url_invalid', `Herald needs the server's http(s) URL, got ${JSON.stringify(url)}.`);
    }
    this.#url = (base.origin + base.pathname).replace(/\/+$/, '');
    const g = globalThis as Record<string, any>;
    const fetchFn: typeof fetch | undefined = options.fetch ?? g.fetch;
    const heartbeatMs = options.heartbeatMs ?? 15_000;
    this.#settings = {
      // Called unbound: a browser's fetch throws "Illegal invocation" when called as a method of another object.
      fetch: fetchFn && ((input, init) => fetchFn(input, init)),
      WebSocket: options.WebSocket ?? g.WebSocket,
      EventSource: options.EventSource ?? g.EventSource,
      heartbeatMs,
      pingMs: options.pingMs ?? heartbeatMs,
      pollTimeoutS: options.pollTimeoutS ?? 25,
    };
    this.#token = new TokenSource(options.token, options.getToken);
    this.#initialMs = options.backoff?.initialMs ?? 1000;
    this.#maxMs = options.backoff?.maxMs ?? 30_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? REQUEST_TIMEOUT_MS;
    this.#streamOpenMs = options.streamOpenTimeoutMs ?? 4000;
    this.#channels = new ChannelTable({
      url: this.#url,
      fetch: this.#settings.fetch,
      token: () => this.#token.value,
      isClosed: () => this.#isClosed,
      backoffMs: (attempt) => backoffMs(attempt, this.#initialMs, this.#maxMs),
      learn: (event) => this.#attempt?.transport?.learn?.(event),
      refused: (error, channel) => this.#refused(error, channel),
    });
    const wanted = options.transports ?? AUTOMATIC;
    this.#order = wanted.filter((name) => FACTORIES[name] !== undefined && isAvailable(name, this.#settings));
    if (this.#order.length === 0) {
      throw new HeraldError(
        'transport_unavailable',
        `None of the transports ${wanted.join(', ')} can run here: pass fetch, WebSocket or EventSource in the options.`,
      );
    }
    // [spec] HTML §8.10.1 "online"/"offline" events and §6.2 "visibilitychange". A browser that lost its
    // network keeps some streams looking open (Chromium does for EventSource and fetch bodies): drop the
    // connection at once rather than wait for the heartbeat. Coming back online, or to a tab whose timers
    // were throttled in the background, retries at once instead of at the end of a backoff.
    if (options.watchNetwork !== false && typeof g.addEventListener === 'function') {
      const listen = (target: any, type: string, listener: () => void): void => {
        target.addEventListener(type, listener);
        this.#unlisten.push(() => target.removeEventListener(type, listener));
      };
      listen(g, 'offline', () => this.#attempt && this.#lost(this.#attempt, 'offline: the device lost its network'));
      listen(g, 'online', () => this.#retryNow());
      if (g.document) listen(g.document, 'visibilitychange', () => g.document.visibilityState === 'visible' && this.#retryNow());
    }
    // One connection per browser (tabs/tabs.ts): pages only (newer Node has Web Locks and BroadcastChannel
    // too, but no tabs). A follower becoming leader connects at once, with no backoff.
    const share = options.share ?? true;
    if (share !== false && g.document && g.navigator?.locks && g.BroadcastChannel) {
      const tabs = (this.#tabs = new Tabs(`herald:${this.#url}${share === true ? '' : `#${share}`}`, this, {
        promote: () => {
          this.#drop();
          this.#failures = 0;
          this.#sync();
        },
        mirror: (change) => this.#setState(change),
      }));
      this.#unlisten.push(() => tabs.close());
    }
  }

  /** The latest state change. */
  get state(): StateChange {
    return this.#state;
  }

  /**
   * Receives every message of `channel`, in order, exactly once, across reconnects. Subscribing more
   * handlers to a channel shares its one server-side subscription. Throws a HeraldError at once for a
   * bad channel name or cursor, past 256 channels, or after close().
   */
  subscribe<T = unknown>(channel: string, options: SubscribeOptions<T>): Subscription {
    if (this.#isClosed) throw new HeraldError('closed', 'This Herald client is closed.');
    if (!CHANNEL_PATTERN.test(channel)) {
      throw new HeraldError('channel_invalid', `Invalid channel name ${JSON.stringify(channel)}: names match ${CHANNEL_PATTERN.source}.`);
    }
    if (typeof options?.onMessage !== 'function') throw new TypeError('subscribe() needs an onMessage function.');
    let ch = this.#channels.get(channel);
    if (ch === undefined) {
      if (this.#channels.size >= MAX_CHANNELS) {
        throw new HeraldError('too_many_channels', `One connection carries at most ${MAX_CHANNELS} channels.`);
      }
      const since = options.since ?? 'head';
      if (since !== 'head' && since !== 'beginning' && !CURSOR_PATTERN.test(since)) {
        throw new HeraldError('cursor_invalid', 'since is "head", "beginning", or the cursor of an envelope.');
      }
      let settle!: () => void;
      const ready = new Promise<void>((resolve) => (settle = resolve));
      ch = {
        since: since === 'beginning' ? 'beginning' : 'head',
        handlers: new Set(),
        seq: 0,
        ready,
        settle,
        hasPresence: options.onJoin !== undefined || options.onLeave !== undefined,
      };
      if (since !== 'head' && since !== 'beginning') {
        ch.cursor = segmentOf(since, channel);
        ch.seq = this.#channels.nextSeq();
      }
      if (since !== 'head') settle();
      this.#channels.set(channel, ch);
      this.#sync();
    }
    const handler = { ...options } as SubscribeOptions<any>;
    const current = ch;
    current.handlers.add(handler);
    return {
      channel,
      ready: current.ready,
      unsubscribe: () => {
        if (!current.handlers.delete(handler) || current.handlers.size > 0) return;
        if (this.#channels.get(channel) !== current) return;
        current.settle();
        this.#channels.delete(channel);
        this.#sync();
      },
      publish: (data, extra) => this.#publish({ ...extra, channel, data }),
      presence: async () => {
        const transport = this.#openTransport();
        if (transport?.request) return (await transport.request({ op: 'presence', channel })).members as PresenceMember[];
        const answer = await this.#http<{ members: PresenceMember[] }>(`/v1/presence?channel=${encodeURIComponent(channel)}`);
        return answer.members;
      },
    };
  }

  async #publish(body: Record<string, unknown>): Promise<Published> {
    const transport = this.#openTransport();
    if (transport?.request) {
      const { channel, offset, epoch, duplicate } = await transport.request({ op: 'publish', ...body });
      return duplicate ? { channel, offset, epoch, duplicate } : { channel, offset, epoch };
    }
    const answer = await this.#http<{ results: Published[] }>('/v1/publish', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    return answer.results[0]!;
  }

  /** The transport of an open connection, for request/reply ops. */
  #openTransport(): Transport | undefined {
    return this.#attempt?.isOpen ? this.#attempt.transport : undefined;
  }

  /** An HTTP request to the server with the token as `Authorization: Bearer` (RFC 6750 §2.1). */
  async #http<T>(path: string, init: RequestInit = {}): Promise<T> {
    if (this.#settings.fetch === undefined) throw new HeraldError('transport_unavailable', 'This needs fetch.');
    await this.#token.ensure();
    const headers: Record<string, string> = { ...(init.headers as Record<string, string>) };
    if (this.#token.value !== undefined) headers.Authorization = `Bearer ${this.#token.value}`;
    return getJson<T>(this.#settings.fetch, this.#url + path, REQUEST_TIMEOUT_MS, { ...init, headers });
  }

  // ---- tokens ----

  /** The server says the token expires (WS op, SSE event, stream notice): refresh it on the wire, losing nothing. */
  async #expiring(attempt: Attempt): Promise<void> {
    if (!this.#token.canRefresh) return; // the server will close; the next connect fails with token_expired
    try {
      await this.#token.refresh();
    } catch (error) {
      this.#emit('error', new HeraldError('token_unavailable', `getToken() failed: ${(error as Error).message}`));
      return;
    }
    const transport = this.#attempt === attempt ? attempt.transport : undefined;
    if (transport?.refresh) transport.refresh(this.#token.value!);
    else transport?.update();
  }

  /** Listens to `state` changes or `error`s; returns a function that stops listening. */
  on<K extends keyof HeraldEvents>(event: K, listener: (event: HeraldEvents[K]) => void): () => void {
    const listeners = this.#listeners[event] as Set<(event: HeraldEvents[K]) => void>;
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  /** Ends the connection and every subscription, clears every timer. Idempotent. */
  close(): void {
    if (!this.#isClosed) this.#shutdown({ state: 'closed', reason: 'closed by the client' });
  }

  // ---- connection lifecycle ----

  /** Brings the connection in line with the wanted channels, once per tick whatever changed. */
  #sync(): void {
    if (this.#isSyncQueued) return;
    this.#isSyncQueued = true;
    queueMicrotask(() => {
      this.#isSyncQueued = false;
      this.#chain = this.#chain
        .then(() => this.#apply())
        .catch((error: unknown) => this.#emit('error', new HeraldError('internal', `Herald client: ${(error as Error).message}`)));
    });
  }

  async #apply(): Promise<void> {
    if (this.#tabs) await this.#tabs.ready; // leader or follower: decides the transport
    if (this.#isClosed) return;
    const attempt = this.#attempt;
    if (this.#channels.size === 0) {
      // Nothing to carry: hold no connection (and no HTTP stream, which needs a channel).
      if (attempt !== undefined || this.#retryTimer !== undefined) {
        this.#drop();
        this.#setState({ state: 'disconnected', reason: 'idle' });
      }
      return;
    }
    if (attempt === undefined) {
      if (this.#retryTimer === undefined) await this.#connect();
      return;
    }
    if (await this.#anchorFor(attempt)) attempt.transport?.update();
  }

  async #connect(): Promise<void> {
    const name = this.#tabs?.isFollower ? 'tab' : this.#order[this.#orderIndex % this.#order.length]!;
    const attempt: Attempt = { name, isOpen: false };
    this.#attempt = attempt;
    this.#setState({ state: 'connecting', transport: name });
    try {
      await this.#token.ensure();
    } catch (error) {
      this.#lost(attempt, `getToken() failed: ${(error as Error).message}`);
      return;
    }
    if (!(await this.#anchorFor(attempt))) return;
    try {
      const transport = (attempt.transport = (name === 'tab' ? this.#tabs!.follow : FACTORIES[name])(this.#link(attempt)));
      // A stream opens at its first bytes: none in time is a sign of a proxy that buffers streams.
      const ms = transport.isStream ? this.#streamOpenMs : this.#connectTimeoutMs;
      attempt.openTimer = setTimeout(() => {
        attempt.isSilent = transport.isStream;
        this.#lost(attempt, `${name} did not open within ${ms} ms`);
      }, ms);
    } catch (error) {
      this.#lost(attempt, `${name} failed to start: ${(error as Error).message}`, error);
    }
  }

  /** Anchors new channels for `attempt`; false when the attempt is lost or over meanwhile. */
  async #anchorFor(attempt: Attempt): Promise<boolean> {
    try {
      await this.#anchor();
    } catch (error) {
      this.#lost(attempt, 'server unreachable', error);
      return false;
    }
    return this.#attempt === attempt;
  }

  /**
   * Gives each new `head` channel a cursor before any wire carries it. [spec] "A first poll without a
   * cursor starts at the head; the empty answer's cursor marks that head." Without this, a connection
   * lost before the channel's first message would resume it at a later head, missing what came between.
   * With a token, each channel is anchored by its history instead ([spec] "History": a `reverse` answer's
   * cursor is the head): a poll would show the user in presence for --presence-timeout after it.
   */
  async #anchor(): Promise<void> {
    const fetchFn = this.#settings.fetch;
    const channels = [...this.#channels.entries()].filter(([, ch]) => ch.since === 'head' && ch.cursor === undefined).map(([c]) => c);
    if (fetchFn === undefined || channels.length === 0) return;
    const anchors: [string[], string][] =
      this.#token.value === undefined
        ? [[channels, (await getJson<PollAnswer>(fetchFn, `${this.#url}/v1/poll?${new URLSearchParams({ channel: channels.join(','), timeout: '0' })}`, REQUEST_TIMEOUT_MS)).cursor]]
        : await Promise.all(
            channels.map(async (c): Promise<[string[], string]> => [
              [c],
              (await this.#http<PollAnswer>(`/v1/history?channel=${encodeURIComponent(c)}&reverse=true&limit=1`)).cursor,
            ]),
          );
    const seq = this.#channels.nextSeq();
    for (const [covered, cursor] of anchors) {
      for (const channel of covered) {
        const ch = this.#channels.get(channel);
        if (ch !== undefined && ch.cursor === undefined) {
          ch.cursor = cursor;
          ch.seq = seq;
          ch.settle();
        }
      }
    }
  }

  #link(attempt: Attempt): Link {
    const isCurrent = (): boolean => this.#attempt === attempt;
    return {
      url: this.#url,
      settings: this.#settings,
      channels: () => this.#channels.names(),
      query: (channels) => this.#channels.query(channels).toString(),
      start: (channel) => {
        const ch = this.#channels.get(channel);
        const start: { cursor?: string; since?: 'beginning'; presence?: true } = ch?.hasPresence ? { presence: true } : {};
        if (ch?.cursor !== undefined) start.cursor = ch.cursor;
        else if (ch?.since === 'beginning') start.since = 'beginning';
        return start;
      },
      token: () => this.#token.value,
      presence: (kind, event) => {
        const ch = isCurrent() ? this.#channels.get(event.channel) : undefined;
        if (ch === undefined) return;
        const info: PresenceEvent = { channel: event.channel, user: event.user };
        if (event.info !== undefined) info.info = event.info;
        for (const handler of ch.handlers) {
          const fn = kind === 'join' ? handler.onJoin : handler.onLeave;
          if (fn) call(() => fn(info));
        }
      },
      expiring: () => {
        if (isCurrent()) void this.#expiring(attempt);
      },
      opened: (deadAfterMs) => {
        if (isCurrent() && !attempt.isOpen) this.#opened(attempt, deadAfterMs);
      },
      alive: () => {
        if (isCurrent()) this.#lastSeenMs = Date.now();
      },
      receive: (entry, covered) => {
        if (!isCurrent()) return;
        this.#lastSeenMs = Date.now();
        this.#channels.receive(entry, covered);
      },
      cover: (cursor, covered) => {
        if (isCurrent()) this.#channels.cover(cursor, covered);
      },
      refused: (error, channel) => {
        if (isCurrent()) this.#refused(error, channel);
      },
      closed: (reason, error) => this.#lost(attempt, reason, error),
    };
  }

  #opened(attempt: Attempt, deadAfterMs: number | undefined): void {
    attempt.isOpen = true;
    clearTimeout(attempt.openTimer);
    this.#failures = 0;
    this.#authFailures = 0;
    this.#hasOpened.add(attempt.name);
    this.#lastSeenMs = Date.now();
    // Without fetch nothing is anchored: the best sign is a wire carrying the channel.
    if (this.#settings.fetch === undefined) for (const ch of this.#channels.values()) ch.settle();
    if (deadAfterMs !== undefined) {
      // Dead connections are found by silence, not by TCP: a half-open socket can look fine for minutes.
      attempt.watchdog = setInterval(() => {
        if (Date.now() - this.#lastSeenMs > deadAfterMs) this.#lost(attempt, `heartbeat_timeout: silent for over ${deadAfterMs} ms`);
      }, Math.max(50, deadAfterMs / 4));
    }
    this.#setState({ state: 'connected', transport: attempt.name });
  }

  /** The attempt is over (failed, dead, or ended by the server): retry, fall back, or stop for good. */
  #lost(attempt: Attempt, reason: string, error?: unknown): void {
    if (this.#attempt !== attempt) return;
    this.#drop();
    // [spec] protocol.md "Refusals": 401 token_expired / token_invalid. A fresh token may fix it, a few
    // times in a row; then the token is wrong, not late.
    if ((error as HeraldError | undefined)?.status === 401 && this.#token.canRefresh && ++this.#authFailures <= 3) {
      this.#token.value = undefined;
      void this.#retry(attempt, reason);
      return;
    }
    if (isFatal(error)) {
      this.#fail(error as HeraldError);
      return;
    }
    void this.#retry(attempt, error instanceof HeraldError ? `${reason} (${error.message})` : reason);
  }

  async #retry(attempt: Attempt, reason: string): Promise<void> {
    const { name } = attempt;
    // A transport that never opened while the server answers is blocked on the way (a proxy, a
    // firewall): the next one is tried at once. A server that does not answer is just down: retry later.
    if (name !== 'tab' && !attempt.isOpen && !this.#hasOpened.has(name) && this.#order.length > 1 && (await this.#isServerAlive())) {
      if (this.#isIdle()) return;
      // A silent stream while the server answers: something on the way holds stream bodies, and would
      // hold the next stream transport's too. Long polling gets whole answers through.
      const skip = this.#order.indexOf('longpoll') - (this.#orderIndex % this.#order.length);
      if (attempt.isSilent && skip > 0) {
        this.#orderIndex += skip;
        reason += ' (no bytes while the server answers: a proxy buffers streams; falling back to long polling)';
      } else this.#orderIndex++;
      if (this.#orderIndex % this.#order.length !== 0) {
        this.#setState({ state: 'disconnected', transport: name, reason: `${name} unavailable: ${reason}`, retryInMs: 0 });
        this.#sync();
        return;
      }
    }
    if (this.#isIdle()) return;
    const retryInMs = backoffMs(this.#failures++, this.#initialMs, this.#maxMs);
    this.#setState({ state: 'disconnected', transport: name, reason, retryInMs });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#sync();
    }, retryInMs);
  }

  /** A pending retry runs now, with the backoff started over (the network is back). */
  #retryNow(): void {
    if (this.#retryTimer === undefined) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#failures = 0;
    this.#sync();
  }

  /** True when nothing should be retried: closed, idle, or another attempt already under way. */
  #isIdle(): boolean {
    return this.#isClosed || this.#channels.size === 0 || this.#attempt !== undefined || this.#retryTimer !== undefined;
  }

  async #isServerAlive(): Promise<boolean> {
    if (this.#settings.fetch === undefined) return false;
    try {
      await getJson(this.#settings.fetch, `${this.#url}/healthz`, 5000);
      return true;
    } catch {
      return false;
    }
  }

  /** Ends the current attempt and any pending retry. */
  #drop(): void {
    const attempt = this.#attempt;
    this.#attempt = undefined;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (attempt === undefined) return;
    clearTimeout(attempt.openTimer);
    clearInterval(attempt.watchdog);
    attempt.transport?.close();
  }

  #fail(error: HeraldError): void {
    this.#emit('error', error);
    this.#shutdown({ state: 'closed', reason: error.message, error });
  }

  #shutdown(change: StateChange): void {
    this.#isClosed = true;
    for (const unlisten of this.#unlisten.splice(0)) unlisten();
    this.#drop();
    this.#channels.clear();
    this.#setState(change);
    this.#listeners.state.clear();
    this.#listeners.error.clear();
  }

  #setState(change: StateChange): void {
    this.#state = change;
    this.#emit('state', change);
  }

  #emit<K extends keyof HeraldEvents>(event: K, value: HeraldEvents[K]): void {
    for (const listener of this.#listeners[event]) call(() => (listener as (v: HeraldEvents[K]) => void)(value));
  }

  #refused(error: HeraldError, channel?: string): void {
    const ch = channel === undefined ? undefined : this.#channels.get(channel);
    const handlers = ch === undefined ? [] : [...ch.handlers].filter((h) => h.onError !== undefined);
    if (handlers.length === 0) this.#emit('error', error);
    for (const handler of handlers) call(() => handler.onError!(error));
    // A refused subscription is over: retrying it would be refused again.
    if (ch !== undefined && this.#channels.get(channel!) === ch) {
      ch.settle();
      this.#channels.delete(channel!);
      this.#sync();
    }
  }
}
