// Long polling, short polling and JSONP specifics, with fetch: held polls answered on publish, timeouts
// answered empty with a cursor that resumes exactly, batching limits, shared answers, parameter errors,
// and JSONP output that can only ever call the validated callback.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../../src/herald.js';
import { SUITE_TIMEOUT_MS, errorCode, pollOnce, publishNumbers, publishOk, runJsonp, waitUntil } from '../../helpers/clients.js';
import { startTestServer } from '../../helpers/server.js';

let server: RunningHerald;
let channelCount = 0;
const freshChannel = (): string => `poll-${++channelCount}`;

const query = (entries: Record<string, string>): URLSearchParams => new URLSearchParams(entries);

before(async () => {
  server = await startTestServer({ pollBatchLimit: 50 });
});
after(() => server.close());

describe('long poll', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('answers a held poll as soon as a message is published', async () => {
    const channel = freshChannel();
    const { cursor } = await pollOnce(server.url, query({ channel, timeout: '0' }));
    const held = server.counters.connections.poll;
    const startedMs = Date.now();
    const answer = pollOnce(server.url, query({ channel, cursor, timeout: '30' }));
    await waitUntil(() => server.counters.connections.poll === held + 1, 'the poll to be held');
    await publishNumbers(server.url, channel, [1]);
    const { messages, cursor: next } = await answer;
    assert.ok(Date.now() - startedMs < 5000, 'answered long before the 30 s timeout');
    assert.deepEqual(messages.map((m) => (m.kind === 'message' ? [m.offset, m.data] : m)), [[1, { n: 1 }]]);
    assert.equal(next, messages[0]!.cursor, 'the answer cursor is the last message cursor');
    assert.equal(server.counters.connections.poll, held, 'the held poll is released');
  });

  it('answers empty after the timeout, with a cursor that resumes exactly', async () => {
    const channel = freshChannel();
    await publishNumbers(server.url, channel, [1, 2]);
    const startedMs = Date.now();
    const empty = await pollOnce(server.url, query({ channel, timeout: '1' }));
    const elapsedMs = Date.now() - startedMs;
    assert.deepEqual(empty.messages, []);
    assert.ok(elapsedMs >= 900 && elapsedMs < 4000, `answered after the 1 s timeout (${elapsedMs} ms)`);
    await publishNumbers(server.url, channel, [3]);
    const next = await pollOnce(server.url, query({ cursor: empty.cursor, timeout: '0' }));
    assert.deepEqual(next.messages.map((m) => (m.kind === 'message' ? [m.channel, m.offset, m.data] : m)), [[channel, 3, { n: 3 }]]);
    // And the empty answer of a poll that did have a cursor returns that same position.
    const again = await pollOnce(server.url, query({ cursor: next.cursor, timeout: '0' }));
    assert.deepEqual(again.messages, []);
    assert.equal(again.cursor, next.cursor);
  });

  it('answers every poll held at the same position with the same body', async () => {
    const channel = freshChannel();
    const { cursor } = await pollOnce(server.url, query({ channel, timeout: '0' }));
    const held = server.counters.connections.poll;
    const polls = Array.from({ length: 5 }, () => fetch(`${server.url}/v1/poll?${query({ channel, cursor, timeout: '30' })}`).then((r) => r.text()));
    await waitUntil(() => server.counters.connections.poll === held + 5, 'five held polls');
    await publishOk(server.url, { messages: [{ channel, data: 'x' }, { channel, data: 'y' }] });
    const bodies = await Promise.all(polls);
    assert.equal(new Set(bodies).size, 1);
    const body = JSON.parse(bodies[0]!) as { messages: { data: unknown }[] };
    assert.deepEqual(body.messages.map((m) => m.data), ['x', 'y']);
  });

  it('answers a repeated query afresh once anything is published, and holds it again when nothing is', async () => {
    // Identical anonymous queries share what the first one led to, until the hub moves on.
    const channel = freshChannel();
    const other = freshChannel();
    const { cursor } = await pollOnce(server.url, query({ channel, timeout: '0' }));
    const same = query({ channel, cursor, timeout: '30' });
    const held = server.counters.connections.poll;
    const first = pollOnce(server.url, same);
    await waitUntil(() => server.counters.connections.poll === held + 1, 'the first poll to be held');
    const second = pollOnce(server.url, same);
    await waitUntil(() => server.counters.connections.poll === held + 2, 'the same query to be held too');
    await publishNumbers(server.url, channel, [1]);
    for (const answer of await Promise.all([first, second])) assert.deepEqual(answer.messages.map((m) => m.kind === 'message' && m.data), [{ n: 1 }]);
    assert.deepEqual((await pollOnce(server.url, same)).messages.map((m) => m.kind === 'message' && m.data), [{ n: 1 }], 'asked again: answered at once');
    await publishNumbers(server.url, other, [9]); // another channel moves the hub's version
    await publishNumbers(server.url, channel, [2]);
    assert.deepEqual((await pollOnce(server.url, same)).messages.map((m) => m.kind === 'message' && m.data), [{ n: 1 }, { n: 2 }], 'a newer answer after a publish');
    const short = query({ channel: other, cursor: (await pollOnce(server.url, query({ channel: other, since: 'beginning', timeout: '0' }))).cursor, timeout: '0' });
    assert.deepEqual((await pollOnce(server.url, short)).messages, []);
    await publishNumbers(server.url, other, [10]);
    assert.deepEqual((await pollOnce(server.url, short)).messages.map((m) => m.kind === 'message' && m.data), [{ n: 10 }], 'a short poll answered empty before sees the new message');
  });

  it('batches at most the limit per answer; the cursor continues from there', async () => {
    const channel = freshChannel();
    await publishNumbers(server.url, channel, Array.from({ length: 120 }, (_, i) => i + 1));
    const first = await pollOnce(server.url, query({ channel, since: 'beginning', timeout: '0' }));
    assert.equal(first.messages.length, 50, 'the configured pollBatchLimit');
    const second = await pollOnce(server.url, query({ cursor: first.cursor, timeout: '0', limit: '7' }));
    assert.deepEqual(second.messages.map((m) => (m.kind === 'message' ? m.offset : -1)), [51, 52, 53, 54, 55, 56, 57]);
    const rest = await pollOnce(server.url, query({ cursor: second.cursor, timeout: '5', limit: '1000' }));
    assert.deepEqual(rest.messages.map((m) => (m.kind === 'message' ? m.offset : -1)), Array.from({ length: 63 }, (_, i) => i + 58));
  });

  it('refuses bad timeout and limit values', async () => {
    for (const timeout of ['-1', '121', 'abc', '', '1e9']) {
      const res = await fetch(`${server.url}/v1/poll?${query({ channel: 'x', timeout })}`);
      assert.equal(res.status, 400, `timeout=${timeout}`);
      assert.equal(await errorCode(res), 'timeout_invalid');
    }
    for (const limit of ['0', '1001', '2.5', 'x']) {
      const res = await fetch(`${server.url}/v1/poll?${query({ channel: 'x', timeout: '0', limit })}`);
      assert.equal(res.status, 400, `limit=${limit}`);
      assert.equal(await errorCode(res), 'limit_invalid');
    }
  });

  it('releases a held poll whose client went away', async () => {
    const channel = freshChannel();
    const held = server.counters.connections.poll;
    const controller = new AbortController();
    const poll = fetch(`${server.url}/v1/poll?${query({ channel, timeout: '30' })}`, { signal: controller.signal });
    await waitUntil(() => server.counters.connections.poll === held + 1, 'the poll to be held');
    assert.equal(server.hub.subscriberCount(channel), 1);
    controller.abort();
    await assert.rejects(poll);
    await waitUntil(() => server.counters.connections.poll === held, 'the poll to be released');
    assert.equal(server.hub.subscriberCount(channel), 0);
  });
});

describe('short poll', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('answers at once with what lies past the cursor, or nothing', async () => {
    const channel = freshChannel();
    const startedMs = Date.now();
    const empty = await pollOnce(server.url, query({ channel, timeout: '0' }));
    assert.deepEqual(empty.messages, []);
    assert.ok(Date.now() - startedMs < 1000);
    await publishNumbers(server.url, channel, [1, 2]);
    const next = await pollOnce(server.url, query({ cursor: empty.cursor, timeout: '0' }));
    assert.deepEqual(next.messages.map((m) => (m.kind === 'message' ? m.offset : -1)), [1, 2]);
    const res = await fetch(`${server.url}/v1/poll?${query({ cursor: next.cursor, timeout: '0' })}`);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.deepEqual(await res.json(), { messages: [], cursor: next.cursor });
  });
});

describe('JSONP', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('answers application/javascript calling the callback with the poll answer', async () => {
    const channel = freshChannel();
    await publishNumbers(server.url, channel, [1]);
    const res = await fetch(`${server.url}/v1/poll?${query({ channel, since: 'beginning', timeout: '0', callback: 'herald.receive' })}`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/javascript/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const body = await res.text();
    assert.ok(body.startsWith('/**/herald.receive('), body);
    const answer = runJsonp(body, 'herald.receive') as { messages: { offset: number; data: unknown }[]; cursor: string };
    assert.deepEqual(answer.messages.map((m) => [m.offset, m.data]), [[1, { n: 1 }]]);
    assert.equal(typeof answer.cursor, 'string');
  });

  it('escapes data so the answer can never close a script or break a line', async () => {
    const channel = freshChannel();
    const nasty = '</script><script>alert(1)</script> <!-- & \u2028 \u2029 "quote" \\ ]]> -->';
    await publishOk(server.url, { channel, data: { [nasty]: nasty }, event: 'e' });
    const res = await fetch(`${server.url}/v1/poll?${query({ channel, since: 'beginning', timeout: '0', callback: 'cb' })}`);
    const body = await res.text();
    assert.ok(!/<\/script/i.test(body), `no "</script" in ${body}`);
    assert.ok(!/[<>\u2028\u2029]/.test(body), `no raw <, >, U+2028 or U+2029 in ${body}`);
    const answer = runJsonp(body, 'cb') as { messages: { data: unknown }[] };
    assert.deepEqual(answer.messages[0]!.data, { [nasty]: nasty });
  });

  it('answers a long poll with JSONP too, when a message arrives', async () => {
    const channel = freshChannel();
    const { cursor } = await pollOnce(server.url, query({ channel, timeout: '0' }));
    const held = server.counters.connections.poll;
    const answer = pollOnce(server.url, query({ cursor, timeout: '30', callback: 'cb' }));
    await waitUntil(() => server.counters.connections.poll === held + 1, 'the JSONP poll to be held');
    await publishOk(server.url, { channel, data: '</script>' });
    const { messages } = await answer;
    assert.deepEqual(messages.map((m) => (m.kind === 'message' ? m.data : m)), ['</script>']);
  });

  it('refuses callback names that are not plain identifier paths with 400 callback_invalid', async () => {
    const bad = ['', 'alert(1)', '1abc', 'a-b', 'a b', 'a..b', '.a', 'a.', 'eval', 'x.constructor', 'a.__proto__.b', 'Function', 'a[0]', 'a;b', 'x'.repeat(65), 'a.b.c.d.e.f', '<script>'];
    for (const callback of bad) {
      const res = await fetch(`${server.url}/v1/poll?${query({ channel: 'x', timeout: '0', callback })}`);
      assert.equal(res.status, 400, `callback=${JSON.stringify(callback)}`);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/, 'an error is never script');
      assert.equal(await errorCode(res), 'callback_invalid');
    }
    for (const callback of ['cb', '$', '_x1', 'app.onData', 'a.b.c.d.e', 'jQuery123_456']) {
      const res = await fetch(`${server.url}/v1/poll?${query({ channel: 'x', timeout: '0', callback })}`);
      assert.equal(res.status, 200, `callback=${callback}`);
      runJsonp(await res.text(), callback);
    }
  });
});
