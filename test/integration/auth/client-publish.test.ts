// Clients publishing with a token, over WebSocket ({"op":"publish"}) and POST /v1/publish: only where
// the token's publish claim allows, with the backend's validation, offsets and idempotency, and a
// per-connection token bucket that refuses (never queues) what goes over the rate.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../../src/herald.js';
import { SUITE_TIMEOUT_MS, WsClient, errorCode, publishOk, subscribeSse, waitUntil } from '../../helpers/clients.js';
import { startTestServer } from '../../helpers/server.js';
import { SECRET, signHs256, type Grant } from '../../helpers/tokens.js';

const KEY = 'publish-key-for-tests';
const RATE = 5;
let server: RunningHerald;
const open: { close(): Promise<void> | void }[] = [];
let n = 0;
const fresh = (): string => `chat/r${++n}`;
const nowS = (): number => Math.floor(Date.now() / 1000);
const chatter = (claims: Partial<Grant> = {}): Promise<string> =>
  signHs256({ sub: `u${++n}`, channels: ['chat/*'], publish: ['chat/*'], ...claims });

before(async () => {
  server = await startTestServer({ tokenSecret: SECRET, publishKey: KEY, clientPublishRate: RATE });
});
after(async () => {
  await Promise.all(open.map((c) => c.close()));
  await server.close();
});

async function authed(token: string): Promise<WsClient> {
  const client = await WsClient.connect(server.url);
  open.push(client);
  const reply = await client.request({ op: 'auth', token });
  assert.equal(reply.op, 'authenticated', JSON.stringify(reply));
  return client;
}

async function head(channel: string): Promise<number> {
  const res = await fetch(`${server.url}/v1/history?channel=${encodeURIComponent(channel)}&limit=1&reverse=true`, {
    headers: { Authorization: `Bearer ${KEY}` },
  });
  return ((await res.json()) as { offset: number }).offset;
}

function post(body: unknown, token: string): Promise<Response> {
  return fetch(`${server.url}/v1/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
}

describe('client publish over WebSocket', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('publishes where the claim allows: offsets, epoch, idempotency, delivery to subscribers', async () => {
    const channel = fresh();
    const listener = await subscribeSse(server.url, { channels: [channel], token: await chatter() });
    open.push(listener);
    const client = await authed(await chatter());
    const first = await client.request({ op: 'publish', channel, data: { text: 'hi' }, event: 'said', idempotencyKey: 'm1' });
    assert.equal(first.op, 'published');
    assert.equal(first.channel, channel);
    assert.equal(first.offset, 1);
    assert.equal(typeof first.epoch, 'string');
    const again = await client.request({ op: 'publish', channel, data: { text: 'hi' }, idempotencyKey: 'm1' });
    assert.deepEqual({ offset: again.offset, duplicate: again.duplicate }, { offset: 1, duplicate: true });
    const second = await client.request({ op: 'publish', channel, data: 2 });
    assert.equal(second.offset, 2);
    const got = await listener.waitForMessages(2);
    assert.deepEqual(got.map((e) => [e.offset, e.event, e.data]), [[1, 'said', { text: 'hi' }], [2, undefined, 2]]);
  });

  it('refuses channels outside the publish claim, and anonymous clients, storing nothing', async () => {
    const channel = fresh();
    const readOnly = await authed(await chatter({ publish: [] }));
    const refused = await readOnly.request({ op: 'publish', channel, data: 1 });
    assert.deepEqual([refused.op, refused.code, refused.channel], ['error', 'forbidden_publish', channel]);
    const anonymous = await WsClient.connect(server.url);
    open.push(anonymous);
    assert.equal((await anonymous.request({ op: 'publish', channel, data: 1 })).code, 'forbidden_publish');
    const elsewhere = await authed(await chatter());
    assert.equal((await elsewhere.request({ op: 'publish', channel: 'prices:x', data: 1 })).code, 'forbidden_publish');
    assert.equal(await head(channel), 0);
    assert.equal(await head('prices:x'), 0);
    // The socket is still up and still publishes where it may.
    assert.equal((await elsewhere.request({ op: 'publish', channel, data: 1 })).op, 'published');
  });

  it('validates like POST /v1/publish', async () => {
    const client = await authed(await chatter());
    const channel = fresh();
    const cases: [Record<string, unknown>, string][] = [
      [{ op: 'publish', channel }, 'data_missing'],
      [{ op: 'publish', data: 1 }, 'channel_missing'],
      [{ op: 'publish', channel: 'bad name', data: 1 }, 'channel_invalid'],
      [{ op: 'publish', channel, data: 1, event: 'no spaces' }, 'event_invalid'],
      [{ op: 'publish', channel, data: 1, idempotencyKey: '' }, 'idempotency_key_invalid'],
      [{ op: 'publish', channel, data: 1, extra: true }, 'body_invalid'],
    ];
    for (const [frame, code] of cases) assert.equal((await client.request(frame)).code, code, JSON.stringify(frame));
    assert.equal(await head(channel), 0);
  });

  it('rate-limits per connection: over the rate is refused with rate_limited, nothing stored; it recovers', async () => {
    const channel = fresh();
    const token = await chatter();
    const client = await authed(token);
    const other = await authed(token);
    const replies = await Promise.all(Array.from({ length: RATE + 3 }, (_, i) => client.request({ op: 'publish', channel, data: i })));
    const published = replies.filter((r) => r.op === 'published');
    const limited = replies.filter((r) => r.code === 'rate_limited');
    assert.equal(published.length, RATE);
    assert.equal(limited.length, 3);
    assert.equal(await head(channel), RATE, 'refused publishes are not stored');
    // Another connection has its own bucket.
    assert.equal((await other.request({ op: 'publish', channel, data: 'other' })).op, 'published');
    // Tokens come back at RATE per second.
    await waitUntil(async () => (await client.request({ op: 'publish', channel, data: 'later' })).op === 'published', 'the bucket to refill', 3000);
  });
});

describe('client publish over HTTP', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('accepts a token instead of the publish key, only into channels its claim covers', async () => {
    const channel = fresh();
    const token = await chatter();
    const ok = await post({ channel, data: 'from a browser' }, token);
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as { results: { offset: number }[] }).results[0]!.offset, 1);
    const refused = await post({ channel: 'prices:y', data: 1 }, token);
    assert.equal(refused.status, 403);
    assert.equal(await errorCode(refused), 'forbidden_publish');
    // A batch with one forbidden message stores nothing.
    const batch = await post({ messages: [{ channel, data: 2 }, { channel: 'prices:y', data: 3 }] }, token);
    assert.equal(batch.status, 403);
    assert.match(((await batch.json()) as { error: { message: string } }).error.message, /^messages\[1\]: /);
    assert.equal(await head(channel), 1);
    assert.equal(await head('prices:y'), 0);
  });

  it('refuses bad tokens with 401 and keeps the publish key working', async () => {
    const channel = fresh();
    const expired = await post({ channel, data: 1 }, await chatter({ exp: nowS() - 60 }));
    assert.equal(expired.status, 401);
    assert.equal(await errorCode(expired), 'token_expired');
    const garbage = await post({ channel, data: 1 }, 'not-a-token-nor-the-key');
    assert.equal(garbage.status, 401);
    assert.equal(await errorCode(garbage), 'token_invalid');
    const none = await fetch(`${server.url}/v1/publish`, { method: 'POST', body: JSON.stringify({ channel, data: 1 }) });
    assert.equal(none.status, 401);
    assert.equal(await errorCode(none), 'unauthorized');
    await publishOk(server.url, { channel: 'prices:z', data: 1 }, { Authorization: `Bearer ${KEY}` });
  });

  it('rate-limits by user with 429 and Retry-After, counting each message of a batch', async () => {
    const channel = fresh();
    const token = await chatter();
    const burst = await post({ messages: Array.from({ length: RATE }, (_, i) => ({ channel, data: i })) }, token);
    assert.equal(burst.status, 200);
    const over = await post({ channel, data: 'one too many' }, token);
    assert.equal(over.status, 429);
    assert.equal(over.headers.get('retry-after'), '1');
    assert.equal(await errorCode(over), 'rate_limited');
    assert.equal(await head(channel), RATE);
    await waitUntil(async () => (await post({ channel, data: 'later' }, token)).status === 200, 'the bucket to refill', 3000);
  });
});
