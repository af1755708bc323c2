// Signing client tokens for tests, as an application backend would (with jose), plus the malicious
// shapes a server must refuse: alg "none", a wrong key, HS256 signed with a public key as the secret.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT, exportJWK, type JWK, type JWTPayload } from 'jose';

export const SECRET = 'test-secret-that-is-at-least-32-bytes-long!';

export interface Grant extends JWTPayload {
  sub?: string;
  channels?: string[];
  publish?: string[];
  presence?: string[];
  info?: Record<string, unknown>;
}

const nowS = (): number => Math.floor(Date.now() / 1000);

/** An HS256 token with `claims`, valid for `ttlS` seconds unless claims set exp/nbf themselves. */
export async function signHs256(claims: Grant, options: { secret?: string; ttlS?: number } = {}): Promise<string> {
  const payload: Grant = { exp: nowS() + (options.ttlS ?? 600), ...claims };
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .sign(new TextEncoder().encode(options.secret ?? SECRET));
}

/** A token signed with an asymmetric private key (RS256 or ES256), with an optional kid. */
export async function signWithKey(claims: Grant, key: KeyObject, alg: 'RS256' | 'ES256', kid?: string, ttlS = 600): Promise<string> {
  return new SignJWT({ exp: nowS() + ttlS, ...claims })
    .setProtectedHeader({ alg, typ: 'JWT', ...(kid === undefined ? {} : { kid }) })
    .sign(key);
}

/** An unsigned token: `alg: none`, empty signature. */
export function unsignedToken(claims: Grant): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({ exp: nowS() + 600, ...claims })}.`;
}

/** HS256 over arbitrary key bytes (e.g. a public key's PEM, the classic algorithm-confusion attack). */
export async function signHs256WithBytes(claims: Grant, bytes: Uint8Array): Promise<string> {
  return new SignJWT({ exp: nowS() + 600, ...claims }).setProtectedHeader({ alg: 'HS256' }).sign(bytes);
}

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicPem: string;
  alg: 'RS256' | 'ES256';
}

export function rsaKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey, publicKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), alg: 'RS256' };
}

export function ecKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), alg: 'ES256' };
}

/** The public JWK of `pair`, with its kid and alg, for a JWKS. */
export async function publicJwk(pair: KeyPair, kid: string): Promise<JWK> {
  return { ...(await exportJWK(pair.publicKey)), kid, alg: pair.alg, use: 'sig' };
}
