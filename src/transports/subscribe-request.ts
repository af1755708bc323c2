import { HeraldError } from '../errors.js';
import { CHANNEL_PATTERN, MAX_CHANNELS_PER_SUBSCRIPTION, decodeCursor, type Position } from '../hub/cursor.js';
import type { StartAt } from '../hub/hub.js';

export function parseSince(since: unknown): 'head' | 'beginning' {
  if (since === undefined || since === null || since === 'head') return 'head';
  if (since === 'beginning') return 'beginning';
  throw new HeraldError('since_invalid');
}

/** `presence=1|true` (or `presence: true` on WebSocket): the subscriber wants join/leave events. */
export function parsePresenceFlag(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === '' || value === '0' || value === 'false') return false;
  if (value === true || value === '1' || value === 'true') return true;
  throw new HeraldError('query_invalid', 'presence is true or false.');
}

/**
 * The channels of an HTTP subscription and where each starts. Channels come from `channel` (repeated or
 * comma-separated), else from the cursor. A channel the cursor names resumes after its position;
 * `resumeCursor` (SSE's Last-Event-ID, newer than the URL's cursor) wins over `cursor`.
 */
export function parseSubscribeRequest(params: URLSearchParams, resumeCursor?: string): Map<string, StartAt> {
  return parseListenRequest(params, resumeCursor, false).starts;
}

export interface ListenRequest {
  starts: Map<string, StartAt>;
  /** The channels the request's cursors name (a session's pending changes are settled against them). */
  cursorNames: Set<string>;
}

/**
 * `parseSubscribeRequest`, also saying which channels the cursors name. `isEmptyAllowed`: a request with
 * no channel at all is valid (a session request, whose channels may all come by POST).
 */
export function parseListenRequest(params: URLSearchParams, resumeCursor: string | undefined, isEmptyAllowed: boolean): ListenRequest {
  const positions = new Map<string, Position>();
  const cursor = params.get('cursor');
  if (cursor !== null && cursor !== '') for (const [c, p] of decodeCursor(cursor)) positions.set(c, p);
  if (resumeCursor !== undefined && resumeCursor !== '') {
    for (const [c, p] of decodeCursor(resumeCursor)) positions.set(c, p);
  }
  const since = parseSince(params.get('since'));
  let channels = params.getAll('channel').flatMap((value) => value.split(','));
  if (channels.length === 0) channels = [...positions.keys()];
  if (channels.length === 0 && !isEmptyAllowed) throw new HeraldError('channel_missing');
  const starts = new Map<string, StartAt>();
  for (const channel of channels) {
    if (!CHANNEL_PATTERN.test(channel)) throw new HeraldError('channel_invalid', `Invalid channel name: ${JSON.stringify(channel.slice(0, 220))}.`);
    starts.set(channel, positions.get(channel) ?? since);
  }
  if (starts.size > MAX_CHANNELS_PER_SUBSCRIPTION) throw new HeraldError('too_many_channels');
  return { starts, cursorNames: new Set(positions.keys()) };
}

/** The `session` parameter of a listen request (`new` or an id); undefined without one (or empty). */
export function sessionParam(params: URLSearchParams): string | undefined {
  const value = params.get('session');
  return value === null || value === '' ? undefined : value;
}
