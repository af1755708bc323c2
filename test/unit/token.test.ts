// The token verifier on its own, with real signatures: every way a token can be wrong gets the right
// code, and the claims come out as policies.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenVerifier, type TokenConfig } from '../../src/auth/token.js';
import { DEFAULT_CONFIG } from '../../src/config.js';
import { HeraldError } from '../../src/errors.js';
import { SECRET, ecKeyPair, rsaKeyPair, signHs256, signHs256WithBytes, signWithKey, unsignedToken } from '../helpers/tokens.js';

const nowS = (): number => Math.floor(Date.now() / 1000);

function verifier(config: Partial<TokenConfig>): TokenVerifier {
  return TokenVerifier.fromConfig({ ...DEFAULT_CONFIG, ...config })!;
}

async function refusal(v: TokenVerifier, token: string): Promise<{ code: string; message: string }> {
  try {
    await v.verify(token);
  } catch (err) {
    assert.ok(err instanceof HeraldError, `not a HeraldError: ${String(err)}`);
    return { code: err.code, message: err.message };
  }
  assert.fail('the token was accepted');
}

describe('token verification', () => {
  const hs = verifier({ tokenSecret: SECRET });

  it('is off when nothing is configured', () => {
    assert.equal(TokenVerifier.fromConfig(DEFAULT_CONFIG), undefined);
  });

  it('accepts a valid HS256 token and reads its claims', async () => {
    const token = await signHs256({ sub: 'u42', channels: ['user:42', 'chat/*'], publish: ['chat/*'], presence: ['chat/*'], info: { name: 'Ada' } });
    const claims = await hs.verify(token);
    assert.equal(claims.sub, 'u42');
    assert.equal(claims.channels.matches('user:42'), true);
    assert.equal(claims.channels.matches('chat/lobby'), true);
    assert.equal(claims.channels.matches('user:43'), false);
    assert.equal(claims.publish.matches('chat/lobby'), true);
    assert.equal(claims.publish.matches('user:42'), false);
    assert.equal(claims.presence.matches('chat/x'), true);
    assert.deepEqual(claims.info, { name: 'Ada' });
    assert.ok(claims.expiresAtMs! > Date.now());
  });

  it('refuses expired, not-yet-valid and wrongly signed tokens with distinct reasons', async () => {
    assert.equal((await refusal(hs, await signHs256({ sub: 'u', exp: nowS() - 60 }))).code, 'token_expired');
    const early = await refusal(hs, await signHs256({ sub: 'u', nbf: nowS() + 60 }));
    assert.equal(early.code, 'token_invalid');
    assert.match(early.message, /not valid yet/);
    const forged = await refusal(hs, await signHs256({ sub: 'u' }, { secret: 'another-secret-that-is-also-32-bytes-long' }));
    assert.equal(forged.code, 'token_invalid');
    assert.match(forged.message, /signature/);
    assert.equal((await refusal(hs, 'not.a.jwt')).code, 'token_invalid');
    assert.equal((await refusal(hs, 'garbage')).code, 'token_invalid');
    assert.equal((await refusal(hs, '')).code, 'token_invalid');
  });

  it('refuses alg:none', async () => {
    const none = await refusal(hs, unsignedToken({ sub: 'u', channels: ['*'] }));
    assert.equal(none.code, 'token_invalid');
  });

  it('checks aud and iss when configured', async () => {
    const strict = verifier({ tokenSecret: SECRET, tokenAudience: 'herald', tokenIssuer: 'https://app.example' });
    const good = await signHs256({ sub: 'u', aud: 'herald', iss: 'https://app.example' });
    assert.equal((await strict.verify(good)).sub, 'u');
    const wrongAud = await refusal(strict, await signHs256({ sub: 'u', aud: 'other', iss: 'https://app.example' }));
    assert.equal(wrongAud.code, 'token_invalid');
    assert.match(wrongAud.message, /aud/);
    assert.equal((await refusal(strict, await signHs256({ sub: 'u', iss: 'https://app.example' }))).code, 'token_invalid', 'missing aud');
    assert.equal((await refusal(strict, await signHs256({ sub: 'u', aud: 'herald', iss: 'https://evil.example' }))).code, 'token_invalid');
  });

  it('refuses malformed claims', async () => {
    for (const claims of [
      {},
      { sub: '' },
      { sub: 42 as unknown as string },
      { sub: 'u', channels: 'user:42' as unknown as string[] },
      { sub: 'u', channels: ['a*b'] },
      { sub: 'u', publish: ['^.*$'] },
      { sub: 'u', presence: [7 as unknown as string] },
      { sub: 'u', info: ['x'] as unknown as Record<string, unknown> },
      { sub: 'u', info: { big: 'x'.repeat(2000) } },
    ]) {
      const { code } = await refusal(hs, await signHs256(claims));
      assert.equal(code, 'token_invalid', JSON.stringify(claims).slice(0, 80));
    }
  });

  it('verifies RS256 and ES256 with a public key, and refuses algorithm confusion', async () => {
    for (const pair of [rsaKeyPair(), ecKeyPair()]) {
      const v = verifier({ tokenPublicKey: pair.publicPem });
      assert.equal((await v.verify(await signWithKey({ sub: 'k' }, pair.privateKey, pair.alg))).sub, 'k');
      // HS256 "signed" with the public key's PEM as the secret: must not verify against the public key.
      const confused = await refusal(v, await signHs256WithBytes({ sub: 'k' }, new TextEncoder().encode(pair.publicPem)));
      assert.equal(confused.code, 'token_invalid');
      assert.equal((await refusal(v, unsignedToken({ sub: 'k' }))).code, 'token_invalid');
      // A token signed by another key of the same kind.
      const other = pair.alg === 'RS256' ? rsaKeyPair() : ecKeyPair();
      assert.equal((await refusal(v, await signWithKey({ sub: 'k' }, other.privateKey, other.alg))).code, 'token_invalid');
    }
    // An RSA key does not verify ES256 tokens, even well signed ones.
    const rsa = verifier({ tokenPublicKey: rsaKeyPair().publicPem });
    const ec = ecKeyPair();
    assert.equal((await refusal(rsa, await signWithKey({ sub: 'k' }, ec.privateKey, 'ES256'))).code, 'token_invalid');
  });

  it('accepts HS256 and a public key side by side, each only for its own algorithm', async () => {
    const pair = rsaKeyPair();
    const both = verifier({ tokenSecret: SECRET, tokenPublicKey: pair.publicPem });
    assert.equal((await both.verify(await signHs256({ sub: 'h' }))).sub, 'h');
    assert.equal((await both.verify(await signWithKey({ sub: 'r' }, pair.privateKey, 'RS256'))).sub, 'r');
    assert.equal((await refusal(both, await signHs256WithBytes({ sub: 'x' }, new TextEncoder().encode(pair.publicPem)))).code, 'token_invalid');
  });

  it('fails at startup on a bad configuration', () => {
    assert.throws(() => verifier({ tokenSecret: 'short' }), /32 bytes/);
    assert.throws(() => verifier({ tokenPublicKey: 'not a pem' }), /PEM/);
    assert.throws(() => verifier({ tokenJwksUrl: 'ftp://x' }), /http/);
    assert.throws(() => verifier({ tokenPublicKey: rsaKeyPair().publicPem, tokenJwksUrl: 'http://127.0.0.1/jwks' }), /not both/);
  });
});
