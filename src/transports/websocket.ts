import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { WS_MESSAGE, wsControl, wsReset } from '../frames/websocket.js';
import { ERRORS, HeraldError, type ErrorCode, type ErrorSpec } from '../http/errors.js';
import { MAX_CHANNELS_PER_SUBSCRIPTION, decodeCursor, isValidChannel, type Position } from '../hub/cursor.js';
import type { ResetNotice, StartAt } from '../hub/hub.js';
import { Connection } from './connection.js';
import { parseSince, parseSubscribeRequest } from './subscribe-request.js';
import type { Transport, TransportContext } from './transport.js';

type Frame = Record<string, unknown>;

class WebSocketConnection extends Connection {
  readonly #ws: WebSocket;
  /** The upgraded socket under `ws`: its 'drain' paces replay. */
  readonly #socket: Duplex;
  /** Cleared by each ping sweep, set by any pong or frame: still clear at the next sweep means dead. */
  isAlive = true;

  constructor(ctx: TransportContext, ws: WebSocket, socket: Duplex) {
    super(ctx, 'websocket', WS_MESSAGE);
    this.#ws = ws;
    this.#socket = socket;
    ws.on('message', (data, isBinary) => this.#onFrame(data, isBinary));
    ws.on('pong', () => (this.isAlive = true));
  }

  protected get bufferedBytes(): number {
    return this.#ws.bufferedAmount;
  }

  protected get needsDrain(): boolean {
    return this.#socket.writableNeedDrain;
  }

  protected onDrain(resume: () => void): void {
    this.#socket.once('drain', resume);
  }

  protected send(bytes: Buffer): void {
    this.#ws.send(bytes, { binary: false });
  }

  protected resetFrame(notice: ResetNotice, cursor: string): Buffer {
    return wsReset(notice, cursor);
  }

  protected end(reason: ErrorCode | undefined): void {
    if (reason === undefined) return; // the socket closed first
    if (reason === 'heartbeat_timeout') this.#ws.terminate();
    else {
      const spec: ErrorSpec = ERRORS[reason];
      this.#ws.close(spec.wsCloseCode ?? 1011, reason);
    }
  }

  ping(): void {
    this.isAlive = false;
    this.#ws.ping();
  }

  #reply(op: string, fields: Record<string, unknown>, id: unknown): void {
    this.write(wsControl(op, fields, id));
  }

  #onFrame(data: RawData, isBinary: boolean): void {
    this.isAlive = true;
    let frame: unknown;
    try {
      frame = isBinary ? undefined : JSON.parse(data.toString());
    } catch {
      frame = undefined;
    }
    if (typeof frame !== 'object' || frame === null || Array.isArray(frame) || typeof (frame as Frame).op !== 'string') {
      this.#error(new HeraldError('frame_invalid'), undefined, {});
      return;
    }
    const f = frame as Frame;
    const id = typeof f.id === 'string' || typeof f.id === 'number' ? f.id : undefined;
    const channelField = typeof f.channel === 'string' ? { channel: f.channel } : {};
    try {
      switch (f.op) {
        case 'subscribe':
          return this.#subscribeOne(f, id);
        case 'unsubscribe':
          return this.#unsubscribeOne(f, id);
        case 'ping':
          return this.#reply('pong', {}, id);
        default:
          throw new HeraldError('op_unknown');
      }
    } catch (err) {
      if (!(err instanceof HeraldError)) throw err;
      this.#error(err, id, channelField);
    }
  }

  #error(err: HeraldError, id: unknown, fields: Record<string, unknown>): void {
    this.#reply('error', { code: err.code, message: err.message, ...fields }, id);
  }

  #subscribeOne(frame: Frame, id: unknown): void {
    const channel = frame.channel;
    if (!isValidChannel(channel)) throw new HeraldError('channel_invalid');
    let start: StartAt = parseSince(frame.since);
    let resumeCursor: Map<string, Position> | undefined;
    if (frame.cursor !== undefined) {
      if (typeof frame.cursor !== 'string') throw new HeraldError('cursor_invalid');
      resumeCursor = decodeCursor(frame.cursor);
      start = resumeCursor.get(channel) ?? start;
    }
    if (this.cursor.has(channel)) return this.#reply('subscribed', { channel }, id);
    if (this.cursor.size >= MAX_CHANNELS_PER_SUBSCRIPTION) throw new HeraldError('too_many_channels');
    if (resumeCursor !== undefined) this.cursor.carry(resumeCursor);
    this.#reply('subscribed', { channel }, id);
    this.subscribe(new Map([[channel, start]]));
  }

  #unsubscribeOne(frame: Frame, id: unknown): void {
    const channel = frame.channel;
    if (!isValidChannel(channel)) throw new HeraldError('channel_invalid');
    this.unsubscribe(channel);
    this.#reply('unsubscribed', { channel }, id);
  }
}

/**
 * GET /v1/ws — JSON text frames, any number of channels per socket. Optional `channel`/`cursor`/`since`
 * query parameters subscribe at once, as on the HTTP transports.
 */
export class WebSocketTransport implements Transport {
  readonly #ctx: TransportContext;
  readonly #server: WebSocketServer;
  readonly #connections = new Set<WebSocketConnection>();
  #lastPingMs = Date.now();

  constructor(ctx: TransportContext) {
    this.#ctx = ctx;
    this.#server = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: ctx.config.maxBodyBytes,
      perMessageDeflate: false,
    });
  }

  /** Takes over an upgrade request; throws a HeraldError (before anything is written) to refuse it. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): void {
    const hasInitial = url.searchParams.has('channel') || url.searchParams.has('cursor');
    const starts = hasInitial ? parseSubscribeRequest(url.searchParams) : new Map<string, StartAt>();
    this.#server.handleUpgrade(req, socket, head, (ws) => {
      const connection = new WebSocketConnection(this.#ctx, ws, socket);
      this.#connections.add(connection);
      const release = (): void => {
        connection.close();
        this.#connections.delete(connection);
      };
      ws.on('close', release);
      ws.on('error', release);
      if (starts.size > 0) connection.subscribe(starts);
    });
  }

  tick(nowMs: number): void {
    if (nowMs - this.#lastPingMs < this.#ctx.config.heartbeatMs) return;
    this.#lastPingMs = nowMs;
    for (const connection of this.#connections) {
      if (connection.isAlive) connection.ping();
      else connection.close('heartbeat_timeout');
    }
  }

  closeAll(): void {
    for (const connection of this.#connections) connection.close('shutting_down');
  }
}
