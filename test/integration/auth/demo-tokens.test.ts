// POST /demo/token with real clients: in open mode it signs a token that verifies on every path a token
// takes (WebSocket auth, SSE, history, presence, client publish) but never reaches beyond demo:*, even
// where anonymous clients may (open mode) and even from loopback, which publishes without a key; bad
// names are 400 body_invalid; the endpoint is rate-limited per address; with tokens configured it is
// 404 unless --demo, and with --demo both kinds of token work side by side.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../../src/herald.js';
import { SUITE_TIMEOUT_MS, SseClient, WsClient, errorCode, publishOk, subscribeWs, type Subscription } from '../../helpers/clients.js';
import { startTestServer } from '../../helpers/server.js';
import { SECRET, signHs256 } from '../../helpers/tokens.js';

interface Issued {
  token: string;
  user: string;
  expiresAt: number;
}

const open: { close(): Promise<void> | void }[] = [];
const servers: RunningHerald[] = [];
after(async () => {
  await Promise.all(open.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.close()));
});

async function start(overrides: Parameters<typeof startTestServer>[0] = {}): Promise<RunningHerald> {
  const server = await startTestServer(overrides);
  servers.push(server);
  return server;
}

function requestToken(url: string, body: unknown): Promise<Response> {
  return fetch(`${url}/demo/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function issue(url: string, name: string, seed?: string): Promise<Issued> {
  const res = await requestToken(url, { name, seed });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text) as Issued;
}

async function authed(url: string, token: string): Promise<WsClient> {
  const client = await WsClient.connect(url);
  open.push(client);
  const reply = await client.request({ op: 'auth', token });
  assert.equal(reply.op, 'authenticated', JSON.stringify(reply));
  return client;
}

function post(url: string, body: unknown, token: string): Promise<Response> {
  return fetch(`${url}/v1/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
}

describe('demo tokens in open mode', { timeout: SUITE_TIMEOUT_MS }, () => {
  let server: RunningHerald;
  before(async () => {
    server = await start();
  });

  it('issues a token that verifies, publishes into demo:chat and shows in its presence', async () => {
    const { token, user, expiresAt } = await issue(server.url, '  Ada  ');
    assert.match(user, /^demo-/);
    assert.ok(expiresAt > Date.now() / 1000 + 3500);
    const client = await authed(server.url, token);
    assert.equal((await client.request({ op: 'subscribe', channel: 'demo:chat', presence: true })).op, 'subscribed');
    const published = await client.request({ op: 'publish', channel: 'demo:chat', data: { name: 'Ada', text: 'hi' } });
    assert.equal(published.op, 'published', JSON.stringify(published));
    await client.frames.find((f) => f.op === 'message' && (f.data as { text?: string }).text === 'hi', 'the chat line back');
    // Presence lists the user with the name from the token (trimmed), to another demo user.
    const other = await issue(server.url, 'Grace');
    const res = await fetch(`${server.url}/v1/presence?channel=demo:chat`, { headers: { Authorization: `Bearer ${other.token}` } });
    assert.equal(res.status, 200);
    const { members } = (await res.json()) as { members: { user: string; info?: { name?: string } }[] };
    assert.deepEqual(members.map((m) => [m.user, m.info?.name]), [[user, 'Ada']]);
    // HTTP client publish with the demo token, and history with it.
    assert.equal((await post(server.url, { channel: 'demo:chat', data: { text: 'over http' } }, token)).status, 200);
    const history = await fetch(`${server.url}/v1/history?channel=demo:chat&token=${token}`);
    assert.equal(history.status, 200);
    assert.equal(((await history.json()) as { messages: unknown[] }).messages.length, 2);
  });

  it('never reaches beyond demo:*, though anonymous clients may and loopback publishes without a key', async () => {
    const { token } = await issue(server.url, 'Mallory');
    const client = await authed(server.url, token);
    const refused = await client.request({ op: 'subscribe', channel: 'news' });
    assert.deepEqual([refused.op, refused.code], ['error', 'forbidden_channel']);
    assert.equal((await client.request({ op: 'publish', channel: 'news', data: 1 })).code, 'forbidden_publish');
    assert.equal((await client.request({ op: 'publish', channel: 'demo:prices:AAPL', data: 1 })).code, 'forbidden_publish');
    assert.equal((await client.request({ op: 'subscribe', channel: 'demo:prices:AAPL' })).op, 'subscribed');
    // A demo token in the header makes this loopback request a client publish, not the backend's.
    const http = await post(server.url, { channel: 'news', data: 1 }, token);
    assert.equal(http.status, 403);
    assert.equal(await errorCode(http), 'forbidden_publish');
    const sse = await fetch(`${server.url}/v1/sse?channel=news&token=${token}`);
    assert.equal(sse.status, 403);
    assert.equal(await errorCode(sse), 'forbidden_channel');
    const presence = await fetch(`${server.url}/v1/presence?channel=news`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(presence.status, 403);
    // Nothing reached "news"; an anonymous client still reads it, and loopback still publishes to it.
    const anonymous: Subscription = await subscribeWs(server.url, { channels: ['news'] });
    open.push(anonymous);
    await publishOk(server.url, { channel: 'news', data: 'first' });
    assert.deepEqual((await anonymous.waitForMessages(1)).map((m) => m.data), ['first']);
    // SSE with the demo token on a demo channel is fine.
    const demoSse = new SseClient(`${server.url}/v1/sse?channel=demo:news&token=${token}`);
    open.push(demoSse);
    await demoSse.opened();
  });

  it('keeps one user per seed, so a refresh on the socket is accepted', async () => {
    const seed = 'seed-0123456789abcdef';
    const first = await issue(server.url, 'Ada', seed);
    const again = await issue(server.url, 'Ada', seed);
    assert.equal(again.user, first.user);
    const client = await authed(server.url, first.token);
    const refreshed = await client.request({ op: 'refresh', token: again.token });
    assert.deepEqual([refreshed.op, refreshed.sub], ['refreshed', first.user]);
  });

  it('refuses bad names and bodies with 400 and the JSON error shape', async () => {
    const cases: [unknown, string][] = [
      [{}, 'body_invalid'],
      [{ name: '' }, 'body_invalid'],
      [{ name: '   ' }, 'body_invalid'],
      [{ name: 'x'.repeat(41) }, 'body_invalid'],
      [{ name: 42 }, 'body_invalid'],
      [{ name: 'a\nb' }, 'body_invalid'],
      [{ name: 'Ada', admin: true }, 'body_invalid'],
      [{ name: 'Ada', seed: 'short' }, 'body_invalid'],
      [['Ada'], 'body_invalid'],
      ['{"name":', 'json_invalid'],
    ];
    for (const [body, code] of cases) {
      const res = await requestToken(server.url, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(await errorCode(res), code, JSON.stringify(body));
    }
    assert.equal((await issue(server.url, 'x'.repeat(40))).user.startsWith('demo-'), true, '40 characters is fine');
    const get = await fetch(`${server.url}/demo/token`);
    assert.equal(get.status, 405);
    assert.equal(await errorCode(get), 'method_not_allowed');
  });

  it('refuses tokens that only look like demo tokens', async () => {
    const forged = await signHs256({ sub: 'demo-x', channels: ['*'] }, { secret: SECRET });
    const [, payload, signature] = forged.split('.');
    const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'herald-demo' })).toString('base64url');
    const res = await fetch(`${server.url}/v1/sse?channel=demo:chat&token=${header}.${payload}.${signature}`);
    assert.equal(res.status, 401);
    assert.equal(await errorCode(res), 'token_invalid');
  });
});

describe('demo token rate limit', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('answers 429 rate_limited past a burst from one address', async () => {
    const server = await start();
    const answers = await Promise.all(Array.from({ length: 30 }, () => requestToken(server.url, { name: 'Flood' })));
    const statuses = answers.map((r) => r.status);
    const limited = answers.filter((r) => r.status === 429);
    // A burst of 10 is signed; the rest, sent at once, mostly is not (the bucket refills 10 a second).
    assert.ok(statuses.filter((s) => s === 200).length >= 10, statuses.join());
    assert.ok(limited.length >= 10, statuses.join());
    assert.equal(limited[0]!.headers.get('retry-after'), '1');
    assert.equal(await errorCode(limited[0]!), 'rate_limited');
    await Promise.all(answers.filter((r) => !r.bodyUsed).map((r) => r.body?.cancel()));
  });
});

describe('demo with tokens configured', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('is off unless asked for: /demo and /demo/token are 404', async () => {
    const server = await start({ tokenSecret: SECRET });
    const res = await requestToken(server.url, { name: 'Ada' });
    assert.equal(res.status, 404);
    assert.equal(await errorCode(res), 'not_found');
    const page = await fetch(`${server.url}/demo`);
    assert.equal(page.status, 404);
    assert.equal(await errorCode(page), 'not_found');
  });

  it('with demo: true, demo tokens (capped to demo:*) and configured tokens work side by side', async () => {
    const server = await start({ tokenSecret: SECRET, demo: true, anonymousChannels: ['public:*'] });
    assert.equal((await fetch(`${server.url}/demo`)).status, 200);
    const demo = await issue(server.url, 'Ada');
    const demoClient = await authed(server.url, demo.token);
    assert.equal((await demoClient.request({ op: 'subscribe', channel: 'demo:chat' })).op, 'subscribed');
    assert.equal((await demoClient.request({ op: 'subscribe', channel: 'public:x' })).code, 'forbidden_channel');
    const app = await authed(server.url, await signHs256({ sub: 'u1', channels: ['user:1'] }));
    assert.equal((await app.request({ op: 'subscribe', channel: 'user:1' })).op, 'subscribed');
    assert.equal((await app.request({ op: 'subscribe', channel: 'public:x' })).op, 'subscribed');
  });
});
