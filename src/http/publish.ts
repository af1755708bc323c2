import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator } from '../auth/authenticator.js';
import type { RateLimiter } from '../auth/rate-limit.js';
import { isValidChannel } from '../hub/cursor.js';
import type { Hub } from '../hub/hub.js';
import type { AppendInput } from '../store/store.js';
import { authorizePublish } from './auth.js';
import { readJsonBody } from './body.js';
import { HeraldError } from './errors.js';
import type { HeaderFields } from './cors.js';
import { sendJson } from './respond.js';

const EVENT_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAX_BATCH = 1000;
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

function toBatch(body: unknown): AppendInput[] {
  if (typeof body === 'object' && body !== null && !Array.isArray(body) && 'messages' in body) {
    const { messages, ...rest } = body as Record<string, unknown>;
    if (Object.keys(rest).length > 0) throw new HeraldError('body_invalid', 'A batch body has only "messages".');
    if (!Array.isArray(messages) || messages.length === 0 || messages.length > MAX_BATCH) throw new HeraldError('batch_invalid');
    return messages.map((m, i) => toAppendInput(m, `messages[${i}]: `));
  }
  return [toAppendInput(body)];
}

export interface PublishDeps {
  hub: Hub;
  auth: Authenticator;
  publishKey: string | undefined;
  maxBodyBytes: number;
  /** Client publishes (with a token) per second, by user. */
  clientLimiter: RateLimiter;
  cors: HeaderFields;
}

/**
 * POST /v1/publish — where a message enters Herald. From the backend (publish key, or loopback without
 * one), or from a client whose token's `publish` claim covers every channel of the body: the same
 * validation, offsets, idempotency and size limit either way; clients are also rate-limited.
 */
export async function handlePublish(req: IncomingMessage, res: ServerResponse, deps: PublishDeps): Promise<void> {
  const access = await authorizePublish(req, deps.auth, deps.publishKey);
  const batch = toBatch(await readJsonBody(req, deps.maxBodyBytes));
  if (!access.isBackend) {
    batch.forEach((input, i) => {
      try {
        access.requirePublish(input.channel);
      } catch (err) {
        throw batch.length === 1 ? err : new HeraldError('forbidden_publish', `messages[${i}]: ${(err as Error).message}`);
      }
    });
    if (!deps.clientLimiter.take(access.sub!, batch.length)) throw new HeraldError('rate_limited');
  }
  const results = await deps.hub.publish(batch);
  sendJson(res, 200, {
    results: results.map(({ message, isDuplicate }) => ({
      channel: message.channel,
      offset: message.offset,
      epoch: message.epoch,
      ...(isDuplicate ? { duplicate: true } : {}),
    })),
  }, deps.cors);
}
