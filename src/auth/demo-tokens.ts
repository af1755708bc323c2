// Demo tokens: what lets the /demo chat use tokens and presence on a server nobody configured a token
// secret for (`npx herald`). POST /demo/token (src/http/demo.ts) signs them; Authenticator verifies them.
//
// Threats named and refused:
// - Reaching real channels with a demo token: whatever a demo token's claims say, its Access is capped
//   to DEMO_CHANNELS (src/auth/access.ts, the ceiling), anonymous channels included.
// - Forging one: the HS256 key is 32 random bytes made at startup, never configured, logged or stored;
//   a restart invalidates every demo token.
// - A configured-key token dressed as a demo token, or the reverse: the `kid` header only chooses which
//   key checks the signature; a token signed by the other key fails there, and changing `kid` breaks
//   the signature.
// - Impersonating another demo user in presence: `sub` is random, or an HMAC of a seed that only
//   the page that made it knows (presence shows the HMAC, never the seed).
import { createHmac, randomBytes } from 'node:crypto';
import { decodeProtectedHeader, SignJWT } from 'jose';
import type { Config } from '../config.js';
import { ChannelPolicy } from './policy.js';
import { TokenVerifier, type TokenClaims } from './token.js';

/** Every channel a demo token may ever reach, whatever its claims. */
export const DEMO_CHANNELS = new ChannelPolicy(['demo:*']);
/** The one channel demo users publish into and show presence in. */
export const DEMO_CHAT = 'demo:chat';
const DEMO_KID = 'herald-demo';
const DEMO_ISSUER = 'herald-demo';
const DEMO_TTL_S = 3600;
const MAX_TOKEN_CHARS = 8192;

/**
 * Whether /demo and POST /demo/token are served: `--demo`/`--no-demo` when given, else only in open mode
 * (no token verification configured), where nobody else could sign a token for the demo page.
 */
export function isDemoEnabled(config: Pick<Config, 'demo' | 'tokenSecret' | 'tokenPublicKey' | 'tokenJwksUrl'>): boolean {
  return config.demo ?? (config.tokenSecret === undefined && config.tokenPublicKey === undefined && config.tokenJwksUrl === undefined);
}

export interface DemoToken {
  token: string;
  /** The token's `sub`: "demo-" and 16 base64url characters. */
  user: string;
  /** The token's `exp`, in seconds since the epoch. */
  expiresAt: number;
}

/** Signs and verifies demo tokens with a key made at startup. One per server. */
export class DemoTokens {
  readonly #signingKey: Uint8Array;
  /** Keys the seed → user HMAC; apart from the signing key so neither use can help attack the other. */
  readonly #userKey: Buffer;
  readonly #verifier: TokenVerifier;

  /**
   * `sharedSecret`: the key every worker of one `--workers` server uses (made by its primary); without
   * one, a key of this process alone.
   */
  constructor(sharedSecret?: string) {
    const secret = sharedSecret ?? randomBytes(32).toString('base64url');
    this.#userKey = sharedSecret === undefined ? randomBytes(32) : createHmac('sha256', sharedSecret).update('herald-demo-user').digest();
    this.#signingKey = new TextEncoder().encode(secret);
    // The same verifier as configured tokens (pinned HS256, exp, claim checks, cache), with its own key.
    this.#verifier = TokenVerifier.fromConfig({
      tokenSecret: secret,
      tokenPublicKey: undefined,
      tokenJwksUrl: undefined,
      tokenJwksCooldownMs: 0,
      tokenAudience: undefined,
      tokenIssuer: DEMO_ISSUER,
    })!;
  }

  /**
   * A token for `name` (already validated: 1–40 characters), valid for an hour, granting demo:* to read
   * and demo:chat to publish and show presence in. The same `seed` always gives the same user, so a
   * page refreshing its token stays the same user (a WebSocket refresh must keep `sub`).
   */
  async issue(name: string, seed?: string): Promise<DemoToken> {
    const id = seed === undefined ? randomBytes(12) : createHmac('sha256', this.#userKey).update(seed).digest().subarray(0, 12);
    const user = `demo-${id.toString('base64url')}`;
    const expiresAt = Math.floor(Date.now() / 1000) + DEMO_TTL_S;
    const token = await new SignJWT({ channels: ['demo:*'], publish: [DEMO_CHAT], presence: [DEMO_CHAT], info: { name } })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: DEMO_KID })
      .setIssuer(DEMO_ISSUER)
      .setSubject(user)
      .setIssuedAt()
      .setExpirationTime(expiresAt)
      .sign(this.#signingKey);
    return { token, user, expiresAt };
  }

  /** Whether `token` says it is a demo token (its header's `kid`; unverified: verify() decides). */
  isDemoToken(token: string): boolean {
    if (token.length > MAX_TOKEN_CHARS) return false;
    try {
      return decodeProtectedHeader(token).kid === DEMO_KID;
    } catch {
      return false;
    }
  }

  /** As TokenVerifier.verify, with the demo key. The caller caps the Access to DEMO_CHANNELS. */
  verify(token: string): Promise<TokenClaims> {
    return this.#verifier.verify(token);
  }
}
