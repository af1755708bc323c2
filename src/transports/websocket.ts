import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Access } from '../auth/access.js';
import { TokenBucket } from '../auth/rate-limit.js';
import { WS_MESSAGE, wsControl, wsPresence, wsReset, wsTokenExpired } from '../frames/websocket.js';
import { ERRORS, HeraldError, asHeraldError, type ErrorCode, type ErrorSpec } from '../errors.js';
import { parseUntrustedJson } from '../json.js';
import { toAppendInput } from '../hub/publish-input.js';
import type { PresenceEvent } from '../presence/fan-out.js';
import { MAX_CHANNELS_PER_SUBSCRIPTION, decodeCursor, isValidChannel, type Position } from '../hub/cursor.js';
import type { ResetNotice, StartAt } from '../hub/hub.js';
import { Connection } from './connection.js';
import { RollingSweep } from './rolling-sweep.js';
import { parsePresenceFlag, parseSince, parseSubscribeRequest } from './subscribe-request.js';
import type { Transport, TransportContext } from './transport.js';

type Frame = Record<string, unknown>;

/** Frames a client may send while its auth/refresh token is being verified; they wait, in order. */
const MAX_FRAMES_WHILE_VERIFYING = 64;

class WebSocketConnection extends Connection {
  readonly #ws: WebSocket;
  /** The upgraded socket under `ws`: its 'drain' paces replay. */
  readonly #socket: Duplex;
  /** Cleared by each ping sweep, set by any pong or frame: still clear at the next sweep means dead. */
  isAlive = true;
  /** Frames that arrived while an auth/refresh token was being verified; undefined when none is. */
  #waiting: Frame[] | undefined;
  /** Client publishes allowed per second (created on the first client publish). */
  #publishBucket: TokenBucket | undefined;

  constructor(ctx: TransportContext, ws: WebSocket, socket: Duplex, access: Access) {
    super(ctx, 'websocket', WS_MESSAGE, access);
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

  /**
   * `frame` is a whole frame (src/frames/websocket.ts), written straight to the socket: ws's sender
   * writes its own frames (pings, close) synchronously to the same socket without deflate, so the
   * order holds, and `bufferedAmount` counts both.
   */
  protected send(frame: Buffer): void {
    if (this.#ws.readyState === this.#ws.OPEN) this.#socket.write(frame);
  }

  protected resetFrame(notice: ResetNotice, cursor: string): Buffer {
    return wsReset(notice, cursor);
  }

  protected tokenExpiredFrame(graceMs: number): Buffer {
    return wsTokenExpired(graceMs);
  }

  protected presenceFrame(event: PresenceEvent): Buffer {
    return event.frame('websocket', wsPresence);
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
      frame = isBinary ? undefined : parseUntrustedJson(data.toString());
    } catch {
      frame = undefined;
    }
    if (typeof frame !== 'object' || frame === null || Array.isArray(frame) || typeof (frame as Frame).op !== 'string') {
      this.#error(new HeraldError('frame_invalid'), undefined, {});
      return;
    }
    const f = frame as Frame;
    if (this.#waiting !== undefined) {
      // A token is being verified: later frames (a subscribe sent right after auth) wait for it.
      if (this.#waiting.length < MAX_FRAMES_WHILE_VERIFYING) this.#waiting.push(f);
      else this.#error(new HeraldError('rate_limited', 'Too many frames while the token is verified.'), idOf(f), channelOf(f));
      return;
    }
    this.#dispatch(f);
  }

  #dispatch(f: Frame): void {
    const id = idOf(f);
    try {
      switch (f.op) {
        case 'subscribe':
          return this.#subscribeOne(f, id);
        case 'unsubscribe':
          return this.#unsubscribeOne(f, id);
        case 'ping':
          return this.#reply('pong', {}, id);
        case 'publish':
          return this.#publish(f, id);
        case 'presence':
          return this.#presence(f, id);
        case 'auth':
        case 'refresh':
          return this.#authenticate(f, id);
        default:
          throw new HeraldError('op_unknown');
      }
    } catch (err) {
      // A frame never takes the server down: an unexpected failure is logged and answered `internal`.
      this.#error(asHeraldError(err, this.ctx.logger), id, channelOf(f));
    }
  }

  #error(err: HeraldError, id: unknown, fields: Record<string, unknown>): void {
    this.#reply('error', { code: err.code, message: err.message, ...fields }, id);
  }

  #subscribeOne(frame: Frame, id: unknown): void {
    const channel = frame.channel;
    if (!isValidChannel(channel)) throw new HeraldError('channel_invalid');
    this.access.requireSubscribe(channel);
    const wantsPresence = parsePresenceFlag(frame.presence);
    if (wantsPresence) this.access.requireSeePresence(channel);
    let start: StartAt = parseSince(frame.since);
    let resumeCursor: Map<string, Position> | undefined;
    if (frame.cursor !== undefined) {
      if (typeof frame.cursor !== 'string') throw new HeraldError('cursor_invalid');
      resumeCursor = decodeCursor(frame.cursor);
      start = resumeCursor.get(channel) ?? start;
    }
    if (this.cursor.has(channel)) {
      this.#reply('subscribed', { channel }, id);
      this.enterPresence(channel, wantsPresence);
      return;
    }
    if (this.cursor.size >= MAX_CHANNELS_PER_SUBSCRIPTION) throw new HeraldError('too_many_channels');
    const starts = new Map([[channel, start]]);
    const subscribeNow = (): void => {
      if (this.isClosed) return;
      if (resumeCursor !== undefined) this.cursor.carry(resumeCursor);
      this.#reply('subscribed', { channel }, id);
      this.subscribe(starts);
      this.enterPresence(channel, wantsPresence);
    };
    const loading = this.ctx.hub.readyFor(starts);
    if (loading === undefined) return subscribeNow();
    // The channel's window is being loaded from the engine: later frames wait, so they keep their order.
    this.#waiting = [];
    loading
      .then(subscribeNow)
      .catch((err: unknown) => this.#error(asHeraldError(err, this.ctx.logger), id, { channel }))
      .finally(() => this.#resumeFrames());
  }

  /** `{"op":"presence","channel"}` → `{"op":"presence","channel","members":[{user,info,connections}]}`. */
  #presence(frame: Frame, id: unknown): void {
    const channel = frame.channel;
    if (!isValidChannel(channel)) throw new HeraldError('channel_invalid');
    this.access.requireSeePresence(channel);
    this.#reply('presence', { channel, members: this.ctx.presence.members(channel) }, id);
  }

  #unsubscribeOne(frame: Frame, id: unknown): void {
    const channel = frame.channel;
    if (!isValidChannel(channel)) throw new HeraldError('channel_invalid');
    this.unsubscribe(channel);
    this.#reply('unsubscribed', { channel }, id);
  }

  /**
   * A client publish: validated exactly as POST /v1/publish validates one message, allowed only where
   * the token's `publish` claim says, rate-limited per connection. Refused publishes are not queued.
   */
  #publish(frame: Frame, id: unknown): void {
    const { op: _op, id: _id, ...message } = frame;
    const input = toAppendInput(message);
    this.access.requirePublish(input.channel);
    if (!this.access.isBackend) {
      this.#publishBucket ??= new TokenBucket(this.ctx.config.clientPublishRate);
      if (!this.#publishBucket.take()) throw new HeraldError('rate_limited');
    }
    this.ctx.hub.publish([input]).then(
      ([result]) => {
        const { message: stored, isDuplicate } = result!;
        const fields = { channel: stored.channel, offset: stored.offset, epoch: stored.epoch, ...(isDuplicate ? { duplicate: true } : {}) };
        this.#reply('published', fields, id);
      },
      (err: unknown) => {
        this.ctx.logger.error({ err }, 'client publish failed');
        this.#error(new HeraldError('internal'), id, { channel: input.channel });
      },
    );
  }

  /**
   * `{"op":"auth","token"}` (usually the first frame) and `{"op":"refresh","token"}` (after a
   * token_expired notice, or before): verifies the token and makes it this connection's access.
   * Frames sent meanwhile wait and then run in order. A refreshed token must name the same user; a
   * subscription the new token no longer covers ends with a forbidden_channel error op.
   */
  #authenticate(frame: Frame, id: unknown): void {
    const token = frame.token;
    if (typeof token !== 'string' || token === '') throw new HeraldError('token_invalid', 'The frame needs a "token" string.');
    const reply = frame.op === 'auth' ? 'authenticated' : 'refreshed';
    this.#waiting = [];
    this.ctx.auth
      .fromToken(token)
      .then((access) => this.#applyAccess(access, reply, id))
      .catch((err: unknown) => this.#error(asHeraldError(err, this.ctx.logger), id, {}))
      .finally(() => this.#resumeFrames());
  }

  #applyAccess(access: Access, reply: string, id: unknown): void {
    if (this.isClosed) return;
    const previous = this.access.sub;
    if (previous !== undefined && access.sub !== previous) {
      this.#error(new HeraldError('token_invalid', 'A new token must be for the same user (sub) as the first.'), id, {});
      return;
    }
    const dropped = this.cursor.channels.filter((channel) => !access.canSubscribe(channel));
    for (const channel of dropped) this.unsubscribe(channel);
    this.setAccess(access);
    const exp = access.expiresAtMs === undefined ? {} : { exp: Math.floor(access.expiresAtMs / 1000) };
    this.#reply(reply, { sub: access.sub, ...exp }, id);
    for (const channel of dropped) {
      this.#error(new HeraldError('forbidden_channel', `The new token does not cover ${JSON.stringify(channel)}; unsubscribed.`), undefined, { channel });
    }
  }

  /** Runs the frames that waited for a token check, until one of them starts another. */
  #resumeFrames(): void {
    const waiting = this.#waiting ?? [];
    this.#waiting = undefined;
    while (waiting.length > 0 && !this.isClosed) {
      this.#dispatch(waiting.shift()!);
      if (this.#waiting !== undefined) {
        (this.#waiting as Frame[]).push(...waiting);
        return;
      }
    }
  }
}

function idOf(frame: Frame): string | number | undefined {
  return typeof frame.id === 'string' || typeof frame.id === 'number' ? frame.id : undefined;
}

function channelOf(frame: Frame): { channel?: string } {
  return typeof frame.channel === 'string' ? { channel: frame.channel } : {};
}

/**
 * GET /v1/ws — JSON text frames, any number of channels per socket. Optional `channel`/`cursor`/`since`
 * query parameters subscribe at once, as on the HTTP transports.
 */
export class WebSocketTransport implements Transport {
  readonly #ctx: TransportContext;
  readonly #server: WebSocketServer;
  readonly #connections = new Set<WebSocketConnection>();
  readonly #pings: RollingSweep<WebSocketConnection>;

  constructor(ctx: TransportContext) {
    this.#ctx = ctx;
    this.#pings = new RollingSweep(this.#connections, ctx.config.heartbeatMs);
    this.#server = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: ctx.config.maxBodyBytes,
      perMessageDeflate: false,
    });
  }

  /**
   * Takes over an upgrade request; rejects with a HeraldError (before anything is written) to refuse
   * it. A token in the header or `?token=` is verified first; channels in the URL must be allowed.
   */
  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): Promise<void> {
    const hasInitial = url.searchParams.has('channel') || url.searchParams.has('cursor');
    // Most sockets subscribe by frames: they get no map of starts at all.
    const starts = hasInitial ? parseSubscribeRequest(url.searchParams) : undefined;
    // Nothing listens for socket errors until ws takes the socket over (a client resetting while its
    // token is verified or its channels load, or while a refusal is written): one must not crash the
    // server. The listener stays on a refused socket, which is ending anyway.
    const onEarlyError = (): void => void socket.destroy();
    socket.on('error', onEarlyError);
    const access = await this.#ctx.auth.fromRequest(req, url);
    const wantsPresence = parsePresenceFlag(url.searchParams.get('presence'));
    for (const channel of starts?.keys() ?? []) {
      access.requireSubscribe(channel);
      if (wantsPresence) access.requireSeePresence(channel);
    }
    if (starts !== undefined) await this.#ctx.hub.readyFor(starts);
    socket.off('error', onEarlyError);
    if (socket.destroyed) return;
    this.#server.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, socket, access, starts, wantsPresence));
  }

  /**
   * Wires an upgraded socket. A method rather than code in the handleUpgrade callback: the listeners
   * made here live as long as the socket, and closures made inside `upgrade` would keep its whole
   * scope (the request, its URL, the starts) alive with them.
   */
  #accept(ws: WebSocket, socket: Duplex, access: Access, starts: ReadonlyMap<string, StartAt> | undefined, wantsPresence: boolean): void {
    const connection = new WebSocketConnection(this.#ctx, ws, socket, access);
    this.#connections.add(connection);
    const release = (): void => {
      connection.close();
      this.#connections.delete(connection);
    };
    ws.on('close', release);
    ws.on('error', release);
    if (starts === undefined || starts.size === 0) return;
    connection.subscribe(starts);
    for (const channel of starts.keys()) connection.enterPresence(channel, wantsPresence);
  }

  tick(nowMs: number): void {
    // Each connection is visited once per period: no pong or frame since its last ping means dead.
    this.#pings.tick(nowMs, (connection) => {
      if (connection.isAlive) connection.ping();
      else connection.close('heartbeat_timeout');
    });
  }

  closeAll(): void {
    for (const connection of this.#connections) connection.close('shutting_down');
  }
}
