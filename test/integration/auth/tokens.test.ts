// Tokens on every transport, with real clients: a valid token subscribes where its claim allows; an
// expired, not-yet-valid, wrongly signed, wrong-audience or alg:none token is refused with 401; a
// channel outside the claim (or not anonymous, without a token) with 403 forbidden_channel.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../../src/herald.js';
import {
  SUITE_TIMEOUT_MS,
  TRANSPORTS,
  WsClient,
  errorCode,
  publishOk,
  wsUpgradeOutcome,
  type Subscription,
} from '../../helpers/clients.js';
import { startTestServer } from '../../helpers/server.js';
import { SECRET, signHs256, unsignedToken, type Grant } from '../../helpers/tokens.js';

const KEY = 'publish-key-for-tests';
const backend = { Authorization: `Bearer ${KEY}` };
const nowS = (): number => Math.floor(Date.now() / 1000);
const token = (claims: Grant, secret?: string): Promise<string> => signHs256({ aud: 'herald', ...claims }, { secret });

let server: RunningHerald;
const open: { close(): Promise<void> | void }[] = [];
let n = 0;
const fresh = (prefix: string): string => `${prefix}${++n}`;

before(async () => {
  server = await startTestServer({ tokenSecret: SECRET, tokenAudience: 'herald', anonymousChannels: ['public:*'], publishKey: KEY });
});
after(async () => {
  await Promise.all(open.map((c) => c.close()));
  await server.close();
});

function params(channel: string, tokenValue?: string): URLSearchParams {
  const p = new URLSearchParams({ channel });
  if (tokenValue !== undefined) p.set('token', tokenValue);
  return p;
}

describe('tokens on every transport', { timeout: SUITE_TIMEOUT_MS }, () => {
  for (const transport of TRANSPORTS) {
    describe(transport.name, () => {
      it('delivers on channels the token allows, and on anonymous channels without one', async () => {
        const mine = fresh('user:');
        const pub = fresh('public:');
        const sub: Subscription = await transport.connect(server.url, { channels: [mine], token: await token({ sub: 'u1', channels: [mine] }) });
        const anon = await transport.connect(server.url, { channels: [pub] });
        open.push(sub, anon);
        await publishOk(server.url, { channel: mine, data: 'private' }, backend);
        await publishOk(server.url, { channel: pub, data: 'public' }, backend);
        assert.equal((await sub.waitForMessages(1))[0]!.data, 'private');
        assert.equal((await anon.waitForMessages(1))[0]!.data, 'public');
      });

      it('refuses a channel outside the claim, and a private channel without a token, with 403', async () => {
        const other = fresh('user:');
        const mine = await token({ sub: 'u1', channels: ['user:mine'] });
        assert.deepEqual(await transport.refusal(server.url, params(other, mine)), { status: 403, code: 'forbidden_channel' });
        assert.deepEqual(await transport.refusal(server.url, params(other)), { status: 403, code: 'forbidden_channel' });
      });

      it('refuses bad tokens with 401: expired, not yet valid, wrong signature, wrong audience, alg none', async () => {
        const channel = fresh('user:');
        const grant = { sub: 'u1', channels: [channel] };
        const cases: [string, string, string][] = [
          ['expired', await token({ ...grant, exp: nowS() - 60 }), 'token_expired'],
          ['not yet valid', await token({ ...grant, nbf: nowS() + 60 }), 'token_invalid'],
          ['wrong signature', await token(grant, 'some-other-secret-at-least-32-bytes-long'), 'token_invalid'],
          ['wrong audience', await signHs256({ ...grant, aud: 'someone-else' }), 'token_invalid'],
          ['alg none', unsignedToken({ ...grant, aud: 'herald' }), 'token_invalid'],
          ['garbage', 'abc.def.ghi', 'token_invalid'],
        ];
        for (const [what, bad, code] of cases) {
          assert.deepEqual(await transport.refusal(server.url, params(channel, bad)), { status: 401, code }, what);
        }
        // An anonymous channel with a bad token is refused too: a bad token is never downgraded.
        assert.deepEqual(await transport.refusal(server.url, params(fresh('public:'), cases[0]![1])), { status: 401, code: 'token_expired' });
      });
    });
  }
});

describe('where the token goes', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('takes Authorization: Bearer on HTTP transports, with the WWW-Authenticate of RFC 6750 on refusal', async () => {
    const channel = fresh('user:');
    const good = await token({ sub: 'h', channels: [channel] });
    await publishOk(server.url, { channel, data: 1 }, backend);
    const res = await fetch(`${server.url}/v1/poll?channel=${channel}&since=beginning&timeout=0`, { headers: { Authorization: `Bearer ${good}` } });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { messages: unknown[] }).messages.length, 1);
    const stream = await fetch(`${server.url}/v1/stream?channel=${channel}`, { headers: { Authorization: `Bearer ${good}` } });
    assert.equal(stream.status, 200);
    await stream.body!.cancel();
    const expired = await token({ sub: 'h', channels: [channel], exp: nowS() - 60 });
    const refused = await fetch(`${server.url}/v1/sse?channel=${channel}`, { headers: { Authorization: `Bearer ${expired}` } });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
    assert.equal(await errorCode(refused), 'token_expired');
  });

  it('lets the backend subscribe anywhere with the publish key in the header (never in the URL)', async () => {
    const channel = fresh('user:');
    const res = await fetch(`${server.url}/v1/poll?channel=${channel}&timeout=0`, { headers: backend });
    assert.equal(res.status, 200);
    const inUrl = await fetch(`${server.url}/v1/poll?channel=${channel}&timeout=0&token=${KEY}`);
    assert.equal(inUrl.status, 401);
    assert.equal(await errorCode(inUrl), 'token_invalid');
    assert.deepEqual(await wsUpgradeOutcome(server.url, { query: params(channel), headers: backend }), { status: 101 });
  });

  it('takes the token on the WebSocket URL and as the Authorization of the upgrade', async () => {
    const channel = fresh('user:');
    const good = await token({ sub: 'w', channels: [channel] });
    assert.deepEqual(await wsUpgradeOutcome(server.url, { query: params(channel, good) }), { status: 101 });
    assert.deepEqual(await wsUpgradeOutcome(server.url, { query: params(channel), headers: { Authorization: `Bearer ${good}` } }), { status: 101 });
    assert.deepEqual(await wsUpgradeOutcome(server.url, { query: params(channel) }), { status: 403, code: 'forbidden_channel' });
  });
});

describe('WebSocket auth frames', { timeout: SUITE_TIMEOUT_MS }, () => {
  async function connect(query?: URLSearchParams): Promise<WsClient> {
    const client = await WsClient.connect(server.url, { query });
    open.push(client);
    return client;
  }

  it('refuses a channel outside the claim with an error op for that channel only; the others keep delivering', async () => {
    const mine = fresh('user:');
    const theirs = fresh('user:');
    const client = await connect();
    const auth = await client.request({ op: 'auth', token: await token({ sub: 'w1', channels: [mine] }) });
    assert.equal(auth.op, 'authenticated');
    assert.equal(auth.sub, 'w1');
    assert.equal(typeof auth.exp, 'number');
    assert.equal((await client.request({ op: 'subscribe', channel: mine })).op, 'subscribed');
    const refused = await client.request({ op: 'subscribe', channel: theirs });
    assert.deepEqual({ op: refused.op, code: refused.code, channel: refused.channel }, { op: 'error', code: 'forbidden_channel', channel: theirs });
    await publishOk(server.url, { channel: theirs, data: 'not for w1' }, backend);
    await publishOk(server.url, { channel: mine, data: 'for w1' }, backend);
    const message = await client.frames.find((f) => f.op === 'message', 'a message');
    assert.equal(message.channel, mine);
    assert.equal(message.data, 'for w1');
    assert.equal(client.ws.readyState, client.ws.OPEN);
    assert.equal(client.frames.items.filter((f) => f.op === 'message').length, 1);
  });

  it('runs frames sent right after auth once the token is verified, in order', async () => {
    const channel = fresh('user:');
    const client = await connect();
    client.sendRaw(JSON.stringify({ op: 'auth', token: await token({ sub: 'w2', channels: [channel] }), id: 'a' }));
    client.sendRaw(JSON.stringify({ op: 'subscribe', channel, id: 's' }));
    client.sendRaw(JSON.stringify({ op: 'ping', id: 'p' }));
    await client.frames.until((frames) => frames.length >= 3, 'three replies');
    assert.deepEqual(client.frames.items.map((f) => `${f.op}:${String(f.id)}`), ['authenticated:a', 'subscribed:s', 'pong:p']);
  });

  it('answers a bad auth token with an error op and keeps the socket, anonymous', async () => {
    const client = await connect();
    for (const bad of [unsignedToken({ sub: 'x', channels: ['*'], aud: 'herald' }), await token({ sub: 'x', exp: nowS() - 60 }), 42]) {
      const reply = await client.request({ op: 'auth', token: bad });
      assert.equal(reply.op, 'error');
      assert.equal(reply.code, bad === 42 ? 'token_invalid' : typeof bad === 'string' && bad.endsWith('.') ? 'token_invalid' : 'token_expired');
    }
    assert.equal((await client.request({ op: 'subscribe', channel: fresh('user:') })).code, 'forbidden_channel');
    assert.equal((await client.request({ op: 'subscribe', channel: fresh('public:') })).op, 'subscribed');
  });

  it('refuses a refresh for another user, and drops subscriptions a narrower token no longer covers', async () => {
    const a = fresh('user:');
    const b = fresh('user:');
    const client = await connect();
    await client.request({ op: 'auth', token: await token({ sub: 'w3', channels: [a, b] }) });
    await client.request({ op: 'subscribe', channel: a });
    await client.request({ op: 'subscribe', channel: b });
    const other = await client.request({ op: 'refresh', token: await token({ sub: 'someone-else', channels: [a, b] }) });
    assert.equal(other.code, 'token_invalid');
    const narrower = await client.request({ op: 'refresh', token: await token({ sub: 'w3', channels: [a] }) });
    assert.equal(narrower.op, 'refreshed');
    const dropped = await client.frames.find((f) => f.op === 'error' && f.channel === b, 'the error op for the dropped channel');
    assert.equal(dropped.code, 'forbidden_channel');
    await publishOk(server.url, { channel: b, data: 'gone' }, backend);
    await publishOk(server.url, { channel: a, data: 'kept' }, backend);
    const message = await client.frames.find((f) => f.op === 'message', 'a message');
    assert.equal(message.channel, a);
  });
});

describe('without token verification configured', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('lets anyone subscribe to any channel, and refuses tokens it cannot check', async () => {
    const plain = await startTestServer();
    try {
      const ok = await fetch(`${plain.url}/v1/poll?channel=anything&timeout=0`);
      assert.equal(ok.status, 200);
      const withToken = await fetch(`${plain.url}/v1/poll?channel=anything&timeout=0&token=${await token({ sub: 'x' })}`);
      assert.equal(withToken.status, 401);
      assert.equal(await errorCode(withToken), 'token_invalid');
    } finally {
      await plain.close();
    }
  });

  it('honours an explicit --anonymous-channels list', async () => {
    const limited = await startTestServer({ anonymousChannels: ['news'] });
    try {
      assert.equal((await fetch(`${limited.url}/v1/poll?channel=news&timeout=0`)).status, 200);
      const refused = await fetch(`${limited.url}/v1/poll?channel=other&timeout=0`);
      assert.equal(refused.status, 403);
      assert.equal(await errorCode(refused), 'forbidden_channel');
    } finally {
      await limited.close();
    }
  });
});
