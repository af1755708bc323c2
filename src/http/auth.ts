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
    refuseBrowserOnLoopback(req);
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

const FORWARDING_HEADERS = ['forwarded', 'x-forwarded-for', 'x-real-ip'];
const LOOPBACK_HOST = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d{1,5})?$/i;

/**
 * Loopback's keyless rights are for the machine's own programs (curl, a backend on the same host) and
 * Herald's own pages, not for whatever a browser on the machine runs: a cross-origin page (its
 * request carries another Origin), a form or `text/plain` body (no preflight needed), a DNS-rebinding
 * page (a foreign Host name), or a reverse proxy on the same host relaying the world (forwarding
 * headers) all need the key.
 */
function refuseBrowserOnLoopback(req: IncomingMessage): void {
  const refuse = (why: string): never => {
    throw new HeraldError('forbidden', `Without a publish key, only loopback programs and Herald's own pages may do this; ${why}. Configure --publish-key and send it.`);
  };
  const host = req.headers.host ?? '';
  if (!LOOPBACK_HOST.test(host)) refuse(`the Host ${JSON.stringify(host.slice(0, 100))} is not a loopback name`);
  if (FORWARDING_HEADERS.some((name) => req.headers[name] !== undefined)) refuse('this request was forwarded by a proxy');
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${host}` && origin !== `https://${host}`) refuse(`this request comes from the page of ${JSON.stringify(origin.slice(0, 100))}`);
  if (req.method === 'POST' && !/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) refuse('the body must be sent as Content-Type: application/json');
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
