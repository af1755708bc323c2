import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { HeraldError } from './errors.js';

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

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
