import type { IncomingMessage } from 'node:http';
import { scriptSafeJson, validateCallback } from '../frames/script.js';
import { ndjsonPresenceJson } from '../frames/ndjson.js';
import { resetJson } from '../frames/reset.js';
import { sessionChangeJson, sessionJson } from '../frames/session.js';
import type { ResetNotice } from '../hub/hub.js';
import { defineFormat, type FrameFormat } from '../hub/message.js';
import { StreamingTransport, type StreamWire } from './streaming.js';

// Old browsers render a streamed document only after its first kilobytes, so the page opens with padding.
const OPENING = Buffer.from(
  `<!DOCTYPE html><html><head><meta charset="utf-8"><title>herald</title></head><body>\n<!--${' '.repeat(2048)}-->\n`,
);
const HEARTBEAT = Buffer.from('<!-- -->\n');
/** Formats are cached per callback name (pages share theirs), up to a bound, so frames stay shared. */
const MAX_CACHED_CALLBACKS = 32;

/**
 * GET /v1/iframe?channel=…&callback=fn — the hidden-iframe stream: a never-ending HTML page whose
 * script tags call `parent.fn(envelope)` (reset notices carry "reset":true).
 */
export class IframeTransport extends StreamingTransport {
  protected readonly name = 'iframe' as const;
  readonly #formats = new Map<string, FrameFormat>();

  protected wire(_req: IncomingMessage, url: URL): StreamWire {
    const callback = validateCallback(url.searchParams.get('callback'));
    const call = (json: string): string => `<script>parent.${callback}(${scriptSafeJson(json)});</script>\n`;
    return {
      contentType: 'text/html; charset=utf-8',
      opening: OPENING,
      format: this.#format(callback, call),
      resetFrame: (notice: ResetNotice, cursor: string) => Buffer.from(call(resetJson(notice, cursor, '{"reset":true,'))),
      tokenExpiredFrame: (graceMs: number) => Buffer.from(call(`{"notice":"token_expired","graceMs":${graceMs}}`)),
      presenceFrame: (event) => event.frame(`iframe:${callback}`, (e) => Buffer.from(call(ndjsonPresenceJson(e)))),
      sessionFrame: (id) => Buffer.from(call(sessionJson(id))),
      sessionChangeFrame: (subscribed, unsubscribed, cursor) => Buffer.from(call(sessionChangeJson(subscribed, unsubscribed, cursor))),
      heartbeat: HEARTBEAT,
    };
  }

  #format(callback: string, call: (json: string) => string): FrameFormat {
    const cached = this.#formats.get(callback);
    if (cached !== undefined) return cached;
    const isCached = this.#formats.size < MAX_CACHED_CALLBACKS;
    const format = defineFormat((message, cursor) => Buffer.from(call(message.envelope(cursor))), isCached);
    if (isCached) this.#formats.set(callback, format);
    return format;
  }
}
