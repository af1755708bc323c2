import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator } from '../auth/authenticator.js';
import { decodeCursor, isValidChannel, type Position } from '../hub/cursor.js';
import type { Hub, StartAt } from '../hub/hub.js';
import type { SessionRegistry } from '../transports/sessions.js';
import { parseSince } from '../transports/subscribe-request.js';
import { readJsonBody } from './body.js';
import { HeraldError } from '../errors.js';
import type { HeaderFields } from '../cors.js';
import { sendJsonText } from './respond.js';

export const SESSION_PATH_PREFIX = '/v1/session/';

const FIELDS = new Set(['subscribe', 'unsubscribe', 'cursor', 'since', 'presence']);
/** More names than a session may hold channels is refused before anything is looked at. */
const MAX_NAMES = 256;

export interface SessionDeps {
  hub: Hub;
  auth: Authenticator;
  sessions: SessionRegistry;
  maxBodyBytes: number;
  cors: HeaderFields;
}

interface ChangeBody {
  subscribe: Map<string, StartAt>;
  unsubscribe: Set<string>;
  presence: boolean | undefined;
}

/**
 * POST /v1/session/{id} — changes the channels of a listen session at once: `{"subscribe"?, "unsubscribe"?,
 * "cursor"?, "since"?, "presence"?}`. Authorized like a listen request, and all or nothing: a refused
 * channel applies none of the request. The open stream of the session (or its held poll) changes at
 * once; a poll session with no poll held gets the change on its next poll. Answers
 * `{"session","channels","cursor"?}`, `cursor` naming only the channels this request added. A session
 * of another node (nodes sharing an engine) is changed there, through the engine's bus.
 */
export async function handleSessionChange(req: IncomingMessage, res: ServerResponse, url: URL, deps: SessionDeps): Promise<void> {
  const id = url.pathname.slice(SESSION_PATH_PREFIX.length);
  const access = await deps.auth.fromRequest(req, url);
  const body = parseChangeBody(await readJsonBody(req, deps.maxBodyBytes));
  // Checked once the session is found: another client's session is a 404, whatever it asks.
  const authorize = (): void => {
    for (const channel of body.subscribe.keys()) {
      access.requireSubscribe(channel);
      if (body.presence === true) access.requireSeePresence(channel);
    }
  };
  const request = { ...body, canSeePresence: (channel: string) => access.canSeePresence(channel) };
  const { channels, cursor } = await deps.sessions.change(id, access, request, authorize, deps.hub);
  const cursorField = cursor === undefined ? '' : `,"cursor":"${cursor}"`;
  sendJsonText(res, 200, `{"session":"${id}","channels":${JSON.stringify(channels)}${cursorField}}`, deps.cors);
}

function parseChangeBody(value: unknown): ChangeBody {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HeraldError('body_invalid', 'The body is a JSON object.');
  const body = value as Record<string, unknown>;
  for (const field of Object.keys(body)) {
    if (!FIELDS.has(field)) throw new HeraldError('body_invalid', `Unknown field ${JSON.stringify(field)}; a session change has subscribe, unsubscribe, cursor, since, presence.`);
  }
  const subscribed = channelList(body.subscribe, 'subscribe');
  const unsubscribe = new Set(channelList(body.unsubscribe, 'unsubscribe'));
  const both = subscribed.find((c) => unsubscribe.has(c));
  if (both !== undefined) throw new HeraldError('body_invalid', `${JSON.stringify(both)} is both subscribed and unsubscribed.`);
  if (body.cursor !== undefined && typeof body.cursor !== 'string') throw new HeraldError('body_invalid', 'cursor is a string.');
  if (body.presence !== undefined && typeof body.presence !== 'boolean') throw new HeraldError('body_invalid', 'presence is true or false.');
  const since = parseSince(body.since);
  // As for a listen request: a channel the cursor names resumes after its position, others start at `since`.
  const positions: Map<string, Position> = typeof body.cursor === 'string' && body.cursor !== '' ? decodeCursor(body.cursor) : new Map();
  const subscribe = new Map<string, StartAt>();
  for (const channel of subscribed) subscribe.set(channel, positions.get(channel) ?? since);
  return { subscribe, unsubscribe, presence: body.presence as boolean | undefined };
}

function channelList(value: unknown, field: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((c) => typeof c !== 'string')) throw new HeraldError('body_invalid', `${field} is an array of channel names.`);
  if (value.length > MAX_NAMES) throw new HeraldError('too_many_channels');
  for (const channel of value as string[]) {
    if (!isValidChannel(channel)) throw new HeraldError('channel_invalid', `Invalid channel name: ${JSON.stringify((channel as string).slice(0, 220))}.`);
  }
  return [...new Set(value as string[])];
}
