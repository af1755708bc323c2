import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Access } from '../auth/access.js';
import type { PresenceEvent } from '../presence/fan-out.js';
import { corsHeaders, type HeaderFields } from '../cors.js';
import type { ErrorCode } from '../errors.js';
import type { ResetNotice } from '../hub/hub.js';
import type { FrameFormat } from '../hub/message.js';
import type { TransportName } from '../metrics.js';
import { Connection } from './connection.js';
import { RollingSweep } from './rolling-sweep.js';
import type { SessionStream, StreamChange } from './sessions.js';
import { parseListenRequest, parsePresenceFlag, sessionParam } from './subscribe-request.js';
import type { HttpTransport, TransportContext } from './transport.js';

/** How one streaming response is framed: SSE, NDJSON or the iframe's script tags. */
export interface StreamWire {
  contentType: string;
  opening: Buffer;
  format: FrameFormat;
  resetFrame(notice: ResetNotice, cursor: string): Buffer;
  /** Tells the client its token expired and it has `graceMs` to reconnect with a fresh one. */
  tokenExpiredFrame(graceMs: number): Buffer;
  /** A presence join/leave (built once per event and format, through `event.frame`). */
  presenceFrame(event: PresenceEvent): Buffer;
  /** Sent once the subscription's positions are fixed, carrying the cursor that resumes from them. */
  subscribedFrame?: (cursor: string) => Buffer;
  /** Announces the session (`session=`) the stream belongs to, before anything else it says. */
  sessionFrame(id: string): Buffer;
  /** Marks where a POST /v1/session/{id} changed the channels; `cursor` covers the whole stream from here. */
  sessionChangeFrame(subscribed: readonly string[], unsubscribed: readonly string[], cursor: string): Buffer;
  heartbeat: Buffer;
}

class ResponseConnection extends Connection implements SessionStream {
  readonly #res: ServerResponse;
  readonly #wire: StreamWire;

  constructor(ctx: TransportContext, transport: TransportName, wire: StreamWire, res: ServerResponse, access: Access) {
    super(ctx, transport, wire.format, access);
    this.#res = res;
    this.#wire = wire;
  }

  protected get bufferedBytes(): number {
    return this.#res.writableLength;
  }

  protected get needsDrain(): boolean {
    return this.#res.writableNeedDrain;
  }

  protected onDrain(resume: () => void): void {
    this.#res.once('drain', resume);
  }

  protected send(bytes: Buffer): void {
    this.#res.write(bytes);
  }

  protected resetFrame(notice: ResetNotice, cursor: string): Buffer {
    return this.#wire.resetFrame(notice, cursor);
  }

  protected tokenExpiredFrame(graceMs: number): Buffer {
    return this.#wire.tokenExpiredFrame(graceMs);
  }

  protected presenceFrame(event: PresenceEvent): Buffer {
    return this.#wire.presenceFrame(event);
  }

  heartbeat(): void {
    this.write(this.#wire.heartbeat);
  }

  get channels(): readonly string[] {
    return this.cursor.channels;
  }

  applySessionChange({ subscribe, unsubscribe, presence }: StreamChange): void {
    for (const channel of unsubscribe) this.unsubscribe(channel);
    this.subscribeResolved(subscribe, (cursor) => this.#wire.sessionChangeFrame([...subscribe.keys()], unsubscribe, cursor));
    for (const channel of subscribe.keys()) this.enterPresence(channel, presence.has(channel));
  }

  protected end(reason: ErrorCode | undefined): void {
    // A slow consumer's backlog would take as long to flush as it took to build: drop it.
    if (reason === 'slow_consumer') this.#res.destroy();
    else this.#res.end();
  }
}

/**
 * A response held open and written to as messages arrive (SSE, NDJSON stream, iframe). Each subclass
 * only describes its wire; subscription, replay, heartbeats and release are shared here.
 */
export abstract class StreamingTransport implements HttpTransport {
  protected abstract readonly name: TransportName;
  protected readonly ctx: TransportContext;
  readonly #connections = new Set<ResponseConnection>();
  readonly #heartbeats: RollingSweep<ResponseConnection>;
  /** The response's header fields by content type (CORS included), built once: see #headersFor. */
  readonly #headers = new Map<string, HeaderFields>();

  constructor(ctx: TransportContext) {
    this.ctx = ctx;
    this.#heartbeats = new RollingSweep(this.#connections, ctx.config.heartbeatMs);
  }

  /**
   * One object per content type, handed to writeHead as it is: with every field there and none set
   * before, Node keeps no header store for the life of the stream.
   */
  #headersFor(contentType: string): HeaderFields {
    let headers = this.#headers.get(contentType);
    if (headers === undefined) {
      headers = {
        'Content-Type': contentType,
        'Cache-Control': 'no-cache',
        'X-Accel-Buffering': 'no',
        'X-Content-Type-Options': 'nosniff',
        ...corsHeaders(this.ctx.config),
      };
      this.#headers.set(contentType, headers);
    }
    return headers;
  }

  /** Checks the request and says how to frame the response; throws a HeraldError to refuse it. */
  protected abstract wire(req: IncomingMessage, url: URL): StreamWire;

  /** A cursor the client sends besides the URL's (SSE's Last-Event-ID). */
  protected resumeCursor(_req: IncomingMessage): string | undefined {
    return undefined;
  }

  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const wire = this.wire(req, url);
    const sessionId = sessionParam(url.searchParams);
    const asked = parseListenRequest(url.searchParams, this.resumeCursor(req), sessionId !== undefined);
    const wantsPresence = parsePresenceFlag(url.searchParams.get('presence'));
    const access = await this.ctx.auth.fromRequest(req, url);
    // A session's changes made while no stream held it (a POST between two streams) apply here.
    // The session's home may be another node: then it is asked there (session-relay.ts).
    const previous = sessionId === undefined ? undefined : await this.ctx.sessions.find(sessionId, access);
    const starts = previous?.withPending(asked.starts, asked.cursorNames) ?? asked.starts;
    for (const channel of starts.keys()) {
      access.requireSubscribe(channel);
      if (wantsPresence && asked.starts.has(channel)) access.requireSeePresence(channel);
    }
    await this.ctx.hub.readyFor(starts);
    if (res.destroyed) return; // the client left while its token was verified or its channels loaded
    res.writeHead(200, this.#headersFor(wire.contentType));
    res.flushHeaders();
    if (wire.opening.length > 0) res.write(wire.opening);
    const session = sessionId === undefined ? undefined : this.ctx.sessions.take(sessionId, access, previous);
    if (session !== undefined) res.write(wire.sessionFrame(session.id));
    const connection = new ResponseConnection(this.ctx, this.name, wire, res, access);
    this.#connections.add(connection);
    res.on('close', () => {
      connection.close();
      this.#connections.delete(connection);
      session?.detachStream(connection);
    });
    connection.subscribe(starts, wire.subscribedFrame);
    for (const channel of starts.keys()) {
      connection.enterPresence(channel, wantsPresence && (asked.starts.has(channel) || access.canSeePresence(channel)));
    }
    session?.attachStream(connection, wantsPresence);
  }

  tick(nowMs: number): void {
    this.#heartbeats.tick(nowMs, (connection) => connection.heartbeat());
  }

  closeAll(): void {
    for (const connection of this.#connections) connection.close('shutting_down');
  }
}
