// [spec] HTML Living Standard §9.2 "Server-sent events": a block of `field: value` lines ended by a
// blank line. Nothing user-supplied can add a field: the id is a cursor (base64url and "."), event
// names are validated at publish, and data is JSON on a single line (JSON escapes every line break).
import type { ResetNotice } from '../hub/hub.js';
import { defineFormat } from '../hub/message.js';
import type { PresenceEvent } from '../presence/fan-out.js';
import { resetJson } from './reset.js';
import { sessionChangeJson, sessionJson } from './session.js';

export const SSE_MESSAGE = defineFormat((message, cursor) =>
  Buffer.from(`id: ${cursor}\nevent: ${message.event ?? 'message'}\ndata: ${message.envelope(cursor)}\n\n`),
);

export function sseReset(notice: ResetNotice, cursor: string): Buffer {
  return Buffer.from(`id: ${cursor}\nevent: reset\ndata: ${resetJson(notice, cursor, '{')}\n\n`);
}

/**
 * The opening block: a comment so proxies and the browser see bytes at once, the reconnection delay,
 * and the subscription's starting cursor as `id:`. [spec] "Dispatch the event", step 1: a block with
 * an id and no data sets the last event ID and dispatches nothing, so a browser dropped before its
 * first message resumes from where the subscription started, not from a later head.
 */
export function sseOpen(retryMs: number, cursor: string): Buffer {
  return Buffer.from(`:ok\nretry: ${retryMs}\nid: ${cursor}\n\n`);
}

export const SSE_KEEPALIVE = Buffer.from(':\n\n');

/** The token expired: the client has `graceMs` to reconnect with a fresh one (no id:, so the cursor stays). */
export function sseTokenExpired(graceMs: number): Buffer {
  return Buffer.from(`event: token_expired\ndata: {"code":"token_expired","graceMs":${graceMs}}\n\n`);
}

/**
 * A presence join/leave: `event: join|leave`, data `{"presence":"join"|"leave","channel","user","info"?}`
 * (which tells it from a message whose event is named "join"), and no id: presence is not in the log.
 */
export function ssePresence(event: PresenceEvent): Buffer {
  return Buffer.from(`event: ${event.kind}\ndata: {"presence":"${event.kind}",${event.jsonTail}\n\n`);
}

/** The session the stream belongs to: `event: session`, no id (the last event ID stays the cursor). */
export function sseSession(id: string): Buffer {
  return Buffer.from(`event: session\ndata: ${sessionJson(id)}\n\n`);
}

/**
 * Where a POST /v1/session/{id} changed the stream's channels: `event: subscribed`, and `id:` = the
 * stream's cursor from here on, so EventSource's Last-Event-ID names the new channels too.
 */
export function sseSessionChange(subscribed: readonly string[], unsubscribed: readonly string[], cursor: string): Buffer {
  return Buffer.from(`event: subscribed\ndata: ${sessionChangeJson(subscribed, unsubscribed, cursor)}\nid: ${cursor}\n\n`);
}
