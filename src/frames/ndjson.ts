// Newline-delimited JSON: one envelope per line; reset notices are lines with "reset":true.
import type { ResetNotice } from '../hub/hub.js';
import { defineFormat } from '../hub/message.js';
import { resetJson } from './reset.js';

export const NDJSON_MESSAGE = defineFormat((message, cursor) => Buffer.from(`${message.envelope(cursor)}\n`));

export function ndjsonReset(notice: ResetNotice, cursor: string): Buffer {
  return Buffer.from(`${resetJson(notice, cursor, '{"reset":true,')}\n`);
}

export const NDJSON_HEARTBEAT = Buffer.from('{"heartbeat":true}\n');
