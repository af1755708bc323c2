// THE error table. Every error a client can see is here, once: its HTTP status, its WebSocket close code
// when it ends a socket, and a human message. Codes are stable and never reused; docs/errors.md lists the
// same table and a test checks the two against each other.

export interface ErrorSpec {
  status: number;
  message: string;
  /** Close code when this error ends a WebSocket (RFC 6455 §7.4.2: 4000–4999 are ours). */
  wsCloseCode?: number;
}

export const ERRORS = {
  json_invalid: { status: 400, message: 'The body is not valid JSON.' },
  body_invalid: { status: 400, message: 'The body does not have the expected shape.' },
  channel_missing: { status: 400, message: 'No channel was given.' },
  channel_invalid: { status: 400, message: 'Channel names match ^[A-Za-z0-9_.:@/-]{1,200}$.' },
  too_many_channels: { status: 400, message: 'Too many channels in one subscription.' },
  data_missing: { status: 400, message: 'A message needs a "data" field (any JSON value).' },
  event_invalid: { status: 400, message: 'Event names match ^[A-Za-z0-9_.:-]{1,64}$.' },
  idempotency_key_invalid: { status: 400, message: 'An idempotencyKey is a string of 1 to 200 characters.' },
  batch_invalid: { status: 400, message: 'A batch holds 1 to 1000 messages.' },
  cursor_invalid: { status: 400, message: 'The cursor is not one this server issued.' },
  since_invalid: { status: 400, message: 'since is "beginning" or "head".' },
  callback_invalid: { status: 400, message: 'A callback is a JavaScript identifier path such as cb or app.onData.' },
  timeout_invalid: { status: 400, message: 'timeout is a number of seconds from 0 to 120.' },
  limit_invalid: { status: 400, message: 'limit is an integer from 1 to 1000.' },
  query_invalid: { status: 400, message: 'A query parameter has a value this endpoint does not take.' },
  target_invalid: { status: 400, message: 'The request target is not a path (origin-form, e.g. /v1/sse?channel=news).' },
  frame_invalid: { status: 400, message: 'A frame is a JSON object with an "op" field.' },
  op_unknown: { status: 400, message: 'Unknown op; known ops are subscribe, unsubscribe, ping, auth, refresh, publish and presence.' },
  unauthorized: { status: 401, message: 'A valid "Authorization: Bearer <publish key>" header is required.' },
  token_invalid: { status: 401, message: 'The token is not valid (signature, algorithm, audience, issuer, not-before or claims).' },
  token_expired: { status: 401, message: 'The token has expired; connect again, or refresh, with a fresh one.', wsCloseCode: 4001 },
  forbidden: { status: 403, message: 'Without a configured publish key, only loopback clients may do this.' },
  forbidden_channel: { status: 403, message: 'This token (or an anonymous client) may not use this channel.' },
  forbidden_publish: { status: 403, message: "This token's publish claim does not cover this channel." },
  origin_forbidden: { status: 403, message: 'This Origin is not in the allow-list.' },
  not_found: { status: 404, message: 'No such endpoint.' },
  session_not_found: { status: 404, message: "No such session on this node (unknown, expired, or another client's); listen again with your channels and cursor." },
  method_not_allowed: { status: 405, message: 'This endpoint does not take this method.' },
  not_acceptable: { status: 406, message: 'This endpoint answers text/event-stream only.' },
  payload_too_large: { status: 413, message: 'The body is larger than the configured limit.' },
  rate_limited: { status: 429, message: 'Too many publishes from this client; slow down and retry.' },
  slow_consumer: {
    status: 503,
    message: 'The client read too slowly and was disconnected; resume from the last cursor.',
    wsCloseCode: 4008,
  },
  heartbeat_timeout: { status: 408, message: 'The client stopped answering heartbeats.', wsCloseCode: 4009 },
  auth_unavailable: { status: 503, message: 'The keys that verify tokens could not be fetched; retry shortly.' },
  engine_unavailable: { status: 503, message: 'The message engine (Redis) cannot be reached; nothing was acknowledged. Retry shortly, with the same idempotencyKey.', wsCloseCode: 1011 },
  shutting_down: { status: 503, message: 'The server is shutting down; reconnect and resume.', wsCloseCode: 1001 },
  internal: { status: 500, message: 'Internal error.', wsCloseCode: 1011 },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export class HeraldError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, detail?: string) {
    super(detail ?? ERRORS[code].message);
    this.code = code;
    this.status = ERRORS[code].status;
  }

  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/** `err` as the HeraldError to show a client: an unexpected error is logged and shown as `internal`. */
export function asHeraldError(err: unknown, logger: { error(fields: object, message: string): void }): HeraldError {
  if (err instanceof HeraldError) return err;
  logger.error({ err }, 'unexpected error');
  return new HeraldError('internal');
}
