import { HeraldError } from '../errors.js';
import type { AppendInput } from '../store/store.js';
import { isValidChannel } from './cursor.js';

const EVENT_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
const MESSAGE_FIELDS = new Set(['channel', 'data', 'event', 'idempotencyKey']);

/** Validates one message of a publish; `where` prefixes error details ("messages[3]: …"). */
export function toAppendInput(value: unknown, where = ''): AppendInput {
  const fail = (code: ConstructorParameters<typeof HeraldError>[0], detail?: string): never => {
    throw new HeraldError(code, `${where}${detail ?? new HeraldError(code).message}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('body_invalid', 'A message is a JSON object.');
  const m = value as Record<string, unknown>;
  for (const field of Object.keys(m)) {
    if (!MESSAGE_FIELDS.has(field)) fail('body_invalid', `Unknown field ${JSON.stringify(field)}; a message has channel, data, event, idempotencyKey.`);
  }
  if (m.channel === undefined) fail('channel_missing');
  if (!isValidChannel(m.channel)) fail('channel_invalid');
  if (!('data' in m) || m.data === undefined) fail('data_missing');
  if (m.event !== undefined && (typeof m.event !== 'string' || !EVENT_PATTERN.test(m.event))) fail('event_invalid');
  const key = m.idempotencyKey;
  if (key !== undefined && (typeof key !== 'string' || key.length === 0 || key.length > 200)) fail('idempotency_key_invalid');
  return {
    channel: m.channel as string,
    event: m.event as string | undefined,
    dataJson: JSON.stringify(m.data),
    idempotencyKey: key as string | undefined,
  };
}
