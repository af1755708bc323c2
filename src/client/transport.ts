// The seam between the client core (client.ts) and its wires (transports/*). A transport only moves
// entries; the core owns subscriptions, cursors, dedupe, liveness and reconnecting.
import type { HeraldError } from './errors.js';
import type { Envelope, EventSourceLike, PresenceEvent, ResetInfo, TransportName, WebSocketLike } from './types.js';

/** What one wire delivers: an envelope, or a reset notice (the only entries with `from`). */
export type Entry = Envelope | ResetInfo;

/** Resolved options every transport reads. */
export interface Settings {
  fetch: typeof fetch | undefined;
  WebSocket: (new (url: string) => WebSocketLike) | undefined;
  EventSource: (new (url: string) => EventSourceLike) | undefined;
  heartbeatMs: number;
  pingMs: number;
  pollTimeoutS: number;
}

/**
 * The core, as one connection attempt sees it. Calls from an attempt the core has given up on are
 * ignored, so a transport never needs to know whether it is still current.
 */
export interface Link {
  /** The server's http(s) base URL, without a trailing slash. */
  readonly url: string;
  readonly settings: Settings;
  /** The channels wanted now, in subscription order. */
  channels(): string[];
  /** Query string of an HTTP subscription to `channels`: `channel`, `cursor`, `since`, `presence`, `token`. */
  query(channels: readonly string[]): string;
  /** Where one channel resumes, and whether it wants presence events (WebSocket subscribes channel by channel). */
  start(channel: string): { cursor?: string; since?: 'beginning'; presence?: true };
  /** The client token, if any (WebSocket puts it on its URL). */
  token(): string | undefined;
  /** The wire is open (idempotent). Silence longer than `deadAfterMs` (any entry or `alive()`) will count as dead. */
  opened(deadAfterMs?: number): void;
  /** A sign of life without an entry (heartbeat, pong). */
  alive(): void;
  /** An entry, in wire order; its cursor names every channel of `covered`. */
  receive(entry: Entry, covered: Iterable<string>): void;
  /** A cursor without an entry (a poll answer's), naming every channel of `covered`. */
  cover(cursor: string, covered: Iterable<string>): void;
  /** A presence event of a subscribed channel. */
  presence(kind: 'join' | 'leave', event: PresenceEvent): void;
  /** The server says the token expires: the core gets a fresh one and calls `refresh` (or `update`). */
  expiring(): void;
  /** The server refused something: one channel's subscription, or (no channel) the request. */
  refused(error: HeraldError, channel?: string): void;
  /** The wire ended or failed by itself; the core decides what comes next. */
  closed(reason: string, error?: unknown): void;
}

export interface Transport {
  /** The wanted channels changed: follow them without losing anything on the others. */
  update(): void;
  /** Ends the wire at once; makes no more Link calls. Idempotent. */
  close(): void;
  /** An event name was seen (SSE must listen for each name to receive it). */
  learn?(event: string): void;
  /** Sends a fresh token on the open wire (WebSocket `refresh` op, or a new HTTP listen request). */
  refresh?(token: string): void;
  /** A request/reply op on the open wire (WebSocket); rejects with the `error` op as a HeraldError. */
  request?(frame: Record<string, unknown>): Promise<Record<string, any>>;
  /**
   * A stream over HTTP: it calls `opened` at its first bytes, not its headers. None within
   * `streamOpenTimeoutMs` while the server answers means a proxy buffers streams: the core falls back
   * to long polling.
   */
  isStream?: boolean;
}

export type TransportFactory = (link: Link) => Transport;

export function isAvailable(name: TransportName, settings: Settings): boolean {
  if (name === 'websocket') return settings.WebSocket !== undefined;
  if (name === 'sse') return settings.EventSource !== undefined;
  if (name === 'stream') return settings.fetch !== undefined && typeof TextDecoder === 'function';
  // <script> and <iframe> need a page, and fetch (anchoring, and learning why a request failed).
  if ((name === 'jsonp' || name === 'iframe') && typeof document !== 'object') return false;
  return settings.fetch !== undefined;
}
