// Demo tokens on their own: what the issuer signs, that the same seed is the same user, that a token
// dressed as a demo token does not verify, and that an Access under the demo ceiling never reaches
// beyond demo:* whatever its claims (and the anonymous channels) say.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { Access } from '../../src/auth/access.js';
import { DEMO_CHANNELS, DemoTokens, isDemoEnabled } from '../../src/auth/demo-tokens.js';
import { ChannelPolicy } from '../../src/auth/policy.js';
import type { TokenClaims } from '../../src/auth/token.js';
import { DEFAULT_CONFIG } from '../../src/config.js';
import { HeraldError } from '../../src/errors.js';
import { SECRET, signHs256 } from '../helpers/tokens.js';

describe('demo tokens', () => {
  it('are on by default only in open mode', () => {
    assert.equal(isDemoEnabled(DEFAULT_CONFIG), true);
    assert.equal(isDemoEnabled({ ...DEFAULT_CONFIG, tokenSecret: SECRET }), false);
    assert.equal(isDemoEnabled({ ...DEFAULT_CONFIG, tokenJwksUrl: 'https://id.example/jwks.json' }), false);
    assert.equal(isDemoEnabled({ ...DEFAULT_CONFIG, tokenSecret: SECRET, demo: true }), true);
    assert.equal(isDemoEnabled({ ...DEFAULT_CONFIG, demo: false }), false);
  });

  it('grant demo:* to read and demo:chat to publish and show presence, for an hour', async () => {
    const demo = new DemoTokens();
    const { token, user, expiresAt } = await demo.issue('Ada');
    assert.match(user, /^demo-[A-Za-z0-9_-]{16}$/);
    const nowS = Date.now() / 1000;
    assert.ok(expiresAt > nowS + 3500 && expiresAt <= nowS + 3601, String(expiresAt));
    assert.deepEqual(decodeProtectedHeader(token), { alg: 'HS256', typ: 'JWT', kid: 'herald-demo' });
    const payload = decodeJwt(token);
    assert.deepEqual(
      { sub: payload.sub, channels: payload.channels, publish: payload.publish, presence: payload.presence, info: payload.info, exp: payload.exp },
      { sub: user, channels: ['demo:*'], publish: ['demo:chat'], presence: ['demo:chat'], info: { name: 'Ada' }, exp: expiresAt },
    );
    assert.equal(demo.isDemoToken(token), true);
    const claims = await demo.verify(token);
    assert.equal(claims.sub, user);
    assert.deepEqual(claims.info, { name: 'Ada' });
  });

  it('give the same user for the same seed, and a new one otherwise', async () => {
    const demo = new DemoTokens();
    const seed = 'a-seed-of-some-length-0';
    const first = await demo.issue('Ada', seed);
    const again = await demo.issue('Ada Lovelace', seed);
    assert.equal(again.user, first.user);
    assert.notEqual((await demo.issue('Ada', 'another-seed-of-length')).user, first.user);
    assert.notEqual((await demo.issue('Ada')).user, (await demo.issue('Ada')).user);
    // Another server (another startup) maps the same seed elsewhere and refuses the first one's tokens.
    const other = new DemoTokens();
    assert.notEqual((await other.issue('Ada', seed)).user, first.user);
    await assert.rejects(other.verify(first.token), (err: unknown) => err instanceof HeraldError && err.code === 'token_invalid');
  });

  it('refuse a token that only says it is one', async () => {
    const demo = new DemoTokens();
    const forged = await signHs256({ sub: 'demo-x', channels: ['*'] }, { secret: SECRET });
    assert.equal(demo.isDemoToken(forged), false);
    const [, payload, signature] = forged.split('.');
    const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'herald-demo' })).toString('base64url');
    const dressed = `${header}.${payload}.${signature}`;
    assert.equal(demo.isDemoToken(dressed), true);
    await assert.rejects(demo.verify(dressed), (err: unknown) => err instanceof HeraldError && err.code === 'token_invalid');
    assert.equal(demo.isDemoToken('not a token'), false);
  });

  it('are capped to demo:* whatever the claims and anonymous channels say', () => {
    const claims: TokenClaims = {
      sub: 'demo-x',
      channels: ChannelPolicy.ALL,
      publish: ChannelPolicy.ALL,
      presence: ChannelPolicy.ALL,
      info: undefined,
      expiresAtMs: undefined,
    };
    const capped = Access.fromClaims(claims, ChannelPolicy.ALL, DEMO_CHANNELS);
    for (const inside of ['demo:chat', 'demo:prices:AAPL']) {
      assert.equal(capped.canSubscribe(inside), true, inside);
      assert.equal(capped.canPublish(inside), true, inside);
      assert.equal(capped.canShowPresence(inside), true, inside);
    }
    for (const outside of ['news', 'demo:', 'demo', 'user:42', 'xdemo:chat']) {
      assert.equal(capped.canSubscribe(outside), false, outside);
      assert.equal(capped.canPublish(outside), false, outside);
      assert.equal(capped.canShowPresence(outside), false, outside);
      assert.equal(capped.canSeePresence(outside), false, outside);
      assert.throws(() => capped.requireSubscribe(outside), (err: unknown) => err instanceof HeraldError && err.code === 'forbidden_channel' && /demo:\*/.test(err.message));
      assert.throws(() => capped.requirePublish(outside), (err: unknown) => err instanceof HeraldError && err.code === 'forbidden_publish');
    }
    // Without the ceiling, the same claims reach everything: the ceiling is what holds.
    assert.equal(Access.fromClaims(claims, ChannelPolicy.ALL).canPublish('news'), true);
  });
});
