// Listen sessions on long/short polling and JSONP, with fetch: every answer of a session poll names the
// session; POST /v1/session/{id} answers a held poll at once with the merged channels; without a held
// poll the change waits for the next poll and survives a lost answer; and the POST's refusals.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import { SUITE_TIMEOUT_MS, publishNumbers, waitUntil } from '../helpers/clients.js';
import { startTestServer } from '../helpers/server.js';
import { cursorPositions, offsets, pollRaw, postSession, postSessionOk, type JsonObject } from '../helpers/session-clients.js';
import { SECRET, signHs256 } from '../helpers/tokens.js';

const SESSION_ID = /^[A-Za-z0-9_-]{22}$/;
let server: RunningHerald;
let channelCount = 0;
const fresh = (): string => `sp-${++channelCount}`;
const q = (entries: Record<string, string>): URLSearchParams => new URLSearchParams(entries);

before(async () => {
  server = await startTestServer();
});
after(() => server.close());

/** Opens a poll session on `channel` with a short poll: its id and the answer's cursor. */
async function openPollSession(channel: string, extra: Record<string, string> = {}): Promise<{ id: string; cursor: string }> {
  const answer = await pollRaw(server.url, q({ channel, session: 'new', timeout: '0', ...extra }));
  assert.match(answer.session as string, SESSION_ID);
  return { id: answer.session as string, cursor: answer.cursor as string };
}

describe('sessions on polls', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('names the session in every answer, JSONP too; the shared body of other polls is unchanged', async () => {
    const channel = fresh();
    const first = await pollRaw(server.url, q({ channel, session: 'new', timeout: '0' }));
    assert.deepEqual(Object.keys(first), ['messages', 'cursor', 'session']);
    const id = first.session as string;
    const again = await pollRaw(server.url, q({ channel, session: id, cursor: first.cursor as string, timeout: '0' }));
    assert.equal(again.session, id, 'the same session');
    const jsonp = await pollRaw(server.url, q({ channel, session: 'new', timeout: '0', callback: 'app.onPoll' }));
    assert.match(jsonp.session as string, SESSION_ID);

    const cursor = first.cursor as string;
    const held = server.counters.connections.poll;
    const plain = fetch(`${server.url}/v1/poll?${q({ channel, cursor, timeout: '30' })}`).then((r) => r.text());
    const withSession = fetch(`${server.url}/v1/poll?${q({ channel, cursor, timeout: '30', session: id })}`).then((r) => r.text());
    await waitUntil(() => server.counters.connections.poll === held + 2, 'two held polls');
    await publishNumbers(server.url, channel, [1]);
    const [plainBody, sessionBody] = await Promise.all([plain, withSession]);
    assert.match(plainBody, /^\{"messages":\[\{"channel":.*\],"cursor":"[^"]+"\}$/);
    assert.equal(sessionBody, `${plainBody.slice(0, -1)},"session":"${id}"}`);
  });

  it('a POST answers the held poll at once, with a cursor naming the new set; the next poll continues it', async () => {
    const [a, b] = [fresh(), fresh()];
    const { id, cursor } = await openPollSession(a);
    await publishNumbers(server.url, b, [1]);
    const held = server.counters.connections.poll;
    const startedMs = Date.now();
    const poll = pollRaw(server.url, q({ channel: a, cursor, session: id, timeout: '30' }));
    await waitUntil(() => server.counters.connections.poll === held + 1, 'the poll to be held');
    const answer = await postSessionOk(server.url, id, { subscribe: [b] });
    assert.deepEqual(answer.channels, [a, b].sort());
    assert.deepEqual(cursorPositions(answer.cursor as string), { [b]: 1 });
    const woken = await poll;
    assert.ok(Date.now() - startedMs < 3000, `answered long before the 30 s timeout (${Date.now() - startedMs} ms)`);
    assert.deepEqual(woken, { messages: [], cursor: woken.cursor, session: id });
    assert.deepEqual(cursorPositions(woken.cursor as string), { [a]: 0, [b]: 1 });
    assert.equal(server.counters.connections.poll, held, 'released');

    await publishNumbers(server.url, b, [2]);
    const next = await pollRaw(server.url, q({ cursor: woken.cursor as string, session: id, timeout: '5' }));
    assert.deepEqual(offsets(next), [[b, 2]]);
    assert.equal(next.session, id);
  });

  it('a held poll woken by a POST gets what the new channel has past its start, and its reset notice', async () => {
    const [a, b] = [fresh(), fresh()];
    await publishNumbers(server.url, b, [1, 2]);
    const { id, cursor } = await openPollSession(a);
    const held = server.counters.connections.poll;
    const poll = pollRaw(server.url, q({ channel: a, cursor, session: id, timeout: '30' }));
    await waitUntil(() => server.counters.connections.poll === held + 1, 'the poll to be held');
    const staleCursor = Buffer.from(`${b}\notherEpoch\n1`).toString('base64url');
    const answer = await postSessionOk(server.url, id, { subscribe: [b], cursor: staleCursor });
    assert.equal(answer.cursor, staleCursor, 'the position asked for, so a lost answer still sees the reset');
    const woken = await poll;
    const messages = woken.messages as JsonObject[];
    assert.equal(messages[0]!.reset, true);
    assert.equal(messages[0]!.channel, b);
    assert.deepEqual(offsets(woken), [[b, 1], [b, 2]]);
    assert.deepEqual(cursorPositions(woken.cursor as string), { [a]: 0, [b]: 2 });
  });

  it('without a held poll, the change waits for the next poll, and a lost answer changes nothing', async () => {
    const [a, b] = [fresh(), fresh()];
    await publishNumbers(server.url, b, [1, 2]);
    const { id, cursor } = await openPollSession(a);
    const answer = await postSessionOk(server.url, id, { subscribe: [b], since: 'beginning' });
    assert.deepEqual(cursorPositions(answer.cursor as string), { [b]: 0 });

    // The client's poll does not know b yet: the session adds it, at the POST's start.
    const stale = q({ channel: a, cursor, session: id, timeout: '0' });
    const first = await pollRaw(server.url, stale);
    assert.deepEqual(offsets(first), [[b, 1], [b, 2]]);
    assert.deepEqual(cursorPositions(first.cursor as string), { [a]: 0, [b]: 2 });
    // That answer is lost: the same poll again gets the same.
    const repeated = await pollRaw(server.url, stale);
    assert.deepEqual(offsets(repeated), [[b, 1], [b, 2]]);
    // A poll whose cursor names b settles the addition...
    const settled = await pollRaw(server.url, q({ cursor: first.cursor as string, session: id, timeout: '0' }));
    assert.deepEqual(offsets(settled), []);
    assert.deepEqual(cursorPositions(settled.cursor as string), { [a]: 0, [b]: 2 });
    // ...so a poll leaving b out now really leaves it out.
    const without = await pollRaw(server.url, stale);
    assert.deepEqual(cursorPositions(without.cursor as string), { [a]: 0 });
  });

  it('a pending removal excludes the channel until a poll no longer lists it; a later subscribe wins', async () => {
    const [a, b] = [fresh(), fresh()];
    const opened = await pollRaw(server.url, q({ channel: `${a},${b}`, session: 'new', timeout: '0' }));
    const id = opened.session as string;
    const both = opened.cursor as string;
    assert.deepEqual(await postSessionOk(server.url, id, { unsubscribe: [a] }), { session: id, channels: [b] });
    await publishNumbers(server.url, a, [1]);
    const first = await pollRaw(server.url, q({ cursor: both, session: id, timeout: '0' }));
    assert.deepEqual(offsets(first), []);
    assert.deepEqual(Object.keys(cursorPositions(first.cursor as string)), [b]);
    const again = await pollRaw(server.url, q({ cursor: both, session: id, timeout: '0' }));
    assert.deepEqual(Object.keys(cursorPositions(again.cursor as string)), [b], 'still excluded (the answer may have been lost)');
    await pollRaw(server.url, q({ cursor: first.cursor as string, session: id, timeout: '0' })); // no a: settled
    const back = await pollRaw(server.url, q({ cursor: both, session: id, timeout: '0' }));
    assert.deepEqual(offsets(back), [[a, 1]], 'the client asked for a itself again');

    // Unsubscribe then subscribe again, before any poll: subscribed.
    const c = fresh();
    const session = await openPollSession(c);
    await postSessionOk(server.url, session.id, { unsubscribe: [c] });
    const resubscribed = await postSessionOk(server.url, session.id, { subscribe: [c] });
    assert.deepEqual(resubscribed.channels, [c]);
    await publishNumbers(server.url, c, [1]);
    const polled = await pollRaw(server.url, q({ cursor: session.cursor, session: session.id, timeout: '0' }));
    assert.deepEqual(offsets(polled), [[c, 1]]);
  });

  it('a session poll may list no channel; a POST then adds them', async () => {
    const a = fresh();
    const empty = await pollRaw(server.url, q({ session: 'new', timeout: '0' }));
    assert.deepEqual(empty, { messages: [], cursor: '', session: empty.session });
    const id = empty.session as string;
    const held = server.counters.connections.poll;
    const poll = pollRaw(server.url, q({ session: id, timeout: '30' }));
    await waitUntil(() => server.counters.connections.poll === held + 1, 'the poll to be held');
    await postSessionOk(server.url, id, { subscribe: [a] });
    const woken = await poll;
    assert.deepEqual(Object.keys(cursorPositions(woken.cursor as string)), [a]);
    const res = await fetch(`${server.url}/v1/poll?timeout=0`);
    assert.equal(res.status, 400, 'without a session a channel is still required');
    await res.text();
  });
});

describe('POST /v1/session/{id} refusals', { timeout: SUITE_TIMEOUT_MS }, () => {
  const code = async (id: string, body: unknown, headers: Record<string, string> = {}): Promise<[number, unknown]> => {
    const { status, body: answer } = await postSession(server.url, id, body, headers);
    return [status, (answer.error as { code?: string } | undefined)?.code];
  };

  it('400 for a bad body, and nothing applied', async () => {
    const a = fresh();
    const { id } = await openPollSession(a);
    assert.deepEqual(await code(id, '{"subscribe":'), [400, 'json_invalid']);
    assert.deepEqual(await code(id, '[]'), [400, 'body_invalid']);
    assert.deepEqual(await code(id, { subscribe: ['x'], extra: 1 }), [400, 'body_invalid']);
    assert.deepEqual(await code(id, { subscribe: 'x' }), [400, 'body_invalid']);
    assert.deepEqual(await code(id, { subscribe: [1] }), [400, 'body_invalid']);
    assert.deepEqual(await code(id, { unsubscribe: [{}] }), [400, 'body_invalid']);
    assert.deepEqual(await code(id, { subscribe: ['bad channel'] }), [400, 'channel_invalid']);
    assert.deepEqual(await code(id, { subscribe: ['x'], unsubscribe: ['x'] }), [400, 'body_invalid']);
    assert.deepEqual(await code(id, { subscribe: ['x'], since: 'tail' }), [400, 'since_invalid']);
    assert.deepEqual(await code(id, { subscribe: ['x'], cursor: 'not a cursor' }), [400, 'cursor_invalid']);
    assert.deepEqual(await code(id, { subscribe: ['x'], cursor: 5 }), [400, 'body_invalid']);
    assert.deepEqual(await code(id, { subscribe: ['x'], presence: 'yes' }), [400, 'body_invalid']);
    const many = Array.from({ length: 256 }, (_, i) => `${a}-${i}`);
    assert.deepEqual(await code(id, { subscribe: many }), [400, 'too_many_channels'], '256 new + the 1 it has');
    assert.deepEqual(await postSessionOk(server.url, id, {}), { session: id, channels: [a] });
    const res = await fetch(`${server.url}/v1/session/${id}`);
    assert.equal(res.status, 405);
    await res.text();
  });

  it('404 session_not_found for an unknown id', async () => {
    assert.deepEqual(await code('AAAAAAAAAAAAAAAAAAAAAA', { subscribe: ['x'] }), [404, 'session_not_found']);
    assert.deepEqual(await code('', {}), [404, 'session_not_found']);
  });

  it('404 once the session expired after --session-idle', async () => {
    const shortIdle = await startTestServer({ sessionIdleMs: 300 });
    try {
      const answer = await pollRaw(shortIdle.url, q({ channel: 'x', session: 'new', timeout: '0' }));
      const id = answer.session as string;
      assert.equal((await postSession(shortIdle.url, id, {})).status, 200);
      assert.equal(shortIdle.counters.sessions, 1);
      await waitUntil(() => shortIdle.counters.sessions === 0, 'the session to expire', 3000);
      const { status, body } = await postSession(shortIdle.url, id, { subscribe: ['y'] });
      assert.deepEqual([status, (body.error as { code: string }).code], [404, 'session_not_found']);
      const reopened = await pollRaw(shortIdle.url, q({ channel: 'x', session: id, timeout: '0' }));
      assert.notEqual(reopened.session, id, 'an expired id gets a new session');
    } finally {
      await shortIdle.close();
    }
  });
});

describe('sessions with tokens', { timeout: SUITE_TIMEOUT_MS }, () => {
  let tokenServer: RunningHerald;
  before(async () => {
    tokenServer = await startTestServer({ tokenSecret: SECRET });
  });
  after(() => tokenServer.close());

  it("404 for another user's session, and its polls get a new one", async () => {
    const ada = await signHs256({ sub: 'ada', channels: ['room:*'] });
    const bob = await signHs256({ sub: 'bob', channels: ['room:*'] });
    const opened = await pollRaw(tokenServer.url, q({ channel: 'room:1', session: 'new', timeout: '0', token: ada }));
    const id = opened.session as string;
    const refused = await postSession(tokenServer.url, id, { subscribe: ['room:2'] }, { Authorization: `Bearer ${bob}` });
    assert.deepEqual([refused.status, (refused.body.error as { code: string }).code], [404, 'session_not_found']);
    const anonymous = await postSession(tokenServer.url, id, {});
    assert.equal(anonymous.status, 404, 'nor anonymous');
    const bobs = await pollRaw(tokenServer.url, q({ channel: 'room:1', session: id, timeout: '0', token: bob }));
    assert.notEqual(bobs.session, id);
    const ok = await postSession(tokenServer.url, id, {}, { Authorization: `Bearer ${ada}` });
    assert.deepEqual(ok, { status: 200, body: { session: id, channels: ['room:1'] } });
    const viaQuery = await fetch(`${tokenServer.url}/v1/session/${id}?token=${ada}`, { method: 'POST', body: '{}' });
    assert.equal(viaQuery.status, 200, '?token= works as on listen requests');
    await viaQuery.text();
  });

  it('403 forbidden_channel applies nothing of the request', async () => {
    const ada = await signHs256({ sub: 'ada', channels: ['room:*'] });
    const auth = { Authorization: `Bearer ${ada}` };
    const opened = await pollRaw(tokenServer.url, q({ channel: 'room:a,room:b', session: 'new', timeout: '0', token: ada }));
    const id = opened.session as string;
    const refused = await postSession(tokenServer.url, id, { subscribe: ['room:c', 'secret'], unsubscribe: ['room:a'] }, auth);
    assert.deepEqual([refused.status, (refused.body.error as { code: string }).code], [403, 'forbidden_channel']);
    const presence = await postSession(tokenServer.url, id, { subscribe: ['room:c'], presence: true }, auth);
    assert.deepEqual([presence.status, (presence.body.error as { code: string }).code], [403, 'forbidden_channel'], 'no presence claim');
    assert.deepEqual(await postSessionOk(tokenServer.url, id, {}, auth), { session: id, channels: ['room:a', 'room:b'] });
    const polled = await pollRaw(tokenServer.url, q({ cursor: opened.cursor as string, session: id, timeout: '0', token: ada }));
    assert.deepEqual(Object.keys(cursorPositions(polled.cursor as string)).sort(), ['room:a', 'room:b']);
  });
});
