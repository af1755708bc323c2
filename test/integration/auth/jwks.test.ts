// RS256/ES256 tokens checked against a JWKS served over HTTP (a tiny node:http server here, as an
// identity provider would serve one): keys are cached, a new kid triggers a refetch (key rotation),
// and a JWKS that cannot be fetched gets 503 auth_unavailable rather than a "bad token" answer.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { JWK } from 'jose';
import type { RunningHerald } from '../../../src/herald.js';
import { SUITE_TIMEOUT_MS, errorCode } from '../../helpers/clients.js';
import { startTestServer } from '../../helpers/server.js';
import { ecKeyPair, publicJwk, rsaKeyPair, signWithKey, type KeyPair } from '../../helpers/tokens.js';

let jwksServer: Server;
let jwksUrl: string;
let keys: JWK[] = [];
let fetches = 0;
let herald: RunningHerald;

before(async () => {
  jwksServer = createServer((_req, res) => {
    fetches++;
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
  // No cooldown, so that a rotation is picked up by the very next token with a new kid.
  herald = await startTestServer({ tokenJwksUrl: jwksUrl, tokenJwksCooldownMs: 0 });
});
after(async () => {
  await herald.close();
  jwksServer.closeAllConnections();
  await new Promise((resolve) => jwksServer.close(resolve));
});

async function poll(token: string, channel = 'user:1'): Promise<Response> {
  return fetch(`${herald.url}/v1/poll?channel=${channel}&timeout=0`, { headers: { Authorization: `Bearer ${token}` } });
}

describe('JWKS', { timeout: SUITE_TIMEOUT_MS }, () => {
  const first: KeyPair = rsaKeyPair();
  const second: KeyPair = ecKeyPair();

  it('verifies tokens with the keys of the set, fetching it once', async () => {
    keys = [await publicJwk(first, 'k1')];
    const before = fetches;
    for (let i = 0; i < 5; i++) {
      const res = await poll(await signWithKey({ sub: `a${i}`, channels: ['user:1'] }, first.privateKey, 'RS256', 'k1'));
      assert.equal(res.status, 200, await res.text());
    }
    assert.equal(fetches - before, 1, 'the set is cached');
  });

  it('refetches on an unknown kid, so a rotated key works at once and a removed one stops working', async () => {
    keys = [await publicJwk(second, 'k2')];
    const rotated = await poll(await signWithKey({ sub: 'b', channels: ['user:1'] }, second.privateKey, 'ES256', 'k2'));
    assert.equal(rotated.status, 200, await rotated.text());
    const old = await poll(await signWithKey({ sub: 'c', channels: ['user:1'] }, first.privateKey, 'RS256', 'k1'));
    assert.equal(old.status, 401);
    assert.equal(await errorCode(old), 'token_invalid');
  });

  it('refuses a token whose kid is in the set but whose signature is not by that key', async () => {
    const impostor = ecKeyPair();
    const res = await poll(await signWithKey({ sub: 'd', channels: ['user:1'] }, impostor.privateKey, 'ES256', 'k2'));
    assert.equal(res.status, 401);
    assert.equal(await errorCode(res), 'token_invalid');
  });

  it('answers 503 auth_unavailable when the set cannot be fetched', async () => {
    const down = await startTestServer({ tokenJwksUrl: 'http://127.0.0.1:9/jwks.json' });
    try {
      const res = await fetch(`${down.url}/v1/poll?channel=user:1&timeout=0`, {
        headers: { Authorization: `Bearer ${await signWithKey({ sub: 'e' }, first.privateKey, 'RS256', 'k1')}` },
      });
      assert.equal(res.status, 503);
      assert.equal(await errorCode(res), 'auth_unavailable');
    } finally {
      await down.close();
    }
  });
});
