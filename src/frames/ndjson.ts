// Newline-delimited JSON: one envelope per line; reset notices are lines with "reset":true.
import type { ResetNotice } from '../hub/hub.js';
import { defineFormat } from '../hub/message.js';
import type { PresenceEvent } from '../presence/fan-out.js';
import { resetJson } from './reset.js';
import { sessionChangeJson, sessionJson } from './session.js';

export const NDJSON_MESSAGE = defineFormat((message, cursor) => Buffer.from(`${message.envelope(cursor)}\n`));

export function ndjsonReset(notice: ResetNotice, cursor: string): Buffer {
  return Buffer.from(`${resetJson(notice, cursor, '{"reset":true,')}\n`);
}

export const NDJSON_HEARTBEAT = Buffer.from('{"heartbeat":true}\n');

/** The token expired: the client has `graceMs` to reconnect with a fresh one. */
export function ndjsonTokenExpired(graceMs: number): Buffer {
  return Buffer.from(`{"notice":"token_expired","graceMs":${graceMs}}\n`);
}

/** A presence join/leave line: `{"presence":"join"|"leave","channel","user","info"?}`. */
export function ndjsonPresenceJson(event: PresenceEvent): string {
  return `{"presence":"${event.kind}",${event.jsonTail}`;
}

export function ndjsonPresence(event: PresenceEvent): Buffer {
  return Buffer.from(`${ndjsonPresenceJson(event)}\n`);
}

/** The session the stream belongs to: its first line. */
export function ndjsonSession(id: string): Buffer {
  return Buffer.from(`${sessionJson(id)}\n`);
}

/** Where a POST /v1/session/{id} changed the stream's channels. */
export function ndjsonSessionChange(subscribed: readonly string[], unsubscribed: readonly string[], cursor: string): Buffer {
  return Buffer.from(`${sessionChangeJson(subscribed, unsubscribed, cursor)}\n`);
}
