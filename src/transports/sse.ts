import type { IncomingMessage } from 'node:http';
import { SSE_KEEPALIVE, SSE_MESSAGE, sseOpen, ssePresence, sseReset, sseSession, sseSessionChange, sseTokenExpired } from '../frames/sse.js';
import { HeraldError } from '../errors.js';
import { StreamingTransport, type StreamWire } from './streaming.js';
import type { TransportContext } from './transport.js';

/** GET /v1/sse — Server-Sent Events for EventSource. */
export class SseTransport extends StreamingTransport {
  protected readonly name = 'sse' as const;
  /** The same for every stream, so built once here: a stream keeps nothing of its own for its framing. */
  readonly #wire: StreamWire;

  constructor(ctx: TransportContext) {
    super(ctx);
    const retryMs = ctx.config.retryMs;
    this.#wire = {
      contentType: 'text/event-stream; charset=utf-8',
      opening: Buffer.alloc(0),
      format: SSE_MESSAGE,
      resetFrame: sseReset,
      tokenExpiredFrame: sseTokenExpired,
      presenceFrame: (event) => event.frame('sse', ssePresence),
      // Needs no `this`: the connection calls it on its own.
      subscribedFrame(cursor) {
        return sseOpen(retryMs, cursor);
      },
      sessionFrame: sseSession,
      sessionChangeFrame: sseSessionChange,
      heartbeat: SSE_KEEPALIVE,
    };
  }

  protected wire(req: IncomingMessage): StreamWire {
    if (!acceptsEventStream(req.headers.accept)) throw new HeraldError('not_acceptable');
    return this.#wire;
  }

  // [spec] EventSource reconnects to the same URL with the last `id:` it saw as Last-Event-ID.
  protected override resumeCursor(req: IncomingMessage): string | undefined {
    const header = req.headers['last-event-id'];
    return typeof header === 'string' ? header : undefined;
  }
}

/** RFC 9110 §12.5.1: true unless the Accept header leaves out text/event-stream (or gives it q=0). */
export function acceptsEventStream(accept: string | undefined): boolean {
  if (accept === undefined || accept.trim() === '') return true;
  return accept.split(',').some((range) => {
    const [type, ...params] = range.split(';').map((part) => part.trim().toLowerCase());
    const isZero = params.some((p) => /^q=0(\.0*)?$/.test(p));
    return !isZero && (type === 'text/event-stream' || type === 'text/*' || type === '*/*');
  });
}
