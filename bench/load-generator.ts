// A load-generator process, forked by bench/run.ts (never in the server's process). It opens its share
// of subscriber connections over plain TCP sockets, spread over 127.0.0.x source addresses, speaks just
// enough HTTP/1.1, SSE and WebSocket (RFC 6455) to subscribe, and counts every message it receives.
// Latency is receipt time minus the publish timestamp `"t"` the publisher put in the message data.
//
// Hand-written wire clients rather than `ws`/`eventsource`: on a 2-core machine the load generator
// shares the CPU with the server, so the cheaper it is per message, the more the figures say about the
// server. Both servers get exactly the same client.
//
// IPC: the parent sends `connect`, then `reset` (start of a measurement window), `report` (end of it)
// and `stop`; this process sends `ready`, `progress` (total received, every PROGRESS_MS) and replies.
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { BUCKET_MS, nowMs, type ChildReply, type ConnectCommand, type ParentCommand } from './protocol.js';

const PROGRESS_MS = 20;
const MARKER = Buffer.from('{"t":');
const CURSOR_KEY = Buffer.from('"cursor":"');
const HEADER_END = Buffer.from('\r\n\r\n');
const EVENT_END = Buffer.from('\n\n');

// ---- counters ---------------------------------------------------------------------------------

let total = 0;
let windowReceived = 0;
/** Poll answers that carried at least one message, since the last `reset`. */
let windowAnswers = 0;
/** Latency counts per BUCKET_MS bucket; the last bucket takes everything slower. */
const MAX_BUCKET = 600_000;
let histogram = new Uint32Array(MAX_BUCKET + 1);
let dropped = 0;
const errors: string[] = [];

function noteError(message: string): void {
  if (errors.length < 20) errors.push(message);
}

/** Counts every message in buf[from, to) by its `{"t":` marker and records its latency. */
function scanMessages(buf: Buffer, from: number, to: number): void {
  const receivedAtMs = nowMs();
  let at = buf.indexOf(MARKER, from);
  while (at !== -1 && at < to) {
    // Parse the number after the marker by hand: no string is built per message.
    let i = at + MARKER.length;
    let value = 0;
    let scale = 0;
    for (; i < to; i++) {
      const c = buf[i]!;
      if (c >= 48 && c <= 57) {
        value = value * 10 + (c - 48);
        if (scale > 0) scale *= 10;
      } else if (c === 46 && scale === 0) scale = 1;
      else break;
    }
    const sentAtMs = scale > 0 ? value / scale : value;
    const bucket = Math.min(MAX_BUCKET, Math.max(0, Math.round((receivedAtMs - sentAtMs) / BUCKET_MS)));
    histogram[bucket]!++;
    total++;
    windowReceived++;
    at = buf.indexOf(MARKER, i);
  }
}

// ---- clients ----------------------------------------------------------------------------------

interface Client {
  readonly socket: Socket;
}

abstract class BaseClient implements Client {
  readonly socket: Socket;
  protected pending: Buffer | undefined;
  #isReady = false;
  #isDone = false;
  #onReady: (ok: boolean, error?: string) => void;

  constructor(cmd: ConnectCommand, localAddress: string, onReady: (ok: boolean, error?: string) => void) {
    this.#onReady = onReady;
    this.socket = connect({ host: cmd.host, port: cmd.port, localAddress });
    this.socket.setNoDelay(true);
    this.socket.on('connect', () => this.socket.write(this.openingRequest(cmd)));
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err) => this.fail(err.message));
    this.socket.on('close', () => this.fail('closed by server'));
  }

  protected abstract openingRequest(cmd: ConnectCommand): string | Buffer;
  protected abstract onData(chunk: Buffer): void;

  protected ready(): void {
    if (this.#isReady) return;
    this.#isReady = true;
    this.#onReady(true);
  }

  protected fail(message: string): void {
    if (this.#isDone) return;
    this.#isDone = true;
    if (!this.#isReady) {
      this.#isReady = true;
      this.#onReady(false, message);
    } else if (!isStopping) {
      dropped++;
      noteError(message);
    }
    this.socket.destroy();
  }

  protected take(chunk: Buffer): Buffer {
    if (this.pending === undefined) return chunk;
    const data = Buffer.concat([this.pending, chunk]);
    this.pending = undefined;
    return data;
  }

  /** Splits off the HTTP head once complete: [status line, headers text, rest] or undefined. */
  protected head(data: Buffer): { status: string; headers: string; rest: Buffer } | undefined {
    const end = data.indexOf(HEADER_END);
    if (end === -1) {
      this.pending = data;
      return undefined;
    }
    const text = data.toString('latin1', 0, end);
    const lineEnd = text.indexOf('\r\n');
    return {
      status: lineEnd === -1 ? text : text.slice(0, lineEnd),
      headers: text.toLowerCase(),
      rest: data.subarray(end + HEADER_END.length),
    };
  }
}

/** GET /v1/sse: one response streamed forever; events end with a blank line. */
class SseClient extends BaseClient {
  #hasHead = false;

  protected openingRequest(cmd: ConnectCommand): string {
    return `GET /v1/sse?channel=${cmd.channel} HTTP/1.1\r\nHost: ${cmd.host}:${cmd.port}\r\nAccept: text/event-stream\r\n\r\n`;
  }

  protected onData(chunk: Buffer): void {
    let data = this.take(chunk);
    if (!this.#hasHead) {
      const head = this.head(data);
      if (head === undefined) return;
      if (!head.status.startsWith('HTTP/1.1 200')) return this.fail(`sse: ${head.status}`);
      this.#hasHead = true;
      // Herald attaches the subscriber in the same tick it flushes these headers.
      this.ready();
      data = head.rest;
    }
    // Chunked framing only ever falls between events, so complete events hold complete markers.
    const end = data.lastIndexOf(EVENT_END);
    if (end === -1) {
      if (data.length > 0) this.pending = data;
      return;
    }
    scanMessages(data, 0, end);
    const restAt = end + EVENT_END.length;
    if (restAt < data.length) this.pending = Buffer.from(data.subarray(restAt));
  }
}

/** GET /v1/ws: RFC 6455 client; server frames are unmasked, ours are masked. */
class WsClient extends BaseClient {
  #hasHead = false;
  #isSubscribed = false;
  readonly #channel: string;

  constructor(cmd: ConnectCommand, localAddress: string, onReady: (ok: boolean, error?: string) => void) {
    super(cmd, localAddress, onReady);
    this.#channel = cmd.channel;
  }

  protected openingRequest(cmd: ConnectCommand): string {
    const key = randomBytes(16).toString('base64');
    return (
      `GET /v1/ws HTTP/1.1\r\nHost: ${cmd.host}:${cmd.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
    );
  }

  protected onData(chunk: Buffer): void {
    let data = this.take(chunk);
    if (!this.#hasHead) {
      const head = this.head(data);
      if (head === undefined) return;
      if (!head.status.startsWith('HTTP/1.1 101')) return this.fail(`ws: ${head.status}`);
      this.#hasHead = true;
      this.socket.write(maskedFrame(0x1, Buffer.from(JSON.stringify({ op: 'subscribe', channel: this.#channel }))));
      data = head.rest;
    }
    let at = 0;
    while (data.length - at >= 2) {
      const opcode = data[at]! & 0x0f;
      let length = data[at + 1]! & 0x7f;
      let headerBytes = 2;
      if (length === 126) {
        if (data.length - at < 4) break;
        length = data.readUInt16BE(at + 2);
        headerBytes = 4;
      } else if (length === 127) {
        if (data.length - at < 10) break;
        length = data.readUInt32BE(at + 6);
        headerBytes = 10;
      }
      const end = at + headerBytes + length;
      if (end > data.length) break;
      this.#onFrame(opcode, data, at + headerBytes, end);
      at = end;
    }
    if (at < data.length) this.pending = Buffer.from(data.subarray(at));
  }

  #onFrame(opcode: number, data: Buffer, from: number, to: number): void {
    if (opcode === 0x1) {
      if (!this.#isSubscribed) {
        const text = data.toString('utf8', from, to);
        if (text.includes('"op":"subscribed"')) {
          this.#isSubscribed = true;
          this.ready();
        } else if (text.includes('"op":"error"')) this.fail(`ws: ${text}`);
        return;
      }
      scanMessages(data, from, to);
    } else if (opcode === 0x9) {
      this.socket.write(maskedFrame(0xa, Buffer.from(data.subarray(from, to))));
    } else if (opcode === 0x8) {
      this.fail(`ws close ${to - from >= 2 ? data.readUInt16BE(from) : ''}`);
    }
  }
}

function maskedFrame(opcode: number, payload: Buffer): Buffer {
  if (payload.length > 125) throw new Error('control payloads only');
  const mask = randomBytes(4);
  const frame = Buffer.alloc(6 + payload.length);
  frame[0] = 0x80 | opcode;
  frame[1] = 0x80 | payload.length;
  mask.copy(frame, 2);
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

/** GET /v1/poll on one keep-alive socket: re-polls with the answer's cursor as soon as it arrives. */
class PollClient extends BaseClient {
  readonly #cmd: ConnectCommand;
  #bodyBytes = -1;
  #body: Buffer | undefined;

  constructor(cmd: ConnectCommand, localAddress: string, onReady: (ok: boolean, error?: string) => void) {
    super(cmd, localAddress, onReady);
    this.#cmd = cmd;
  }

  protected openingRequest(cmd: ConnectCommand): string {
    // The first poll has no cursor: it starts at the live head and is held.
    setImmediate(() => this.ready());
    return this.#request(cmd, undefined);
  }

  #request(cmd: ConnectCommand, cursor: string | undefined): string {
    const resume = cursor === undefined ? '' : `&cursor=${cursor}`;
    return `GET /v1/poll?channel=${cmd.channel}&timeout=25${resume} HTTP/1.1\r\nHost: ${cmd.host}:${cmd.port}\r\n\r\n`;
  }

  protected onData(chunk: Buffer): void {
    let data = this.take(chunk);
    for (;;) {
      if (this.#bodyBytes < 0) {
        const head = this.head(data);
        if (head === undefined) return;
        if (!head.status.startsWith('HTTP/1.1 200')) return this.fail(`poll: ${head.status}`);
        const match = /\r\ncontent-length:\s*(\d+)/.exec(head.headers);
        if (match === null) return this.fail('poll: no content-length');
        this.#bodyBytes = Number(match[1]);
        data = head.rest;
      }
      if (data.length < this.#bodyBytes) {
        this.pending = data;
        return;
      }
      const body = data.subarray(0, this.#bodyBytes);
      const rest = data.subarray(this.#bodyBytes);
      this.#bodyBytes = -1;
      this.#body = body;
      this.#answered();
      if (rest.length === 0) return;
      data = Buffer.from(rest);
    }
  }

  #answered(): void {
    const body = this.#body!;
    this.#body = undefined;
    const before = windowReceived;
    scanMessages(body, 0, body.length);
    if (windowReceived > before) windowAnswers++;
    // The answer's own cursor is the last "cursor" key of the body.
    const at = body.lastIndexOf(CURSOR_KEY);
    if (at === -1) return this.fail('poll: answer without cursor');
    const from = at + CURSOR_KEY.length;
    const cursor = body.toString('latin1', from, body.indexOf(0x22, from));
    this.socket.write(this.#request(this.#cmd, cursor));
  }
}

// ---- process ----------------------------------------------------------------------------------

const clients: Client[] = [];
let isStopping = false;

function sparse(counts: Uint32Array): [number, number][] {
  const pairs: [number, number][] = [];
  for (let i = 0; i < counts.length; i++) if (counts[i]! > 0) pairs.push([i, counts[i]!]);
  return pairs;
}

function send(reply: ChildReply): void {
  process.send?.(reply);
}

function open(cmd: ConnectCommand): void {
  const Kind = cmd.transport === 'ws' ? WsClient : cmd.transport === 'sse' ? SseClient : PollClient;
  let started = 0;
  let settled = 0;
  let connected = 0;
  const failures: string[] = [];
  const next = (): void => {
    if (started >= cmd.count) return;
    const index = started++;
    const localAddress = cmd.sourceAddresses[index % cmd.sourceAddresses.length]!;
    clients.push(
      new Kind(cmd, localAddress, (ok, error) => {
        settled++;
        if (ok) connected++;
        else if (failures.length < 10) failures.push(error ?? 'unknown');
        if (settled === cmd.count) send({ type: 'ready', connected, failed: settled - connected, errors: failures });
        else next();
      }),
    );
  };
  for (let i = 0; i < Math.min(cmd.concurrency, cmd.count); i++) next();
  if (cmd.count === 0) send({ type: 'ready', connected: 0, failed: 0, errors: [] });
  let lastTotal = -1;
  setInterval(() => {
    if (total === lastTotal) return;
    lastTotal = total;
    send({ type: 'progress', total });
  }, PROGRESS_MS).unref();
}

process.on('message', (cmd: ParentCommand) => {
  switch (cmd.type) {
    case 'connect':
      open(cmd);
      return;
    case 'reset':
      windowReceived = 0;
      windowAnswers = 0;
      histogram = new Uint32Array(MAX_BUCKET + 1);
      send({ type: 'reset' });
      return;
    case 'report':
      send({ type: 'report', received: windowReceived, answers: windowAnswers, total, histogram: sparse(histogram), dropped, errors });
      return;
    case 'stop':
      isStopping = true;
      for (const client of clients) client.socket.destroy();
      process.exit(0);
  }
});
// Never outlive the benchmark, whatever happened to it.
process.on('disconnect', () => process.exit(0));
