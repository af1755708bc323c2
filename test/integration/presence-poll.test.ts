// Presence join/leave events on long polling and JSONP, through a session (`session=` + `presence=1`):
// a held poll is woken by a join at once; events queue between polls (bounded, the oldest dropped and
// counted); a poll without a session gets none; seeing presence needs the presence claim.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import { SUITE_TIMEOUT_MS, waitUntil } from '../helpers/clients.js';
import { startTestServer } from '../helpers/server.js';
import { RawStream, pollRaw, postSessionOk, type JsonObject } from '../helpers/session-clients.js';
import { SECRET, signHs256 } from '../helpers/tokens.js';

let server: RunningHerald;
let roomCount = 0;
const freshRoom = (): string => `room:pp-${++roomCount}`;
const q = (entries: Record<string, string>): URLSearchParams => new URLSearchParams(entries);
const token = (user: string): Promise<string> => signHs256({ sub: user, channels: ['room:*'], presence: ['room:*'], info: { name: user } });
const join = (channel: string, user: string): JsonObject => ({ presence: 'join', channel, user, info: { name: user } });
const leave = (channel: string, user: string): JsonObject => ({ presence: 'leave', channel, user, info: { name: user } });

before(async () => {
  server = await startTestServer({ tokenSecret: SECRET });
});
after(() => server.close());

/** A poll that the test waits to be held before going on (its answer is wrapped: an async function would wait for it). */
async function heldPoll(params: URLSearchParams): Promise<{ answer: Promise<JsonObject> }> {
  const held = server.counters.connections.poll;
  const answer = pollRaw(server.url, params);
  await waitUntil(() => server.counters.connections.poll === held + 1, 'the poll to be held');
  return { answer };
}

for (const variant of ['long poll', 'JSONP'] as const) {
  describe(`presence events on ${variant}`, { timeout: SUITE_TIMEOUT_MS }, () => {
    const extra: Record<string, string> = variant === 'JSONP' ? { callback: 'app.onPoll' } : {};

    it('a held poll is woken by a join, then by a leave', async () => {
      const room = freshRoom();
      const ada = await token('ada');
      const first = await pollRaw(server.url, q({ channel: room, session: 'new', presence: '1', timeout: '0', token: ada, ...extra }));
      assert.deepEqual(first.presence, [join(room, 'ada')], 'its own join, as on streams');
      const id = first.session as string;
      const base = { cursor: first.cursor as string, session: id, presence: '1', timeout: '30', token: ada, ...extra };

      const startedMs = Date.now();
      const waitingForJoin = await heldPoll(q(base));
      const bob = await RawStream.open(server.url, '/v1/stream', q({ channel: room, token: await token('bob') }));
      try {
        const joined = await waitingForJoin.answer;
        assert.deepEqual(joined, { messages: [], cursor: first.cursor, session: id, presence: [join(room, 'bob')] });
        const waitingForLeave = await heldPoll(q(base));
        bob.close();
        const left = await waitingForLeave.answer;
        assert.deepEqual(left, { messages: [], cursor: first.cursor, session: id, presence: [leave(room, 'bob')] });
        assert.ok(Date.now() - startedMs < 5000, 'woken long before the 30 s timeout');
      } finally {
        bob.close();
      }
    });
  });
}

describe('presence events on polls: queueing and rights', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('queues events between polls, keeping the newest 256 and counting the dropped', async () => {
    const room = freshRoom();
    const ada = await token('ada');
    const first = await pollRaw(server.url, q({ channel: room, session: 'new', presence: '1', timeout: '0', token: ada }));
    const users = Array.from({ length: 260 }, (_, i) => `u${i}`);
    const tokens = await Promise.all(users.map(token));
    for (const t of tokens) await pollRaw(server.url, q({ channel: room, timeout: '0', token: t }));
    const answer = await pollRaw(server.url, q({ cursor: first.cursor as string, session: first.session as string, presence: '1', timeout: '0', token: ada }));
    assert.deepEqual(answer.presence, users.slice(4).map((u) => join(room, u)));
    assert.equal(answer.presenceDropped, 4);
    const after = await pollRaw(server.url, q({ cursor: first.cursor as string, session: first.session as string, presence: '1', timeout: '0', token: ada }));
    assert.deepEqual(Object.keys(after), ['messages', 'cursor', 'session'], 'the queue was cleared');
  });

  it('a poll without a session gets no events', async () => {
    const room = freshRoom();
    const ada = await token('ada');
    const first = await pollRaw(server.url, q({ channel: room, presence: '1', timeout: '0', token: ada }));
    await RawStream.open(server.url, '/v1/stream', q({ channel: room, token: await token('bob') })).then((bob) => bob.close());
    const next = await pollRaw(server.url, q({ cursor: first.cursor as string, presence: '1', timeout: '0', token: ada }));
    assert.deepEqual(Object.keys(first), ['messages', 'cursor']);
    assert.deepEqual(Object.keys(next), ['messages', 'cursor']);
  });

  it('POST presence: true listens to the channels it adds; unsubscribing stops the events', async () => {
    const [lobby, room] = [freshRoom(), freshRoom()];
    const ada = await token('ada');
    const auth = { Authorization: `Bearer ${ada}` };
    const first = await pollRaw(server.url, q({ channel: lobby, session: 'new', timeout: '0', token: ada }));
    const id = first.session as string;
    const added = await postSessionOk(server.url, id, { subscribe: [room], presence: true }, auth);
    const base = { cursor: `${first.cursor as string}.${added.cursor as string}`, session: id, timeout: '30', token: ada };
    // Its poll shows ada in the room's presence, and the session, listening there, hears her own join.
    const own = await pollRaw(server.url, q(base));
    assert.deepEqual(own.presence, [join(room, 'ada')]);
    const waiting = await heldPoll(q(base));
    const bob = await RawStream.open(server.url, '/v1/stream', q({ channel: `${lobby},${room}`, token: await token('bob') }));
    try {
      const woken = await waiting.answer;
      assert.deepEqual(woken.presence, [join(room, 'bob')], 'only the channel POST asked presence for');
      await postSessionOk(server.url, id, { unsubscribe: [room] }, auth);
      bob.close();
      await waitUntil(() => server.hub.subscriberCount(room) === 0, 'bob to leave');
      const next = await pollRaw(server.url, q({ ...base, cursor: woken.cursor as string, timeout: '0' }));
      assert.equal(next.presence, undefined, 'no events from a channel the session left');
    } finally {
      bob.close();
    }
  });

  it('presence=1 on a session poll needs the presence claim (403 forbidden_channel); ignored without a session', async () => {
    const room = freshRoom();
    const reader = await signHs256({ sub: 'reader', channels: ['room:*'] });
    const refused = await fetch(`${server.url}/v1/poll?${q({ channel: room, session: 'new', presence: '1', timeout: '0', token: reader })}`);
    assert.equal(refused.status, 403);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'forbidden_channel');
    const plain = await pollRaw(server.url, q({ channel: room, presence: '1', timeout: '0', token: reader }));
    assert.deepEqual(Object.keys(plain), ['messages', 'cursor']);
  });
});
