// Client tokens: JWTs signed by the application's backend, verified here with `jose`.
//
// Threats named and refused:
// - `alg: none` and any algorithm not configured: jose checks the header's alg against the pinned
//   `algorithms` list before any key is looked at.
// - Algorithm confusion (an HS256 token "signed" with the RSA public key as the HMAC secret): the key
//   is chosen by alg, and HS256 only ever gets the configured secret, RS256/ES256 only public keys.
// - Forged claims: `channels`, `publish` and `presence` are pattern lists checked against a tiny
//   grammar (src/auth/policy.ts), never compiled into a regex.
import { createPublicKey, type KeyObject } from 'node:crypto';
import {
  createRemoteJWKSet,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWSHeaderParameters,
} from 'jose';
import type { Config } from '../config.js';
import { HeraldError } from '../errors.js';
import { ChannelPolicy } from './policy.js';

/** What a verified token grants. */
export interface TokenClaims {
  /** The user id (`sub`). */
  sub: string;
  /** Channels the user may subscribe to (and read history of). */
  channels: ChannelPolicy;
  /** Channels the user may publish into from the client. */
  publish: ChannelPolicy;
  /** Channels where the user shows in presence. */
  presence: ChannelPolicy;
  /** A small JSON object shown to others in presence. */
  info: Record<string, unknown> | undefined;
  /** When the token expires (`exp`), in ms since the epoch; undefined when it has no `exp`. */
  expiresAtMs: number | undefined;
}

const MAX_TOKEN_CHARS = 8192;
const MAX_SUB_CHARS = 200;
const MAX_INFO_BYTES = 1024;
/** Seconds of clock skew tolerated on `nbf` and `exp` between the signer and this server. */
const CLOCK_TOLERANCE_S = 5;
/** Verified tokens kept, so a poll every few seconds costs a map lookup rather than a signature check. */
const CACHE_SIZE = 10_000;
const ASYMMETRIC = ['RS256', 'ES256'] as const;

export type TokenConfig = Pick<
  Config,
  'tokenSecret' | 'tokenPublicKey' | 'tokenJwksUrl' | 'tokenJwksCooldownMs' | 'tokenAudience' | 'tokenIssuer'
>;

/** Verifies client tokens. Built once at startup; a bad configuration throws there. */
export class TokenVerifier {
  readonly #algorithms: string[];
  readonly #getKey: JWTVerifyGetKey;
  readonly #audience: string | undefined;
  readonly #issuer: string | undefined;
  readonly #cache = new Map<string, TokenClaims>();

  /** The verifier for `config`, or undefined when no token verification is configured. */
  static fromConfig(config: TokenConfig): TokenVerifier | undefined {
    const { tokenSecret, tokenPublicKey, tokenJwksUrl } = config;
    if (tokenSecret === undefined && tokenPublicKey === undefined && tokenJwksUrl === undefined) return undefined;
    return new TokenVerifier(config);
  }

  private constructor(config: TokenConfig) {
    const algorithms: string[] = [];
    // Keys are imported into WebCrypto once: jose verifies with a CryptoKey in about a third of the
    // time it takes from raw bytes or a KeyObject, which it would convert on every call.
    let secret: Promise<CryptoKey> | undefined;
    let publicKey: { key: Promise<CryptoKey>; alg: string } | undefined;
    let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
    if (config.tokenSecret !== undefined) {
      const bytes = new TextEncoder().encode(config.tokenSecret);
      // RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
      if (bytes.length < 32) throw new Error('the token secret must be at least 32 bytes');
      secret = crypto.subtle.importKey('raw', bytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
      algorithms.push('HS256');
    }
    if (config.tokenPublicKey !== undefined && config.tokenJwksUrl !== undefined) {
      throw new Error('give either a token public key or a JWKS URL, not both');
    }
    if (config.tokenPublicKey !== undefined) {
      publicKey = importPublicKey(config.tokenPublicKey);
      algorithms.push(publicKey.alg);
    }
    if (config.tokenJwksUrl !== undefined) {
      let url: URL;
      try {
        url = new URL(config.tokenJwksUrl);
      } catch {
        throw new Error(`the JWKS URL is not a URL: ${JSON.stringify(config.tokenJwksUrl)}`);
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('the JWKS URL must be http(s)');
      // jose caches the set, and fetches again on a kid it does not know (after the cooldown).
      jwks = createRemoteJWKSet(url, { cooldownDuration: config.tokenJwksCooldownMs });
      algorithms.push(...ASYMMETRIC);
    }
    this.#algorithms = algorithms;
    this.#audience = config.tokenAudience;
    this.#issuer = config.tokenIssuer;
    // Keep a failed import from surfacing as an unhandled rejection before the first token.
    void secret?.catch(() => {});
    void publicKey?.key.catch(() => {});
    this.#getKey = async (header: JWSHeaderParameters) => {
      if (header.alg === 'HS256' && secret !== undefined) return await secret;
      if (publicKey !== undefined && header.alg === publicKey.alg) return await publicKey.key;
      if (jwks !== undefined && header.alg !== 'HS256') {
        try {
          return await jwks(header);
        } catch (err) {
          if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) throw err;
          throw new HeraldError('auth_unavailable');
        }
      }
      throw new joseErrors.JOSEAlgNotAllowed(`"alg" (Algorithm) Header Parameter value not allowed`);
    };
  }

  /**
   * Checks signature, algorithm, `exp`, `nbf`, and `aud`/`iss` when configured, then the claims.
   * Rejects with a HeraldError: token_expired, token_invalid (the message says why), or
   * auth_unavailable when the JWKS cannot be fetched.
   */
  async verify(token: string): Promise<TokenClaims> {
    const cached = this.#cache.get(token);
    if (cached !== undefined && (cached.expiresAtMs === undefined || cached.expiresAtMs > Date.now())) return cached;
    if (cached !== undefined) this.#cache.delete(token);
    if (token.length === 0 || token.length > MAX_TOKEN_CHARS) throw new HeraldError('token_invalid', 'The token is empty or too long.');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.#getKey, {
        algorithms: this.#algorithms,
        audience: this.#audience,
        issuer: this.#issuer,
        clockTolerance: CLOCK_TOLERANCE_S,
      }));
    } catch (err) {
      throw toHeraldError(err);
    }
    const claims = readClaims(payload);
    if (this.#cache.size >= CACHE_SIZE) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(token, claims);
    return claims;
  }
}

/** Checks the PEM at once (bad configuration fails at startup), then imports it for WebCrypto. */
function importPublicKey(pem: string): { key: Promise<CryptoKey>; alg: string } {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new Error(`the token public key is not a PEM public key (${(err as Error).message})`);
  }
  const spki = key.export({ format: 'der', type: 'spki' });
  if (key.asymmetricKeyType === 'rsa') {
    return { key: crypto.subtle.importKey('spki', spki, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['verify']), alg: 'RS256' };
  }
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    return { key: crypto.subtle.importKey('spki', spki, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']), alg: 'ES256' };
  }
  throw new Error('the token public key must be an RSA key (RS256) or a P-256 EC key (ES256)');
}

function toHeraldError(err: unknown): HeraldError {
  if (err instanceof HeraldError) return err;
  if (err instanceof joseErrors.JWTExpired) return new HeraldError('token_expired');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    const detail =
      err.claim === 'nbf' ? 'The token is not valid yet (nbf).' : `The token's "${err.claim}" claim is not accepted: ${err.message}.`;
    return new HeraldError('token_invalid', detail);
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed || err instanceof joseErrors.JOSENotSupported) {
    return new HeraldError('token_invalid', 'The token is signed with an algorithm this server does not accept.');
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new HeraldError('token_invalid', 'The token signature does not verify.');
  if (err instanceof joseErrors.JWKSNoMatchingKey) return new HeraldError('token_invalid', 'No key of the JWKS matches the token (kid, alg).');
  if (err instanceof joseErrors.JOSEError) return new HeraldError('token_invalid', `The token is malformed: ${err.message}.`);
  return new HeraldError('token_invalid', 'The token is malformed.');
}

function readClaims(payload: JWTPayload): TokenClaims {
  const fail = (detail: string): never => {
    throw new HeraldError('token_invalid', detail);
  };
  const { sub } = payload;
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > MAX_SUB_CHARS) fail(`"sub" is a string of 1 to ${MAX_SUB_CHARS} characters.`);
  const policy = (name: 'channels' | 'publish' | 'presence'): ChannelPolicy => {
    const value = payload[name];
    if (value === undefined) return ChannelPolicy.NONE;
    if (!Array.isArray(value)) return fail(`"${name}" is an array of channel patterns.`);
    try {
      return new ChannelPolicy(value as string[]);
    } catch (err) {
      return fail(`"${name}": ${(err as Error).message}.`);
    }
  };
  const info = payload.info;
  if (info !== undefined) {
    if (typeof info !== 'object' || info === null || Array.isArray(info)) fail('"info" is a JSON object.');
    if (Buffer.byteLength(JSON.stringify(info)) > MAX_INFO_BYTES) fail(`"info" is at most ${MAX_INFO_BYTES} bytes of JSON.`);
  }
  return {
    sub: sub as string,
    channels: policy('channels'),
    publish: policy('publish'),
    presence: policy('presence'),
    info: info as Record<string, unknown> | undefined,
    expiresAtMs: typeof payload.exp === 'number' ? payload.exp * 1000 : undefined,
  };
}
