// Listen sessions on the streams (SSE with the eventsource package, NDJSON and iframe with fetch): the
// session is announced first; POST /v1/session/{id} changes the open stream's channels at once, with an
// in-band marker before anything of the new channels; Last-Event-ID taken after the marker resumes every
// channel; a session whose stream closed is released after --session-idle.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import { SUITE_TIMEOUT_MS, SseClient, publishNumbers, waitUntil, type SseEvent } from '../helpers/clients.js';
import { startTestServer } from '../helpers/server.js';
import { RawStream, cursorPositions, postSessionOk, type JsonObject } from '../helpers/session-clients.js';

const SESSION_ID = /^[A-Za-z0-9_-]{22}$/;
let server: RunningHerald;
let channelCount = 0;
const fresh = (): string => `ss-${++channelCount}`;
const open: { close(): void }[] = [];

before(async () => {
  server = await startTestServer();
});
after(async () => {
  for (const client of open) client.close();
  await server.close();
});

function sse(query: string, headers: Record<string, string> = {}): SseClient {
  const client = new SseClient(`${server.url}/v1/sse?${query}`, { headers });
  open.push(client);
  return client;
}

async function stream(path: '/v1/stream' | '/v1/iframe', params: Record<string, string>): Promise<RawStream> {
  const client = await RawStream.open(server.url, path, new URLSearchParams(params));
  open.push(client);
  return client;
}

const parsed = (event: SseEvent): JsonObject => JSON.parse(event.data) as JsonObject;
const isMessage = (event: SseEvent): boolean => typeof parsed(event).offset === 'number';
const messagesOf = (client: SseClient): [unknown, unknown][] =>
  client.events.items.filter(isMessage).map((e) => [parsed(e).channel, parsed(e).offset]);

describe('sessions on streams', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('announces the session first on SSE, before the opening block; not at all without session=', async () => {
    const channel = fresh();
    const client = sse(`channel=${channel}&session=new`);
    const event = await client.events.find((e) => e.type === 'session', 'the session event');
    const id = (parsed(event) as { session: string }).session;
    assert.match(id, SESSION_ID);
    assert.ok(client.raw[0]!.startsWith(`event: session\ndata: {"session":"${id}"}\n\n:ok\nretry: `), client.raw[0]);
    const plain = sse(`channel=${channel}`);
    await plain.opened();
    await waitUntil(() => (plain.raw[0] ?? '').includes('\n\n'), 'the opening block');
    assert.ok(plain.raw[0]!.startsWith(':ok\nretry: '), plain.raw[0]);
  });

  it('announces the session first on the NDJSON stream and the iframe', async () => {
    const channel = fresh();
    const ndjson = await stream('/v1/stream', { channel, session: 'new' });
    const first = await ndjson.objects.find(() => true, 'the first line');
    assert.deepEqual(Object.keys(first), ['session']);
    assert.match(first.session as string, SESSION_ID);
    assert.ok(ndjson.raw.startsWith(`{"session":"${first.session as string}"}\n`), ndjson.raw);

    const iframe = await stream('/v1/iframe', { channel, session: 'new', callback: 'cb' });
    const call = await iframe.objects.find(() => true, 'the first script');
    assert.match(call.session as string, SESSION_ID);
    assert.notEqual(call.session, first.session);
    const afterPadding = iframe.raw.slice(iframe.raw.indexOf('-->') + 4);
    assert.ok(afterPadding.startsWith(`<script>parent.cb({"session":"${call.session as string}"});</script>\n`), afterPadding);
  });

  it('POST subscribe on an open SSE stream: marker, then the new channel; the other channel loses and repeats nothing', async () => {
    const [a, b] = [fresh(), fresh()];
    await publishNumbers(server.url, b, [1]); // before the subscription: not delivered (head)
    const client = sse(`channel=${a}&session=new`);
    const id = (parsed(await client.events.find((e) => e.type === 'session', 'session')) as { session: string }).session;
    await client.opened();
    await publishNumbers(server.url, a, [1]);
    await client.events.until((items) => items.filter(isMessage).length === 1, 'a:1');

    const answer = await postSessionOk(server.url, id, { subscribe: [b] });
    assert.deepEqual(Object.keys(answer).sort(), ['channels', 'cursor', 'session']);
    assert.equal(answer.session, id);
    assert.deepEqual(answer.channels, [a, b].sort());
    assert.deepEqual(cursorPositions(answer.cursor as string), { [b]: 1 }, 'the cursor names only the new channel');

    const marker = await client.events.find((e) => e.type === 'subscribed', 'the marker');
    const data = parsed(marker);
    assert.deepEqual(data, { subscribed: [b], unsubscribed: [], cursor: marker.lastEventId });
    assert.deepEqual(cursorPositions(marker.lastEventId), { [a]: 1, [b]: 1 });
    assert.ok(client.raw[0]!.includes(`event: subscribed\ndata: ${JSON.stringify(data)}\nid: ${marker.lastEventId}\n\n`));

    await publishNumbers(server.url, a, [2]);
    await publishNumbers(server.url, b, [2]);
    await client.events.until((items) => items.filter(isMessage).length === 3, 'a:2 and b:2');
    assert.deepEqual(messagesOf(client), [[a, 1], [a, 2], [b, 2]]);
    const last = client.events.items.filter(isMessage).at(-1)!;
    assert.deepEqual(cursorPositions(last.lastEventId), { [a]: 2, [b]: 2 });
    const markerIndex = client.events.items.indexOf(marker);
    assert.ok(client.events.items.findIndex((e) => isMessage(e) && parsed(e).channel === b) > markerIndex, 'b only after the marker');
    client.close();

    // Resuming from the marker's id (what EventSource would send): both channels, from there.
    await publishNumbers(server.url, b, [3]);
    const resumed = sse('', { 'Last-Event-ID': marker.lastEventId });
    await resumed.events.until((items) => items.filter(isMessage).length === 3, 'a:2, b:2, b:3');
    assert.deepEqual(messagesOf(resumed).sort(), [[a, 2], [b, 2], [b, 3]].sort());
  });

  it('POST with a cursor replays the new channel from it; since: beginning from the oldest', async () => {
    const [a, b, c] = [fresh(), fresh(), fresh()];
    await publishNumbers(server.url, b, [1, 2, 3]);
    await publishNumbers(server.url, c, [1, 2]);
    const history = (await (await fetch(`${server.url}/v1/history?channel=${b}`)).json()) as { messages: { cursor: string }[] };
    const afterFirst = history.messages[0]!.cursor;
    const client = sse(`channel=${a}&session=new`);
    const id = (parsed(await client.events.find((e) => e.type === 'session', 'session')) as { session: string }).session;
    await client.opened();

    const answer = await postSessionOk(server.url, id, { subscribe: [b, c], cursor: afterFirst, since: 'beginning' });
    assert.deepEqual(cursorPositions(answer.cursor as string), { [b]: 1, [c]: 0 });
    await client.events.until((items) => items.filter(isMessage).length === 4, 'b:2, b:3, c:1, c:2');
    assert.deepEqual(messagesOf(client), [[b, 2], [b, 3], [c, 1], [c, 2]]);
    const marker = client.events.items.findIndex((e) => e.type === 'subscribed');
    assert.equal(marker, client.events.items.findIndex((e) => e.type !== 'session'), 'the marker comes first');
    assert.deepEqual(parsed(client.events.items[marker]!).subscribed, [b, c].sort());
  });

  it('POST subscribing a channel the stream has changes nothing for it', async () => {
    const a = fresh();
    await publishNumbers(server.url, a, [1, 2]);
    const client = sse(`channel=${a}&session=new&since=beginning`);
    const id = (parsed(await client.events.find((e) => e.type === 'session', 'session')) as { session: string }).session;
    await client.events.until((items) => items.filter(isMessage).length === 2, 'a:1, a:2');
    const answer = await postSessionOk(server.url, id, { subscribe: [a], since: 'beginning' });
    assert.deepEqual(answer, { session: id, channels: [a] }, 'no cursor: nothing new');
    await publishNumbers(server.url, a, [3]);
    await client.events.until((items) => items.filter(isMessage).length === 3, 'a:3');
    assert.deepEqual(messagesOf(client), [[a, 1], [a, 2], [a, 3]]);
  });

  it('POST unsubscribe stops delivery of that channel only', async () => {
    const [a, b] = [fresh(), fresh()];
    const client = sse(`channel=${a},${b}&session=new`);
    const id = (parsed(await client.events.find((e) => e.type === 'session', 'session')) as { session: string }).session;
    await client.opened();
    const answer = await postSessionOk(server.url, id, { unsubscribe: [b] });
    assert.deepEqual(answer, { session: id, channels: [a] });
    const marker = await client.events.find((e) => e.type === 'subscribed', 'the marker');
    assert.deepEqual(parsed(marker), { subscribed: [], unsubscribed: [b], cursor: marker.lastEventId });
    assert.deepEqual(Object.keys(cursorPositions(marker.lastEventId)), [a]);
    assert.equal(server.hub.subscriberCount(b), 0, 'b is detached');
    await publishNumbers(server.url, b, [1]);
    await publishNumbers(server.url, a, [1]);
    await client.events.until((items) => items.filter(isMessage).length === 1, 'a:1');
    assert.deepEqual(messagesOf(client), [[a, 1]]);
  });

  it('NDJSON and iframe streams get the marker, then the new channel', async () => {
    for (const path of ['/v1/stream', '/v1/iframe'] as const) {
      const [a, b] = [fresh(), fresh()];
      const client = await stream(path, { channel: a, session: 'new', ...(path === '/v1/iframe' ? { callback: 'cb' } : {}) });
      const id = (await client.objects.find((o) => typeof o.session === 'string', 'session')).session as string;
      const answer = await postSessionOk(server.url, id, { subscribe: [b] });
      assert.deepEqual(answer.channels, [a, b].sort());
      await publishNumbers(server.url, b, [1]);
      await client.objects.until((items) => items.some((o) => o.offset === 1), `${path}: b:1`);
      const [announce, marker, message] = client.objects.items;
      assert.equal(announce!.session, id);
      assert.deepEqual(marker, { subscribed: [b], unsubscribed: [], cursor: marker!.cursor });
      assert.deepEqual(cursorPositions(marker!.cursor as string), { [a]: 0, [b]: 0 });
      assert.equal(message!.channel, b);
      assert.deepEqual(cursorPositions(message!.cursor as string), { [a]: 0, [b]: 1 });
      client.close();
    }
  });

  it('a POST while no stream holds the session applies to the next stream that takes it', async () => {
    const [a, b] = [fresh(), fresh()];
    const first = await stream('/v1/stream', { channel: a, session: 'new' });
    const id = (await first.objects.find((o) => typeof o.session === 'string', 'session')).session as string;
    first.close();
    await waitUntil(() => server.hub.subscriberCount(a) === 0, 'the first stream to close');
    await publishNumbers(server.url, b, [1]);
    const answer = await postSessionOk(server.url, id, { subscribe: [b], since: 'beginning' });
    assert.deepEqual(answer.channels, [a, b].sort());
    const second = await stream('/v1/stream', { channel: a, session: id });
    await second.objects.until((items) => items.some((o) => o.channel === b), 'b:1 on the new stream');
    assert.equal(second.objects.items[0]!.session, id, 'the same session');
    assert.deepEqual(second.messages().map((m) => [m.channel, m.offset]), [[b, 1]]);
  });

  it('a new session for another user\'s or an unknown id, never an error', async () => {
    const channel = fresh();
    const client = await stream('/v1/stream', { channel, session: 'no-such-session' });
    const announced = (await client.objects.find((o) => typeof o.session === 'string', 'session')).session as string;
    assert.match(announced, SESSION_ID);
  });
});

describe('session expiry on streams', { timeout: SUITE_TIMEOUT_MS }, () => {
  let shortIdle: RunningHerald;
  before(async () => {
    shortIdle = await startTestServer({ sessionIdleMs: 300 });
  });
  after(() => shortIdle.close());

  it('lives while its stream is open, and is released --session-idle after it closes', async () => {
    const client = await RawStream.open(shortIdle.url, '/v1/stream', new URLSearchParams({ channel: 'x', session: 'new' }));
    open.push(client);
    const id = (await client.objects.find((o) => typeof o.session === 'string', 'session')).session as string;
    assert.equal(shortIdle.counters.sessions, 1);
    // A poll session made now idles at once: once it has expired, the idle time has passed for both.
    const polled = await fetch(`${shortIdle.url}/v1/poll?channel=x&session=new&timeout=0`);
    assert.equal(polled.status, 200);
    await polled.text();
    assert.equal(shortIdle.counters.sessions, 2);
    await waitUntil(() => shortIdle.counters.sessions === 1, 'the poll session to expire', 3000);
    await postSessionOk(shortIdle.url, id, { subscribe: ['y'] });
    client.close();
    await waitUntil(() => shortIdle.counters.sessions === 0, 'the session to expire', 3000);
    const metrics = await (await fetch(`${shortIdle.url}/metrics`)).text();
    assert.match(metrics, /^herald_sessions 0$/m);
    assert.equal(shortIdle.hub.subscriberCount('x') + shortIdle.hub.subscriberCount('y'), 0);
  });
});
