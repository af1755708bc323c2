import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator } from '../auth/authenticator.js';
import type { RateLimiter } from '../auth/rate-limit.js';
import type { Hub } from '../hub/hub.js';
import type { AppendInput } from '../store/store.js';
import { authorizePublish } from './auth.js';
import { readJsonBody } from './body.js';
import { HeraldError } from '../errors.js';
import { toAppendInput } from '../hub/publish-input.js';
import type { HeaderFields } from '../cors.js';
import { sendJson } from './respond.js';


const MAX_BATCH = 1000;

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
