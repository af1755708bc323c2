// WebSocket text frames, JSON objects with an "op". Each is built here as the whole RFC 6455 frame
// (header and payload in one buffer): a server's frames are unmasked, so one message's frame is the
// same bytes for every socket, built once and written as is.
import type { ResetNotice } from '../hub/hub.js';
import { defineFormat } from '../hub/message.js';
import type { PresenceEvent } from '../presence/fan-out.js';
import { resetJson } from './reset.js';

/** One final, unmasked text frame holding `text` (RFC 6455 §5.2). */
export function textFrame(text: string): Buffer {
  const length = Buffer.byteLength(text);
  const headerLength = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerLength + length);
  frame[0] = 0x81; // FIN, opcode 1 (text)
  if (length < 126) frame[1] = length;
  else if (length < 65_536) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  frame.write(text, headerLength);
  return frame;
}

export const WS_MESSAGE = defineFormat((message, cursor) => textFrame(`{"op":"message",${message.envelope(cursor).slice(1)}`));

export function wsReset(notice: ResetNotice, cursor: string): Buffer {
  return textFrame(resetJson(notice, cursor, '{"op":"reset",'));
}

/** A control reply (subscribed, pong, error…), echoing the client's request id when it gave one. */
export function wsControl(op: string, fields: Record<string, unknown>, id: unknown): Buffer {
  return textFrame(JSON.stringify(id === undefined ? { op, ...fields } : { op, ...fields, id }));
}

/** The token expired: the client has `graceMs` to send {"op":"refresh","token"}. */
export function wsTokenExpired(graceMs: number): Buffer {
  return textFrame(`{"op":"token_expired","graceMs":${graceMs}}`);
}

/** A presence join/leave: `{"op":"join"|"leave","channel","user","info"?}`. */
export function wsPresence(event: PresenceEvent): Buffer {
  return textFrame(`{"op":"${event.kind}",${event.jsonTail}`);
}
