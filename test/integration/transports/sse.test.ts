// SSE specifics, with the `eventsource` package: retry on open, headers, event names, keepalive
// comments, Last-Event-ID resumes (EventSource's own reconnect and an explicit header), field
// injection, content negotiation, and refusals seen by EventSource.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../../src/herald.js';
import { SUITE_TIMEOUT_MS, SseClient, errorCode, publishNumbers, publishOk, subscribeSse, waitUntil } from '../../helpers/clients.js';
import { startTestServer } from '../../helpers/server.js';

const RETRY_MS = 300;
const HEARTBEAT_MS = 1000;

let server: RunningHerald;
const clients: SseClient[] = [];
let channelCount = 0;
const freshChannel = (): string => `sse-${++channelCount}`;

function sse(path: string, options?: ConstructorParameters<typeof SseClient>[1]): SseClient {
  const client = new SseClient(`${server.url}${path}`, options);
  clients.push(client);
  return client;
}

/** The SSE blocks (separated by a blank line) of a raw stream, without the trailing partial one. */
function blocks(raw: string): string[] {
  return raw.split('\n\n').slice(0, -1);
}

before(async () => {
  server = await startTestServer({ retryMs: RETRY_MS, heartbeatMs: HEARTBEAT_MS });
});
after(async () => {
  for (const client of clients) client.close();
  await server.close();
});

describe('SSE', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('opens with a retry: hint and the streaming headers', async () => {
    const client = sse(`/v1/sse?channel=${freshChannel()}`);
    await client.opened();
    await client.rawChanges.until(() => client.raw[0]!.includes('\n\n'), 'the opening block');
    const opening = blocks(client.raw[0]!)[0]!;
    assert.ok(opening.split('\n').includes(`retry: ${RETRY_MS}`), `retry line in ${JSON.stringify(opening)}`);
    const { status, headers } = client.responses[0]!;
    assert.equal(status, 200);
    assert.match(headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.equal(headers.get('cache-control'), 'no-cache');
    assert.equal(headers.get('x-accel-buffering'), 'no');
    assert.equal(client.requests[0]!.Accept, 'text/event-stream');
  });

  it('opens with an id: holding the starting cursor, so a drop before the first message loses nothing', async () => {
    const channel = freshChannel();
    const client = sse(`/v1/sse?channel=${channel}`);
    await client.opened();
    await client.rawChanges.until(() => client.raw[0]!.includes('\n\n'), 'the opening block');
    const opening = blocks(client.raw[0]!)[0]!;
    const id = opening.split('\n').find((line) => line.startsWith('id: '))?.slice(4);
    assert.ok(id, `id line in ${JSON.stringify(opening)}`);
    client.close();
    await publishOk(server.url, { channel, data: 'published while away' });
    const res = await fetch(`${server.url}/v1/poll?timeout=0&cursor=${id}`);
    const body = (await res.json()) as { messages: { data: unknown }[] };
    assert.deepEqual(body.messages.map((m) => m.data), ['published while away']);
  });

  it('names each event after the message event, or "message"', async () => {
    const channel = freshChannel();
    const client = sse(`/v1/sse?channel=${channel}`);
    const onmessage: string[] = [];
    client.es.onmessage = (event) => onmessage.push(event.data as string);
    await client.opened();
    await publishOk(server.url, { messages: [
      { channel, data: 1, event: 'tick' },
      { channel, data: 2 },
      { channel, data: 3, event: 'user.joined:v2' },
      { channel, data: 4, event: 'message' },
    ] });
    await client.events.until((events) => events.length >= 4, '4 events');
    assert.deepEqual(client.events.items.map((e) => e.type), ['tick', 'message', 'user.joined:v2', 'message']);
    for (const event of client.events.items) {
      const envelope = JSON.parse(event.data) as { cursor: string; offset: number };
      assert.equal(event.lastEventId, envelope.cursor, 'id: is the cursor');
    }
    assert.equal(onmessage.length, 2, 'onmessage sees only the "message" events');
    // On the wire: exactly id, event and one data line per message.
    for (const block of blocks(client.raw[0]!).slice(1)) {
      const fields = block.split('\n').map((line) => line.slice(0, line.indexOf(':')));
      assert.deepEqual(fields, ['id', 'event', 'data'], `block ${JSON.stringify(block)}`);
    }
  });

  it('sends a ":" keepalive comment periodically', async () => {
    const client = sse(`/v1/sse?channel=${freshChannel()}`);
    await client.opened();
    const isKeepalive = (block: string): boolean => block.split('\n').every((line) => line.startsWith(':'));
    await client.rawChanges.until(
      () => blocks(client.raw[0]!).slice(1).some(isKeepalive),
      'a keepalive comment after the opening',
      HEARTBEAT_MS * 3 + 1000,
    );
    assert.equal(client.events.items.length, 0, 'comments are not events');
    assert.equal(client.es.readyState, client.es.OPEN);
  });

  it('resumes through EventSource reconnecting with Last-Event-ID after a dropped connection', async () => {
    const channel = freshChannel();
    const client = sse(`/v1/sse?channel=${channel}`);
    await client.opened();
    await publishNumbers(server.url, channel, [1, 2, 3]);
    await client.events.until((e) => e.length === 3, '3 events');
    const lastId = client.events.items[2]!.lastEventId;
    const openStreams = server.counters.connections.sse;
    client.drop();
    // While the client is away (the server has released it), more messages are published.
    await waitUntil(() => server.counters.connections.sse === openStreams - 1, 'the server to release the dropped stream');
    await publishNumbers(server.url, channel, [4, 5]);
    await client.opens.until((opens) => opens.length === 2, 'EventSource to reconnect', RETRY_MS + 5000);
    assert.equal(client.requests[1]!['Last-Event-ID'], lastId, 'the reconnect carries the last id');
    await publishNumbers(server.url, channel, [6]);
    await client.events.until((e) => e.length >= 6, '6 events');
    const offsets = client.events.items.map((e) => (JSON.parse(e.data) as { offset: number }).offset);
    assert.deepEqual(offsets, [1, 2, 3, 4, 5, 6]);
    assert.ok(client.raw[1]!.includes(`retry: ${RETRY_MS}`), 'each connection opens with retry:');
  });

  it('resumes from an explicit Last-Event-ID header, which wins over the URL cursor', async () => {
    const channel = freshChannel();
    const first = await subscribeSse(server.url, { channels: [channel] });
    await publishNumbers(server.url, channel, [1, 2, 3, 4]);
    const received = await first.waitForMessages(4);
    await first.close();
    await publishNumbers(server.url, channel, [5]);
    // The header alone names the channel.
    const byHeader = sse('/v1/sse', { headers: { 'Last-Event-ID': received[2]!.cursor } });
    // The URL cursor is older than the header: the header wins.
    const both = sse(`/v1/sse?channel=${channel}&cursor=${received[0]!.cursor}`, { headers: { 'Last-Event-ID': received[3]!.cursor } });
    await byHeader.events.until((e) => e.length >= 2, 'messages 4 and 5');
    await both.events.until((e) => e.length >= 1, 'message 5');
    await publishNumbers(server.url, channel, [6]);
    await byHeader.events.until((e) => e.length >= 3, 'message 6');
    await both.events.until((e) => e.length >= 2, 'message 6');
    const offsets = (client: SseClient): number[] => client.events.items.map((e) => (JSON.parse(e.data) as { offset: number }).offset);
    assert.deepEqual(offsets(byHeader), [4, 5, 6]);
    assert.deepEqual(offsets(both), [5, 6]);
  });

  it('sends a reset as "event: reset" with an id that resumes after it', async () => {
    const small = await startTestServer({ historySize: 3 });
    try {
      const channel = freshChannel();
      const first = await subscribeSse(small.url, { channels: [channel] });
      await publishNumbers(small.url, channel, [1]);
      const [one] = await first.waitForMessages(1);
      await first.close();
      await publishNumbers(small.url, channel, [2, 3, 4, 5, 6]);
      const client = new SseClient(`${small.url}/v1/sse?channel=${channel}&cursor=${one!.cursor}`);
      try {
        await client.events.until((e) => e.length >= 4, 'a reset and 3 messages');
        const [reset, ...rest] = client.events.items;
        assert.equal(reset!.type, 'reset');
        const notice = JSON.parse(reset!.data) as Record<string, unknown>;
        assert.deepEqual(notice, { channel, epoch: one!.epoch, from: 4, missed: 2, cursor: reset!.lastEventId });
        assert.deepEqual(rest.map((e) => e.type), ['message', 'message', 'message']);
        // The reset's id resumes at the oldest retained message.
        const again = await subscribeSse(small.url, { channels: [channel], cursor: reset!.lastEventId });
        await publishNumbers(small.url, channel, [7]);
        await again.waitForMessages(4);
        assert.deepEqual(again.messages().map((m) => m.offset), [4, 5, 6, 7]);
        await again.close();
      } finally {
        client.close();
      }
    } finally {
      await small.close();
    }
  });

  it('keeps any data on one data: line, so no data can add fields or events', async () => {
    const channel = freshChannel();
    const client = sse(`/v1/sse?channel=${channel}`);
    await client.opened();
    const nasty = 'line1\n\nevent: evil\ndata: {"injected":true}\nid: 666\nretry: 1\r\n\r\n:comment\rdata: x\u2028\u2029';
    await publishOk(server.url, { channel, data: nasty, event: 'safe' });
    await publishOk(server.url, { channel, data: { [nasty]: [nasty] } });
    await client.events.until((e) => e.length >= 2, '2 events');
    assert.deepEqual(client.events.items.map((e) => e.type), ['safe', 'message']);
    assert.equal((JSON.parse(client.events.items[0]!.data) as { data: unknown }).data, nasty);
    assert.deepEqual((JSON.parse(client.events.items[1]!.data) as { data: unknown }).data, { [nasty]: [nasty] });
    for (const block of blocks(client.raw[0]!).slice(1)) {
      assert.equal(block.split(/\r\n|\r|\n/).length, 3, `one id, one event, one data line: ${JSON.stringify(block)}`);
    }
    assert.ok(!client.events.items.some((e) => e.type === 'evil' || e.lastEventId === '666'));
  });

  it('refuses event names that could inject SSE fields at publish time', async () => {
    const channel = freshChannel();
    for (const event of ['a\nb', 'x\r\ndata: y', 'has space', '', 'é', 'x'.repeat(65)]) {
      const res = await fetch(`${server.url}/v1/publish`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ channel, data: 1, event }),
      });
      assert.equal(res.status, 400, `event ${JSON.stringify(event)}`);
      assert.equal(await errorCode(res), 'event_invalid');
    }
  });

  it('answers 406 when Accept excludes text/event-stream', async () => {
    for (const accept of ['application/json', 'text/html, application/xhtml+xml', 'text/event-stream;q=0']) {
      const res = await fetch(`${server.url}/v1/sse?channel=x`, { headers: { Accept: accept } });
      assert.equal(res.status, 406, `Accept: ${accept}`);
      assert.equal(await errorCode(res), 'not_acceptable');
    }
    for (const accept of ['*/*', 'text/*', 'application/json, text/event-stream;q=0.5']) {
      const controller = new AbortController();
      const res = await fetch(`${server.url}/v1/sse?channel=x`, { headers: { Accept: accept }, signal: controller.signal });
      assert.equal(res.status, 200, `Accept: ${accept}`);
      controller.abort();
    }
  });

  it('fails an EventSource for good on a refused request (no reconnect loop)', async () => {
    for (const query of ['channel=ok&cursor=garbage', 'channel=bad%20name', 'since=beginning']) {
      const client = sse(`/v1/sse?${query}`);
      const error = await client.errors.find(() => true, `an error event for ?${query}`);
      assert.equal(error.code, 400, `?${query}`);
      assert.equal(client.es.readyState, client.es.CLOSED);
      assert.equal(client.requests.length, 1);
    }
  });

  it('releases the server side when the client goes away', async () => {
    const before = server.counters.connections.sse;
    const client = sse(`/v1/sse?channel=${freshChannel()}`);
    await client.opened();
    assert.equal(server.counters.connections.sse, before + 1);
    client.close();
    await waitUntil(() => server.counters.connections.sse === before, 'the server to release the stream');
  });
});
