import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Config } from '../config.js';
import { HeraldError } from '../errors.js';
import { Access } from './access.js';
import { DEMO_CHANNELS, DemoTokens, isDemoEnabled } from './demo-tokens.js';
import { ChannelPolicy } from './policy.js';
import { TokenVerifier } from './token.js';

/**
 * Turns what a client presents into an Access: the publish key (the backend), a client token, or
 * nothing (anonymous). Where a token may travel, per transport:
 * - `Authorization: Bearer <token>` on any HTTP request and on the WebSocket upgrade;
 * - `?token=<token>` on every subscribing HTTP endpoint and the WebSocket URL (EventSource, iframes
 *   and JSONP cannot set headers);
 * - a `{"op":"auth","token"}` frame on WebSocket.
 * The publish key is only taken from the header, never from a URL (URLs end up in logs).
 * Demo tokens (src/auth/demo-tokens.ts), when the demo is on, are accepted beside the configured ones,
 * and their Access never reaches beyond demo:*.
 */
export class Authenticator {
  readonly verifier: TokenVerifier | undefined;
  readonly anonymousPolicy: ChannelPolicy;
  readonly anonymous: Access;
  /** The demo token issuer; undefined when the demo is off (then /demo and /demo/token are 404). */
  readonly demo: DemoTokens | undefined;
  readonly #publishKeyDigest: Buffer | undefined;

  constructor(config: Config) {
    this.verifier = TokenVerifier.fromConfig(config);
    const patterns = config.anonymousChannels ?? (this.verifier === undefined ? ['*'] : []);
    this.anonymousPolicy = new ChannelPolicy(patterns);
    this.anonymous = Access.anonymous(this.anonymousPolicy);
    this.demo = isDemoEnabled(config) ? new DemoTokens(config.demoSecret) : undefined;
    this.#publishKeyDigest = config.publishKey === undefined ? undefined : digest(config.publishKey);
  }

  /** Whether `secret` is the configured publish key (compared in constant time). */
  isPublishKey(secret: string): boolean {
    return this.#publishKeyDigest !== undefined && timingSafeEqual(digest(secret), this.#publishKeyDigest);
  }

  /**
   * Whether a bearer that is not the publish key is a client token on POST /v1/publish: any when tokens
   * are configured; in open mode only a demo token (else loopback publishers keep working as before).
   */
  isClientToken(bearer: string): boolean {
    return this.verifier !== undefined || this.demo?.isDemoToken(bearer) === true;
  }

  /** Verifies a client token; rejects with token_invalid, token_expired or auth_unavailable. */
  async fromToken(token: string): Promise<Access> {
    if (this.demo?.isDemoToken(token) === true) {
      return Access.fromClaims(await this.demo.verify(token), this.anonymousPolicy, DEMO_CHANNELS);
    }
    if (this.verifier === undefined) {
      throw new HeraldError('token_invalid', 'This server is not configured to verify tokens (--token-secret, --token-public-key or --token-jwks).');
    }
    return Access.fromClaims(await this.verifier.verify(token), this.anonymousPolicy);
  }

  /**
   * The access of a subscribing request (SSE, stream, iframe, poll, history, WebSocket upgrade): the
   * publish key in the header, else a token in the header or `?token=`, else anonymous. A token that
   * does not verify is refused, never downgraded to anonymous.
   */
  async fromRequest(req: IncomingMessage, url: URL): Promise<Access> {
    const bearer = bearerOf(req);
    if (bearer !== undefined && this.isPublishKey(bearer)) return Access.backend();
    const token = bearer ?? url.searchParams.get('token') ?? undefined;
    if (token === undefined || token === '') return this.anonymous;
    return this.fromToken(token);
  }
}

/** The credentials of `Authorization: Bearer <credentials>` (RFC 6750 §2.1), if any. */
export function bearerOf(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(.+?)\s*$/i.exec(header);
  return match === null ? undefined : match[1];
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
