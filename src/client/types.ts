// The public vocabulary of the SDK. Field names follow docs/protocol.md ("The envelope", "Gaps are
// never silent") so a message looks the same here as on the wire.
import type { HeraldError } from './errors.js';

/** One message, exactly as every transport delivers it. */
export interface Envelope<T = unknown> {
  channel: string;
  /** 1, 2, 3… within one epoch, no gaps. */
  offset: number;
  /** Opaque; changes only when the channel's history is lost. */
  epoch: string;
  /** Present only when the message was published with one. */
  event?: string;
  data: T;
  /** Resumes the connection's subscriptions right after this message; pass it as `since` to resume later. */
  cursor: string;
}

/** [spec] "Gaps are never silent": told before anything else of a channel whose history no longer reaches us. */
export interface ResetInfo {
  channel: string;
  epoch: string;
  /** The offset delivery continues from. */
  from: number;
  /** How many messages are gone, when the server can know (same epoch). */
  missed?: number;
  cursor: string;
}

/** `jsonp` and `iframe` are legacy, browser-only, and never chosen automatically (src/client/README.md). */
export type TransportName = 'websocket' | 'sse' | 'stream' | 'longpoll' | 'jsonp' | 'iframe';

export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'closed';

export interface StateChange {
  state: ConnectionState;
  /**
   * The transport trying or holding the connection; `tab` when another tab of this browser holds it for
   * this one (`share`), whose state this one then shows.
   */
  transport?: TransportName | 'tab';
  /** Why the connection was lost or closed. */
  reason?: string;
  /** When `disconnected`: how long until the next attempt. */
  retryInMs?: number;
  /** When `closed` by a fatal error. */
  error?: HeraldError;
}

export interface HeraldEvents {
  state: StateChange;
  /** Errors not tied to one subscription (a refused request, a fatal close). */
  error: HeraldError;
}

export interface SubscribeOptions<T = unknown> {
  onMessage(message: Envelope<T>): void;
  /** Messages were lost on this channel (retention, a lost store); delivery continues from `info.from`. */
  onReset?(info: ResetInfo): void;
  /** The server refused this subscription. */
  onError?(error: HeraldError): void;
  /**
   * [spec] protocol.md "Presence": someone joined this channel (their first connection) / left it (their
   * last). Asking for either subscribes with presence events. Only the channel's first subscription on
   * this client decides.
   */
  onJoin?(event: PresenceEvent): void;
  onLeave?(event: PresenceEvent): void;
  /**
   * Where a new subscription starts: `'head'` (default, only messages published from now on),
   * `'beginning'` (the oldest retained message), or a cursor from an earlier envelope. Ignored when the
   * channel is already subscribed on this client.
   */
  since?: 'head' | 'beginning' | (string & {});
}

export interface Subscription {
  readonly channel: string;
  /**
   * Settles once the subscription's start is fixed on the server: every message published after it is
   * delivered, whatever happens to the connection. (Also settles if the subscription ends first.)
   */
  readonly ready: Promise<void>;
  /** Stops this subscription; the other subscriptions of the connection are untouched. Idempotent. */
  unsubscribe(): void;
  /**
   * Publishes into this channel with the client's token (its `publish` claim must cover the channel):
   * a `publish` op on an open WebSocket, else `POST /v1/publish`. Rejects with a HeraldError
   * (`forbidden_publish`, `rate_limited`, `server_gone`…); pass an `idempotencyKey` to retry safely.
   */
  publish(data: unknown, options?: { event?: string; idempotencyKey?: string }): Promise<Published>;
  /** Who is in this channel now, one entry per user (needs a token whose `presence` claim covers it). */
  presence(): Promise<PresenceMember[]>;
}

/** [spec] protocol.md "Client publish": the stored message's place in its channel. */
export interface Published {
  channel: string;
  offset: number;
  epoch: string;
  /** The idempotency key was seen before: nothing new was stored. */
  duplicate?: boolean;
}

export interface PresenceMember {
  user: string;
  info?: Record<string, unknown>;
  connections: number;
}

export interface PresenceEvent {
  channel: string;
  user: string;
  info?: Record<string, unknown>;
}

/** The slice of the WebSocket API the SDK uses (browsers', or the `ws` package's in Node). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  // Handlers take `any`: each implementation types its events differently; the SDK reads only
  // `data` of a message and `code`/`reason` of a close.
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** The slice of the EventSource API the SDK uses (browsers', or the `eventsource` package's in Node). */
export interface EventSourceLike {
  onopen: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  addEventListener(type: string, listener: (event: any) => void): void;
  close(): void;
}

export interface HeraldOptions {
  /** A client token (a JWT the app's backend signed: protocol.md "Auth"). */
  token?: string;
  /**
   * Returns a fresh token: called before connecting when there is none, when the server says the token
   * expires (`token_expired`), and when it refuses one with 401. Nothing is lost across a refresh.
   */
  getToken?: () => string | Promise<string>;
  /** Transports to try, in order (default: all, in this order). Unavailable ones are skipped. */
  transports?: TransportName[];
  /** Defaults to `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Defaults to `globalThis.WebSocket`. In Node 20, pass `WebSocket` from the `ws` package. */
  WebSocket?: new (url: string) => WebSocketLike;
  /** Defaults to `globalThis.EventSource`. In Node, pass `EventSource` from the `eventsource` package. */
  EventSource?: new (url: string) => EventSourceLike;
  /** Reconnect delays: full jitter, `random(0, min(maxMs, initialMs · 2^attempt))`. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** The server's `--heartbeat` (default 15 s): a stream silent for twice as long is dead. */
  heartbeatMs?: number;
  /** WebSocket: app-level ping period (default `heartbeatMs`); no frame for two periods means dead. */
  pingMs?: number;
  /** Long polling: how long the server may hold a poll, in seconds (default 25). */
  pollTimeoutS?: number;
  /** A transport that has not opened by then has failed (default 10 s; SSE and streaming: `streamOpenTimeoutMs`). */
  connectTimeoutMs?: number;
  /**
   * Browsers: the tabs of this origin share one connection to this server (default true in pages where
   * Web Locks and BroadcastChannel exist; Node never shares). A string shares only with instances given
   * the same string: tabs holding different users' tokens must use different strings. `false` opts out.
   */
  share?: boolean | string;
  /**
   * SSE and streaming count as open at their first bytes (the server writes one at once). None within
   * this time (default 4000 ms) while the server answers a probe means a proxy buffers streams: the
   * client skips the other streams and falls back to long polling. A stream that opened before is
   * retried instead.
   */
  streamOpenTimeoutMs?: number;
  /**
   * Browsers: drop the connection on the page's `offline` event and retry at once on `online` and when
   * the tab becomes visible again (default true).
   */
  watchNetwork?: boolean;
}
