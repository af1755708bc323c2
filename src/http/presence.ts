import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator } from '../auth/authenticator.js';
import { isValidChannel } from '../hub/cursor.js';
import type { Presence } from '../presence/presence.js';
import { HeraldError } from '../errors.js';
import type { HeaderFields } from '../cors.js';
import { sendJson } from './respond.js';

/**
 * GET /v1/presence?channel=c → `{"channel","members":[{"user","info","connections"}],"count"}`, one
 * entry per user; GET /v1/presence/count?channel=c → `{"channel","count"}`. For the backend (publish
 * key) and tokens whose presence claim covers the channel.
 */
export async function handlePresence(req: IncomingMessage, res: ServerResponse, url: URL, presence: Presence, auth: Authenticator, cors: HeaderFields): Promise<void> {
  const channel = url.searchParams.get('channel');
  if (channel === null || channel === '') throw new HeraldError('channel_missing');
  if (!isValidChannel(channel)) throw new HeraldError('channel_invalid');
  const access = await auth.fromRequest(req, url);
  access.requireSeePresence(channel);
  if (url.pathname === '/v1/presence/count') return sendJson(res, 200, { channel, count: presence.count(channel) }, cors);
  const members = presence.members(channel);
  sendJson(res, 200, { channel, members, count: members.length }, cors);
}
