// Small resumable clients for every Herald transport, used by the property, crash-restart and resource
// tests. Each session delivers envelopes and reset notices one at a time through `onDelivery`, can be
// dropped abruptly at any moment (nothing is delivered after `close()` returns), and the caller resumes
// it with the cursor of the last delivery it processed. Also raw-socket helpers for clients that never
// read (slow consumers, dead peers).
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { EventSource } from 'eventsource';
import WebSocket from 'ws';

import type { Envelope } from './clients.js';

export type { Envelope };

export interface ResetEntry {
  channel: string;
  epoch: string;
  from: number;
  missed?: number;
  cursor: string;
}

export type Delivery = { type: 'message'; envelope: Envelope } | { type: 'reset'; reset: ResetEntry };

export const TRANSPORT_KINDS = ['sse', 'websocket', 'longpoll', 'shortpoll', 'stream', 'jsonp', 'iframe'] as const;
export type TransportKind = (typeof TRANSPORT_KINDS)[number];

export interface SessionOptions {
  /** Server base URL, e.g. http://127.0.0.1:1234. */
  baseUrl: string;
  channels: readonly string[];
  /** Where to resume; undefined starts every channel at the beginning of its history. */
  cursor: string | undefined;
  /** Picks among the transport's ways of passing the cursor (query, header, op, with or without channels). */
  style: number;
  /** Event names (besides "message" and "reset") an SSE session listens for. */
  sseEvents?: readonly string[];
  /**
   * Polls only (longpoll, shortpoll, jsonp): the server base URL of each request, asked once per
   * request (e.g. round-robin over the nodes of one service); `baseUrl` when not given.
   */
  pollBaseUrl?: () => string;
  onDelivery(delivery: Delivery): void;
}

/**
 * How a session ended: `closed` by `close()`, `error` when the connection failed or the server ended it,
 * `protocol` when the server answered something a correct server never answers (the test should fail).
 */
export type SessionEnd = { kind: 'closed' } | { kind: 'error'; error: unknown } | { kind: 'protocol'; detail: string };

export interface Session {
  /** Drops the connection abruptly; nothing is delivered after this returns. */
  close(): void;
  readonly ended: Promise<SessionEnd>;
}

export function openSession(kind: TransportKind, options: SessionOptions): Session {
  switch (kind) {
    case 'sse':
      return openSse(options);
    case 'websocket':
      return openWebSocket(options);
    case 'longpoll':
      return openPoll(options, { timeoutS: 5 });
    case 'shortpoll':
      return openPoll(options, { timeoutS: 0 });
    case 'jsonp':
      return openPoll(options, { timeoutS: 5, callback: 'cb' });
    case 'stream':
      return openStream(options, 'stream');
    case 'iframe':
      return openStream(options, 'iframe');
  }
}

/** Query parameters of an HTTP subscription: channels, since=beginning, and the cursor in the query. */
function subscriptionParams(options: SessionOptions, withChannels = true): URLSearchParams {
  const params = new URLSearchParams();
  if (withChannels || options.cursor === undefined) for (const channel of options.channels) params.append('channel', channel);
  params.set('since', 'beginning');
  if (options.cursor !== undefined) params.set('cursor', options.cursor);
  return params;
}

/** Turns a parsed JSON entry of a poll/stream body into a delivery (reset entries carry "reset":true). */
function toDelivery(entry: Record<string, unknown>): Delivery {
  if (entry.reset === true) {
    const { reset: _ignored, ...rest } = entry;
    return { type: 'reset', reset: rest as unknown as ResetEntry };
  }
  return { type: 'message', envelope: entry as unknown as Envelope };
}

class SessionState {
  isClosed = false;
  #settle!: (end: SessionEnd) => void;
  #isSettled = false;
  readonly ended = new Promise<SessionEnd>((resolve) => (this.#settle = resolve));

  settle(end: SessionEnd): void {
    if (this.#isSettled) return;
    this.#isSettled = true;
    this.#settle(this.isClosed ? { kind: 'closed' } : end);
  }

  /** Settles with the end `run` reaches (or its error). */
  follow(run: Promise<SessionEnd>): void {
    run.then(
      (end) => this.settle(end),
      (error: unknown) => this.settle({ kind: 'error', error }),
    );
  }

  /** The session's handle: close() stops the wire with `stop` and settles as closed. */
  handle(stop: () => void): Session {
    return {
      ended: this.ended,
      close: () => {
        this.isClosed = true;
        stop();
        this.settle({ kind: 'closed' });
      },
    };
  }
}

function openSse(options: SessionOptions): Session {
  const state = new SessionState();
  const style = options.style % 3;
  // 0: ?cursor= with the channels; 1: Last-Event-ID header with the channels; 2: ?cursor= alone.
  const params =
    options.cursor === undefined || style === 1
      ? subscriptionParams({ ...options, cursor: undefined })
      : subscriptionParams(options, style === 0);
  const extraHeaders: Record<string, string> =
    options.cursor !== undefined && style === 1 ? { 'Last-Event-ID': options.cursor } : {};
  const es = new EventSource(`${options.baseUrl}/v1/sse?${params}`, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, ...extraHeaders } }),
  });
  const onEvent = (event: MessageEvent): void => {
    if (state.isClosed) return;
    const entry = JSON.parse(event.data as string) as Record<string, unknown>;
    if (event.type === 'reset') options.onDelivery({ type: 'reset', reset: entry as unknown as ResetEntry });
    else options.onDelivery({ type: 'message', envelope: entry as unknown as Envelope });
  };
  for (const name of ['message', 'reset', ...(options.sseEvents ?? [])]) es.addEventListener(name, onEvent);
  es.onerror = (event) => {
    // The package would reconnect to the same URL by itself; the tests reconnect on their own terms.
    es.close();
    if (event.code !== undefined && event.code !== 200) {
      state.settle({ kind: 'protocol', detail: `SSE answered ${event.code}: ${event.message ?? ''}` });
    } else state.settle({ kind: 'error', error: new Error(`SSE error: ${event.message ?? 'connection lost'}`) });
  };
  return state.handle(() => es.close());
}

function openWebSocket(options: SessionOptions): Session {
  const state = new SessionState();
  const viaQuery = options.style % 2 === 1;
  const base = `${options.baseUrl.replace(/^http/, 'ws')}/v1/ws`;
  const ws = new WebSocket(viaQuery ? `${base}?${subscriptionParams(options)}` : base);
  ws.on('open', () => {
    if (viaQuery) return;
    for (const channel of options.channels) {
      const op: Record<string, unknown> = { op: 'subscribe', channel, since: 'beginning', id: channel };
      if (options.cursor !== undefined) op.cursor = options.cursor;
      ws.send(JSON.stringify(op));
    }
  });
  ws.on('message', (data) => {
    if (state.isClosed) return;
    const frame = JSON.parse(data.toString()) as Record<string, unknown>;
    const { op, ...rest } = frame;
    if (op === 'message') options.onDelivery({ type: 'message', envelope: rest as unknown as Envelope });
    else if (op === 'reset') options.onDelivery({ type: 'reset', reset: rest as unknown as ResetEntry });
    else if (op === 'error') {
      state.settle({ kind: 'protocol', detail: `WebSocket error frame: ${data.toString()}` });
      ws.terminate();
    }
  });
  ws.on('error', (error) => state.settle({ kind: 'error', error }));
  ws.on('close', (code, reason) => state.settle({ kind: 'error', error: new Error(`WebSocket closed ${code} ${reason.toString()}`) }));
  return state.handle(() => ws.terminate());
}

function openPoll(options: SessionOptions, mode: { timeoutS: number; callback?: string }): Session {
  const state = new SessionState();
  const controller = new AbortController();
  const limits = [undefined, 7, 1000] as const;
  const limit = limits[options.style % 3];
  const withChannels = Math.floor(options.style / 3) % 2 === 0;
  const run = async (): Promise<SessionEnd> => {
    let cursor = options.cursor;
    while (!state.isClosed) {
      const params = subscriptionParams({ ...options, cursor }, withChannels);
      params.set('timeout', String(mode.timeoutS));
      if (limit !== undefined) params.set('limit', String(limit));
      if (mode.callback !== undefined) params.set('callback', mode.callback);
      const baseUrl = options.pollBaseUrl?.() ?? options.baseUrl;
      const res = await fetch(`${baseUrl}/v1/poll?${params}`, { signal: controller.signal });
      const text = await res.text();
      if (res.status !== 200) return { kind: 'protocol', detail: `poll answered ${res.status}: ${text}` };
      const body = (mode.callback === undefined ? JSON.parse(text) : parseJsonp(text, mode.callback)) as {
        messages: Record<string, unknown>[];
        cursor: string;
      };
      for (const entry of body.messages) {
        if (state.isClosed) return { kind: 'closed' };
        options.onDelivery(toDelivery(entry));
      }
      cursor = body.cursor;
      // Short polling asks again a moment later when there was nothing new: that is what it is.
      if (mode.timeoutS === 0 && body.messages.length === 0) await new Promise((r) => setTimeout(r, 10));
    }
    return { kind: 'closed' };
  };
  state.follow(run());
  return state.handle(() => controller.abort());
}

/** The JSON inside a JSONP answer `/**\/cb(...);`. */
export function parseJsonp(text: string, callback: string): unknown {
  const prefix = `/**/${callback}(`;
  if (!text.startsWith(prefix) || !text.endsWith(');')) throw new Error(`not a JSONP answer for ${callback}: ${text.slice(0, 200)}`);
  return JSON.parse(text.slice(prefix.length, -2));
}

const IFRAME_CALL_OPEN = '<script>parent.cb(';
const IFRAME_CALL_CLOSE = ');</script>\n';

/**
 * Takes every complete `<script>parent.cb(…);</script>` out of an iframe page's text; returns the JSON
 * texts and what remains (an incomplete call, or padding and heartbeats that hold no call).
 */
export function takeIframeCalls(text: string): { calls: string[]; rest: string } {
  const calls: string[] = [];
  let from = 0;
  for (;;) {
    const open = text.indexOf(IFRAME_CALL_OPEN, from);
    // Keep a tail that may be the start of a call cut by the chunk boundary.
    if (open < 0) return { calls, rest: text.slice(Math.max(from, text.length - IFRAME_CALL_OPEN.length + 1)) };
    const close = text.indexOf(IFRAME_CALL_CLOSE, open);
    if (close < 0) return { calls, rest: text.slice(open) };
    calls.push(text.slice(open + IFRAME_CALL_OPEN.length, close));
    from = close + IFRAME_CALL_CLOSE.length;
  }
}

function openStream(options: SessionOptions, kind: 'stream' | 'iframe'): Session {
  const state = new SessionState();
  const controller = new AbortController();
  const withChannels = options.style % 2 === 0;
  const run = async (): Promise<SessionEnd> => {
    const params = subscriptionParams(options, withChannels);
    if (kind === 'iframe') params.set('callback', 'cb');
    const res = await fetch(`${options.baseUrl}/v1/${kind}?${params}`, { signal: controller.signal });
    if (res.status !== 200) return { kind: 'protocol', detail: `${kind} answered ${res.status}: ${await res.text()}` };
    const decoder = new TextDecoder();
    let pending = '';
    for await (const chunk of res.body!) {
      if (state.isClosed) return { kind: 'closed' };
      pending += decoder.decode(chunk as Uint8Array, { stream: true });
      let texts: string[];
      if (kind === 'stream') {
        const lines = pending.split('\n');
        pending = lines.pop()!;
        texts = lines.filter((line) => line !== '');
      } else {
        const { calls, rest } = takeIframeCalls(pending);
        pending = rest;
        texts = calls;
      }
      for (const text of texts) {
        if (state.isClosed) return { kind: 'closed' };
        const entry = JSON.parse(text) as Record<string, unknown>;
        if (entry.heartbeat === true) continue;
        options.onDelivery(toDelivery(entry));
      }
    }
    return { kind: 'error', error: new Error(`${kind} response ended`) };
  };
  state.follow(run());
  return state.handle(() => controller.abort());
}

// ---------------------------------------------------------------------------------------------------
// Raw sockets: clients that stop reading, never answer pings, and whose received bytes we parse by hand.

/** Opens a TCP connection to the server of `baseUrl` and writes `request` once connected. */
export async function rawRequest(baseUrl: string, request: string): Promise<Socket> {
  const { hostname, port } = new URL(baseUrl);
  const socket = connect({ host: hostname, port: Number(port) });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(request);
  return socket;
}

/** A raw WebSocket upgrade request (subscribing through the query string, so no frame need be sent). */
export function rawUpgradeRequest(baseUrl: string, pathAndQuery: string): string {
  const { host } = new URL(baseUrl);
  const key = randomBytes(16).toString('base64');
  return (
    `GET ${pathAndQuery} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  );
}

/** Splits an HTTP response's bytes into its head and (de-chunked when chunked) body bytes. */
export function splitHttpResponse(bytes: Buffer): { head: string; body: Buffer } {
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) throw new Error('no complete HTTP response head');
  const head = bytes.subarray(0, end).toString('latin1');
  const raw = bytes.subarray(end + 4);
  if (!/^transfer-encoding:\s*chunked/im.test(head)) return { head, body: raw };
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = raw.indexOf('\r\n', at);
    if (lineEnd < 0) break;
    const size = parseInt(raw.subarray(at, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    const start = lineEnd + 2;
    if (start + size > raw.length) {
      parts.push(raw.subarray(start)); // the connection was cut inside this chunk
      break;
    }
    parts.push(raw.subarray(start, start + size));
    at = start + size + 2;
  }
  return { head, body: Buffer.concat(parts) };
}

export interface WsFrame {
  opcode: number;
  payload: Buffer;
}

/** Parses the complete unmasked (server → client) frames at the start of `bytes`. */
export function parseServerFrames(bytes: Buffer): WsFrame[] {
  const frames: WsFrame[] = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    const opcode = bytes[at]! & 0x0f;
    let length = bytes[at + 1]! & 0x7f;
    let headerLength = 2;
    if (length === 126) {
      if (at + 4 > bytes.length) break;
      length = bytes.readUInt16BE(at + 2);
      headerLength = 4;
    } else if (length === 127) {
      if (at + 10 > bytes.length) break;
      length = Number(bytes.readBigUInt64BE(at + 2));
      headerLength = 10;
    }
    if (at + headerLength + length > bytes.length) break;
    frames.push({ opcode, payload: bytes.subarray(at + headerLength, at + headerLength + length) });
    at += headerLength + length;
  }
  return frames;
}

/** Collects everything a socket receives from now until the peer ends it. */
export function readToEnd(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('close', () => resolve(Buffer.concat(chunks)));
    socket.on('error', () => {});
    socket.resume();
  });
}

/** Waits until `predicate` holds, checking every `everyMs`; fails with `describe()` after `timeoutMs`. */
export async function waitUntil(predicate: () => boolean, timeoutMs: number, describe: () => string, everyMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
