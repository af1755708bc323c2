import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Access } from '../auth/access.js';
import { bearerOf, type Authenticator } from '../auth/authenticator.js';
import { HeraldError } from '../errors.js';

/**
 * Backend-only endpoints (publish, stats): with a publish key, `Authorization: Bearer <key>`; without
 * one, loopback clients only, so a fresh install is never an open relay.
 */
export function authorizeBackend(req: IncomingMessage, publishKey: string | undefined): void {
  if (publishKey === undefined) {
    if (!isLoopback(req.socket.remoteAddress)) throw new HeraldError('forbidden');
    return;
  }
  const header = req.headers.authorization ?? '';
  const match = /^Bearer\s+(.+)$/i.exec(header);
  // Compare digests so the time taken says nothing about the key, whatever the lengths.
  if (match === null || !timingSafeEqual(digest(match[1]!.trim()), digest(publishKey))) {
    throw new HeraldError('unauthorized');
  }
}

/**
 * POST /v1/publish: the backend (as `authorizeBackend`), or, when tokens are configured (or it is a demo
 * token), a client whose `Authorization: Bearer` is a token rather than the publish key. A client may
 * then publish only where its token's `publish` claim allows (checked per message by the caller).
 */
export async function authorizePublish(req: IncomingMessage, authenticator: Authenticator, publishKey: string | undefined): Promise<Access> {
  const bearer = bearerOf(req);
  if (bearer !== undefined && !authenticator.isPublishKey(bearer) && authenticator.isClientToken(bearer)) {
    return authenticator.fromToken(bearer);
  }
  authorizeBackend(req, publishKey);
  return Access.backend();
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
