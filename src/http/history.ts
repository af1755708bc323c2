import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator } from '../auth/authenticator.js';
import { cursorSegment, isValidChannel } from '../hub/cursor.js';
import type { Hub } from '../hub/hub.js';
import type { Message } from '../hub/message.js';
import { HeraldError } from '../errors.js';
import type { HeaderFields } from '../cors.js';
import { sendJsonText } from './respond.js';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

/**
 * GET /v1/history?channel=c[&since=N][&before=N][&limit=N][&reverse=true] — a channel's retained
 * messages, as envelopes, from memory. Forwards (default): oldest first, offsets after `since`.
 * `reverse=true`: newest first, offsets before `before` (default: from the head). Both bounds apply in
 * either direction. The answer's `cursor` resumes right after the newest offset the answer covers, so
 * "render the last N, then subscribe from the cursor" misses nothing and repeats nothing.
 * Allowed to the backend (publish key), a token whose `channels` claim covers the channel, or anyone
 * on an anonymous channel.
 */
export async function handleHistory(req: IncomingMessage, res: ServerResponse, url: URL, hub: Hub, auth: Authenticator, cors: HeaderFields): Promise<void> {
  const params = url.searchParams;
  const channel = params.get('channel');
  if (channel === null || channel === '') throw new HeraldError('channel_missing');
  if (!isValidChannel(channel)) throw new HeraldError('channel_invalid');
  const limit = parseLimit(params.get('limit'));
  const isReverse = parseBoolean(params.get('reverse'), 'reverse');
  const since = parseOffset(params.get('since'), 'since') ?? 0;
  const before = parseOffset(params.get('before'), 'before');
  const access = await auth.fromRequest(req, url);
  access.requireSubscribe(channel);

  await hub.ready([channel]);
  // Everything below is synchronous: the messages, the head and the cursor are one consistent view.
  const log = hub.window(channel);
  const upper = Math.max(0, Math.min(before === undefined ? Infinity : before - 1, log.headOffset));
  let messages: Message[];
  let coveredUpTo: number;
  if (isReverse) {
    messages = log.before(upper + 1, limit).filter((m) => m.offset > since);
    coveredUpTo = upper;
  } else {
    messages = log.after(since, limit).filter((m) => m.offset <= upper);
    // A full page may stop short of `upper`: the cursor then resumes after its last message.
    coveredUpTo = messages.length === limit ? messages.at(-1)!.offset : upper;
  }
  // Envelopes are spliced in as the JSON they already are (each with its own one-channel cursor).
  const cursor = cursorSegment(channel, log.epoch, coveredUpTo);
  const envelopes = messages.map((m) => m.envelope(m.cursorSegment)).join(',');
  sendJsonText(
    res,
    200,
    `{"messages":[${envelopes}],"offset":${log.headOffset},"oldest":${log.oldestOffset},"epoch":"${log.epoch}","cursor":"${cursor}"}`,
    cors,
  );
}

function parseLimit(text: string | null): number {
  if (text === null) return DEFAULT_LIMIT;
  const limit = Number(text);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new HeraldError('limit_invalid');
  return limit;
}

function parseOffset(text: string | null, name: string): number | undefined {
  if (text === null || text === '') return undefined;
  if (!/^(0|[1-9][0-9]{0,15})$/.test(text)) throw new HeraldError('query_invalid', `${name} is an offset: an integer from 0.`);
  return Number(text);
}

function parseBoolean(text: string | null, name: string): boolean {
  if (text === null || text === '' || text === 'false' || text === '0') return false;
  if (text === 'true' || text === '1') return true;
  throw new HeraldError('query_invalid', `${name} is true or false.`);
}
