// WebSocket text frames, JSON objects with an "op". Payloads are Buffers sent with {binary:false} so
// ws frames the same bytes for every socket instead of re-encoding a string each time.
import type { ResetNotice } from '../hub/hub.js';
import { defineFormat } from '../hub/message.js';
import type { PresenceEvent } from '../presence/fan-out.js';
import { resetJson } from './reset.js';

export const WS_MESSAGE = defineFormat((message, cursor) =>
  Buffer.from(`{"op":"message",${message.envelope(cursor).slice(1)}`),
);

export function wsReset(notice: ResetNotice, cursor: string): Buffer {
  return Buffer.from(resetJson(notice, cursor, '{"op":"reset",'));
}

/** A control reply (subscribed, pong, error…), echoing the client's request id when it gave one. */
export function wsControl(op: string, fields: Record<string, unknown>, id: unknown): Buffer {
  return Buffer.from(JSON.stringify(id === undefined ? { op, ...fields } : { op, ...fields, id }));
}

/** The token expired: the client has `graceMs` to send {"op":"refresh","token"}. */
export function wsTokenExpired(graceMs: number): Buffer {
  return Buffer.from(`{"op":"token_expired","graceMs":${graceMs}}`);
}

/** A presence join/leave: `{"op":"join"|"leave","channel","user","info"?}`. */
export function wsPresence(event: PresenceEvent): Buffer {
  return Buffer.from(`{"op":"${event.kind}",${event.jsonTail}`);
}
