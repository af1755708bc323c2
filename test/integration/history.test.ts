// GET /v1/history: retained messages as envelopes, paged forwards and backwards, and a cursor that
// subscribes on from exactly where the answer ends: nothing missed, nothing twice, on every transport.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import { SUITE_TIMEOUT_MS, TRANSPORTS, errorCode, publishOk, type Envelope } from '../helpers/clients.js';
import { startTestServer } from '../helpers/server.js';
import { SECRET, signHs256 } from '../helpers/tokens.js';

interface HistoryAnswer {
  messages: Envelope[];
  offset: number;
  oldest: number;
  epoch: string;
  cursor: string;
}

const KEY = 'publish-key-for-tests';
const backend = { Authorization: `Bearer ${KEY}` };
let server: RunningHerald;
let n = 0;
const fresh = (prefix = 'public:'): string => `${prefix}h${++n}`;

before(async () => {
  server = await startTestServer({ tokenSecret: SECRET, anonymousChannels: ['public:*'], publishKey: KEY });
});
after(() => server.close());

async function history(query: Record<string, string | number | boolean>, headers: Record<string, string> = backend): Promise<HistoryAnswer> {
  const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
  const res = await fetch(`${server.url}/v1/history?${params}`, { headers });
  const text = await res.text();
  assert.equal(res.status, 200, `history ?${params} answered ${res.status}: ${text}`);
  return JSON.parse(text) as HistoryAnswer;
}

const offsets = (answer: HistoryAnswer): number[] => answer.messages.map((m) => m.offset);
const range = (from: number, to: number): number[] => Array.from({ length: Math.abs(to - from) + 1 }, (_, i) => (from <= to ? from + i : from - i));

async function publishRange(channel: string, from: number, to: number): Promise<void> {
  await publishOk(server.url, { messages: range(from, to).map((i) => ({ channel, data: { n: i } })) }, backend);
}

describe('history', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('pages backwards from the head, newest first, down to the oldest', async () => {
    const channel = fresh();
    await publishRange(channel, 1, 25);
    const first = await history({ channel, limit: 10, reverse: true });
    assert.deepEqual(offsets(first), range(25, 16));
    assert.equal(first.offset, 25);
    assert.equal(first.oldest, 1);
    const second = await history({ channel, limit: 10, reverse: true, before: 16 });
    assert.deepEqual(offsets(second), range(15, 6));
    const third = await history({ channel, limit: 10, reverse: true, before: 6 });
    assert.deepEqual(offsets(third), range(5, 1));
    assert.deepEqual(offsets(await history({ channel, limit: 10, reverse: true, before: 1 })), []);
    // Every message is a full envelope whose cursor resumes right after it.
    const m = first.messages[0]!;
    assert.deepEqual(Object.keys(m), ['channel', 'offset', 'epoch', 'data', 'cursor']);
    assert.deepEqual(m.data, { n: 25 });
    assert.equal(m.epoch, first.epoch);
  });

  it('pages forwards, each page\'s cursor continuing after its last message', async () => {
    const channel = fresh();
    await publishRange(channel, 1, 25);
    const pages: number[][] = [];
    let since = 0;
    for (;;) {
      const page = await history({ channel, limit: 10, since });
      if (page.messages.length === 0) break;
      pages.push(offsets(page));
      since = page.messages.at(-1)!.offset;
    }
    assert.deepEqual(pages, [range(1, 10), range(11, 20), range(21, 25)]);
    assert.deepEqual(offsets(await history({ channel, since: 5, before: 9 })), [6, 7, 8], 'both bounds');
    assert.deepEqual(offsets(await history({ channel, since: 20, reverse: true })), range(25, 21), 'reverse stops at since');
  });

  it('answers an empty channel with offset 0 and a cursor that starts it from the beginning', async () => {
    const channel = fresh();
    const empty = await history({ channel, reverse: true });
    assert.deepEqual(empty.messages, []);
    assert.equal(empty.offset, 0);
    const sub = await TRANSPORTS.find((t) => t.name === 'websocket')!.connect(server.url, { channels: [], cursor: empty.cursor });
    try {
      await publishOk(server.url, { channel, data: { n: 1 } }, backend);
      assert.deepEqual((await sub.waitForMessages(1)).map((e) => e.offset), [1]);
    } finally {
      await sub.close();
    }
  });

  for (const transport of TRANSPORTS) {
    it(`renders the last N, then subscribes from the cursor with no gap and no duplicate (${transport.name})`, async () => {
      const channel = fresh();
      await publishRange(channel, 1, 30);
      const last = await history({ channel, limit: 10, reverse: true });
      assert.deepEqual(offsets(last), range(30, 21));
      // Published between the history answer and the subscription: must come through the cursor.
      await publishRange(channel, 31, 33);
      const sub = await transport.connect(server.url, { channels: [], cursor: last.cursor });
      try {
        await publishRange(channel, 34, 35);
        const got = await sub.waitForMessages(5);
        assert.deepEqual(got.map((e) => e.offset), range(31, 35));
        assert.deepEqual(got.map((e) => (e.data as { n: number }).n), range(31, 35));
      } finally {
        await sub.close();
      }
    });
  }

  it('resumes from a forward page\'s cursor with the rest of history, then live', async () => {
    const channel = fresh();
    await publishRange(channel, 1, 12);
    const page = await history({ channel, limit: 5 });
    assert.deepEqual(offsets(page), range(1, 5));
    const sub = await TRANSPORTS[0]!.connect(server.url, { channels: [], cursor: page.cursor });
    try {
      await publishRange(channel, 13, 13);
      assert.deepEqual((await sub.waitForMessages(8)).map((e) => e.offset), range(6, 13));
    } finally {
      await sub.close();
    }
  });

  it('is allowed to the publish key, a token covering the channel, and anyone on an anonymous channel', async () => {
    const mine = fresh('user:');
    const pub = fresh('public:');
    await publishRange(mine, 1, 3);
    await publishRange(pub, 1, 2);
    const token = await signHs256({ sub: 'u', channels: [mine] });
    assert.equal((await history({ channel: mine }, { Authorization: `Bearer ${token}` })).messages.length, 3);
    assert.equal((await history({ channel: mine, token }, {})).messages.length, 3);
    assert.equal((await history({ channel: pub }, {})).messages.length, 2);
    for (const [query, headers] of [
      [{ channel: mine }, {}],
      [{ channel: fresh('user:') }, { Authorization: `Bearer ${token}` }],
    ] as const) {
      const res = await fetch(`${server.url}/v1/history?${new URLSearchParams(query)}`, { headers });
      assert.equal(res.status, 403);
      assert.equal(await errorCode(res), 'forbidden_channel');
    }
  });

  it('refuses bad parameters with 400', async () => {
    const cases: [string, string][] = [
      ['', 'channel_missing'],
      ['channel=bad%20name', 'channel_invalid'],
      ['channel=c&limit=0', 'limit_invalid'],
      ['channel=c&limit=1001', 'limit_invalid'],
      ['channel=c&since=-1', 'query_invalid'],
      ['channel=c&since=abc', 'query_invalid'],
      ['channel=c&before=1.5', 'query_invalid'],
      ['channel=c&reverse=maybe', 'query_invalid'],
    ];
    for (const [query, code] of cases) {
      const res = await fetch(`${server.url}/v1/history?${query}`, { headers: backend });
      assert.equal(res.status, 400, query);
      assert.equal(await errorCode(res), code, query);
    }
  });
});
