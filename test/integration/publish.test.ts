// POST /v1/publish: single messages and batches (all or nothing), idempotency keys, every refusal
// (malformed JSON, wrong shapes, bad channels, oversized bodies, auth), plus /v1/stats (restricted like
// publish) and /metrics.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import { SUITE_TIMEOUT_MS, WsClient, errorCode, pollOnce, publishNumbers, publishOk, subscribeSse, subscribeWs, waitUntil } from '../helpers/clients.js';
import { publish, startTestServer } from '../helpers/server.js';

let channelCount = 0;
const freshChannel = (): string => `pub-${++channelCount}`;

/** Everything retained on the channels, via a short poll from the beginning. */
async function stored(url: string, ...channels: string[]): Promise<unknown[]> {
  const params = new URLSearchParams({ since: 'beginning', timeout: '0', limit: '1000' });
  for (const channel of channels) params.append('channel', channel);
  const { messages } = await pollOnce(url, params);
  return messages.map((m) => (m.kind === 'message' ? [m.channel, m.offset, m.data] : m));
}

async function expectRefusal(res: Response, status: number, code: string): Promise<void> {
  assert.equal(res.status, status, `expected ${status} ${code}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(await errorCode(res), code);
}

describe('publish', { timeout: SUITE_TIMEOUT_MS }, () => {
  let server: RunningHerald;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('accepts one message and answers its channel, offset and epoch', async () => {
    const channel = freshChannel();
    const res = await publish(server.url, { channel, data: { hello: 'world' }, event: 'greet' });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const body = (await res.json()) as { results: { channel: string; offset: number; epoch: string }[] };
    assert.equal(body.results.length, 1);
    assert.equal(body.results[0]!.channel, channel);
    assert.equal(body.results[0]!.offset, 1);
    assert.match(body.results[0]!.epoch, /^[A-Za-z0-9]+$/);
    assert.deepEqual(Object.keys(body.results[0]!).sort(), ['channel', 'epoch', 'offset']);
    const [second] = await publishOk(server.url, { channel, data: 2 });
    assert.equal(second!.offset, 2);
    assert.equal(second!.epoch, body.results[0]!.epoch);
  });

  it('accepts any JSON value as data', async () => {
    const channel = freshChannel();
    const values = [null, 0, -1.5, true, false, '', 'text', [], [1, [2]], {}, { a: { b: null } }, '\u2028</script>\u0000'];
    for (const data of values) await publishOk(server.url, { channel, data });
    assert.deepEqual(await stored(server.url, channel), values.map((data, i) => [channel, i + 1, data]));
  });

  it('accepts a batch in order, across channels', async () => {
    const a = freshChannel();
    const b = freshChannel();
    const results = await publishOk(server.url, {
      messages: [
        { channel: a, data: 'a1' },
        { channel: b, data: 'b1' },
        { channel: a, data: 'a2', event: 'e' },
      ],
    });
    assert.deepEqual(results.map((r) => [r.channel, r.offset]), [[a, 1], [b, 1], [a, 2]]);
    assert.deepEqual(await stored(server.url, a), [[a, 1, 'a1'], [a, 2, 'a2']]);
    assert.deepEqual(await stored(server.url, b), [[b, 1, 'b1']]);
  });

  it('stores nothing of a batch with one invalid message', async () => {
    const a = freshChannel();
    const b = freshChannel();
    const invalid = [
      { message: { channel: b, data: 'x', extra: 1 }, code: 'body_invalid' },
      { message: { channel: 'bad channel', data: 'x' }, code: 'channel_invalid' },
      { message: { channel: b }, code: 'data_missing' },
      { message: { data: 'x' }, code: 'channel_missing' },
      { message: { channel: b, data: 'x', event: 'bad event' }, code: 'event_invalid' },
      { message: { channel: b, data: 'x', idempotencyKey: '' }, code: 'idempotency_key_invalid' },
      { message: 'not an object', code: 'body_invalid' },
    ];
    for (const { message, code } of invalid) {
      const res = await publish(server.url, { messages: [{ channel: a, data: 1 }, { channel: b, data: 2 }, message, { channel: a, data: 3 }] });
      assert.equal(res.status, 400, JSON.stringify(message));
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, code, JSON.stringify(message));
      assert.match(body.error.message, /messages\[2\]/, 'the message says which one');
    }
    assert.deepEqual(await stored(server.url, a, b), [], 'nothing of any refused batch was stored');
    // And the offsets did not move: the next message is offset 1.
    const [first] = await publishOk(server.url, { channel: a, data: 'first' });
    assert.equal(first!.offset, 1);
  });

  it('delivers nothing of a refused batch to subscribers', async () => {
    const channel = freshChannel();
    const sub = await subscribeWs(server.url, { channels: [channel] });
    try {
      const res = await publish(server.url, { messages: [{ channel, data: 'no' }, { channel, data: 'no', bogus: true }] });
      assert.equal(res.status, 400);
      await publishOk(server.url, { channel, data: 'yes' });
      const messages = await sub.waitForMessages(1);
      await sub.client.request({ op: 'ping' });
      assert.deepEqual(messages.map((m) => [m.offset, m.data]), [[1, 'yes']]);
    } finally {
      await sub.close();
    }
  });

  it('refuses empty and oversized batches, and batches with other fields', async () => {
    await expectRefusal(await publish(server.url, { messages: [] }), 400, 'batch_invalid');
    await expectRefusal(await publish(server.url, { messages: 'x' }), 400, 'batch_invalid');
    const channel = freshChannel();
    const tooMany = Array.from({ length: 1001 }, (_, i) => ({ channel, data: i }));
    await expectRefusal(await publish(server.url, { messages: tooMany }), 400, 'batch_invalid');
    await expectRefusal(await publish(server.url, { messages: [{ channel, data: 1 }], channel }), 400, 'body_invalid');
    assert.deepEqual(await stored(server.url, channel), []);
  });

  it('answers a repeated idempotencyKey with the original offset and delivers nothing new', async () => {
    const channel = freshChannel();
    const sub = await subscribeSse(server.url, { channels: [channel] });
    try {
      const [original] = await publishOk(server.url, { channel, data: 'once', idempotencyKey: 'order-17' });
      const [repeat] = await publishOk(server.url, { channel, data: 'twice?', idempotencyKey: 'order-17' });
      assert.equal(repeat!.offset, original!.offset);
      assert.equal(repeat!.epoch, original!.epoch);
      assert.equal(repeat!.duplicate, true);
      // In a batch too, against the log and within the batch itself.
      const batch = await publishOk(server.url, {
        messages: [
          { channel, data: 'again?', idempotencyKey: 'order-17' },
          { channel, data: 'new', idempotencyKey: 'order-18' },
          { channel, data: 'new again?', idempotencyKey: 'order-18' },
        ],
      });
      assert.deepEqual(batch.map((r) => [r.offset, r.duplicate ?? false]), [[1, true], [2, false], [2, true]]);
      // The same key on another channel is another message.
      const other = freshChannel();
      const [elsewhere] = await publishOk(server.url, { channel: other, data: 'other', idempotencyKey: 'order-17' });
      assert.equal(elsewhere!.duplicate, undefined);
      await publishOk(server.url, { channel, data: 'marker' });
      const messages = await sub.waitForMessages(3);
      assert.deepEqual(messages.map((m) => [m.offset, m.data]), [[1, 'once'], [2, 'new'], [3, 'marker']]);
      assert.deepEqual(await stored(server.url, channel), [[channel, 1, 'once'], [channel, 2, 'new'], [channel, 3, 'marker']]);
    } finally {
      await sub.close();
    }
  });

  it('refuses malformed JSON with json_invalid', async () => {
    for (const body of ['{', '', 'not json', '{"channel":"x","data":1,}', "{'channel':'x'}"]) {
      await expectRefusal(await publish(server.url, body), 400, 'json_invalid');
    }
  });

  it('refuses wrong shapes with a specific code and stores nothing', async () => {
    const channel = freshChannel();
    const cases: [unknown, string][] = [
      [{ channel }, 'data_missing'],
      [{ channel, data: 1, extra: true }, 'body_invalid'],
      [{ channel, data: 1, Channel: 'x' }, 'body_invalid'],
      [[{ channel, data: 1 }], 'body_invalid'],
      ['a string', 'body_invalid'],
      [42, 'body_invalid'],
      [null, 'body_invalid'],
      [{ data: 1 }, 'channel_missing'],
      [{ channel: 'has space', data: 1 }, 'channel_invalid'],
      [{ channel: 'x'.repeat(201), data: 1 }, 'channel_invalid'],
      [{ channel: '', data: 1 }, 'channel_invalid'],
      [{ channel: 7, data: 1 }, 'channel_invalid'],
      [{ channel, data: 1, event: 7 }, 'event_invalid'],
      [{ channel, data: 1, event: '' }, 'event_invalid'],
      [{ channel, data: 1, idempotencyKey: 7 }, 'idempotency_key_invalid'],
      [{ channel, data: 1, idempotencyKey: 'k'.repeat(201) }, 'idempotency_key_invalid'],
    ];
    for (const [body, code] of cases) {
      const res = await publish(server.url, JSON.stringify(body));
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(await errorCode(res), code, JSON.stringify(body));
    }
    assert.deepEqual(await stored(server.url, channel), []);
  });

  it('refuses a body over the default 64 KiB limit with 413 payload_too_large', async () => {
    const channel = freshChannel();
    const padding = 'x'.repeat(64 * 1024);
    await expectRefusal(await publish(server.url, { channel, data: padding }), 413, 'payload_too_large');
    // Just under the limit is fine.
    const fits = JSON.stringify({ channel, data: 'x'.repeat(64 * 1024 - 100) });
    assert.ok(Buffer.byteLength(fits) <= 64 * 1024);
    assert.equal((await publish(server.url, fits)).status, 200);
  });

  it('refuses other methods on /v1/publish with 405', async () => {
    await expectRefusal(await fetch(`${server.url}/v1/publish`), 405, 'method_not_allowed');
    await expectRefusal(await fetch(`${server.url}/v1/publish`, { method: 'PUT', body: '{}' }), 405, 'method_not_allowed');
  });
});

describe('publish with a small body limit', { timeout: SUITE_TIMEOUT_MS }, () => {
  let server: RunningHerald;
  before(async () => {
    server = await startTestServer({ maxBodyBytes: 1024 });
  });
  after(() => server.close());

  it('refuses a declared length over the limit with 413', async () => {
    const channel = freshChannel();
    await expectRefusal(await publish(server.url, { channel, data: 'x'.repeat(2000) }), 413, 'payload_too_large');
    assert.deepEqual(await stored(server.url, channel), []);
  });

  it('refuses a chunked body that grows over the limit with 413', async () => {
    const channel = freshChannel();
    const chunks = [`{"channel":"${channel}","data":"`, 'x'.repeat(800), 'x'.repeat(800), '"}'];
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
        controller.close();
      },
    });
    const res = await fetch(`${server.url}/v1/publish`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body,
      duplex: 'half',
    } as RequestInit);
    await expectRefusal(res, 413, 'payload_too_large');
    assert.deepEqual(await stored(server.url, channel), []);
  });

  it('accepts a body within the limit', async () => {
    const channel = freshChannel();
    await publishOk(server.url, { channel, data: 'x'.repeat(900) });
    assert.equal((await stored(server.url, channel)).length, 1);
  });
});

describe('publish key', { timeout: SUITE_TIMEOUT_MS }, () => {
  const KEY = 's3cret-key';
  let server: RunningHerald;
  before(async () => {
    server = await startTestServer({ publishKey: KEY });
  });
  after(() => server.close());

  it('refuses a publish without the bearer key with 401', async () => {
    const channel = freshChannel();
    const res = await publish(server.url, { channel, data: 1 });
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    await expectRefusal(res, 401, 'unauthorized');
    for (const authorization of [`Bearer ${KEY}x`, `Bearer ${KEY.slice(0, -1)}`, 'Bearer ', KEY, `Basic ${KEY}`, `Token ${KEY}`]) {
      await expectRefusal(await publish(server.url, { channel, data: 1 }, { Authorization: authorization }), 401, 'unauthorized');
    }
    assert.deepEqual(await stored(server.url, channel), []);
  });

  it('accepts a publish with the right bearer key', async () => {
    const channel = freshChannel();
    const [result] = await publishOk(server.url, { channel, data: 1 }, { Authorization: `Bearer ${KEY}` });
    assert.equal(result!.offset, 1);
  });

  it('checks the key before reading the body', async () => {
    await expectRefusal(await publish(server.url, 'not json'), 401, 'unauthorized');
  });

  it('restricts /v1/stats like publish', async () => {
    await expectRefusal(await fetch(`${server.url}/v1/stats`), 401, 'unauthorized');
    await expectRefusal(await fetch(`${server.url}/v1/stats`, { headers: { Authorization: 'Bearer nope' } }), 401, 'unauthorized');
    const res = await fetch(`${server.url}/v1/stats`, { headers: { Authorization: `Bearer ${KEY}` } });
    assert.equal(res.status, 200);
    assert.equal(typeof ((await res.json()) as { connections: unknown }).connections, 'object');
  });

  it('leaves subscribing and /metrics open', async () => {
    const poll = await fetch(`${server.url}/v1/poll?channel=x&timeout=0`);
    assert.equal(poll.status, 200);
    await poll.body?.cancel();
    const metrics = await fetch(`${server.url}/metrics`);
    assert.equal(metrics.status, 200);
    await metrics.body?.cancel();
  });
});

describe('stats and metrics', { timeout: SUITE_TIMEOUT_MS }, () => {
  let server: RunningHerald;
  before(async () => {
    server = await startTestServer({ historySize: 2 });
  });
  after(() => server.close());

  it('reports connections by transport, channels and subscribers in /v1/stats', async () => {
    const channel = freshChannel();
    const sse = await subscribeSse(server.url, { channels: [channel] });
    const ws = await WsClient.connect(server.url);
    try {
      await ws.request({ op: 'subscribe', channel });
      const res = await fetch(`${server.url}/v1/stats`);
      assert.equal(res.status, 200);
      const stats = (await res.json()) as { connections: Record<string, number>; channels: number; subscribers: Record<string, number> };
      assert.equal(stats.connections.sse, 1);
      assert.equal(stats.connections.websocket, 1);
      assert.equal(stats.connections.poll, 0);
      assert.equal(typeof stats.channels, 'number');
      assert.equal(stats.subscribers[channel], 2);
    } finally {
      await sse.close();
      await ws.close();
    }
    await waitUntil(() => server.counters.connections.sse === 0 && server.counters.connections.websocket === 0, 'both connections to be released');
  });

  it('exposes Prometheus metrics for publishing, delivery, connections and resets', async () => {
    const channel = freshChannel();
    const ws = await subscribeWs(server.url, { channels: [channel] });
    try {
      await publishNumbers(server.url, channel, [1, 2, 3]);
      await ws.waitForMessages(3);
      // A too-old cursor: offset 1 is gone with historySize 2.
      const reset = await pollOnce(server.url, new URLSearchParams({ cursor: ws.messages()[0]!.cursor, timeout: '0' }));
      assert.equal(reset.messages[0]!.kind, 'message', 'offset 2 is still retained');
      await publishNumbers(server.url, channel, [4]);
      await pollOnce(server.url, new URLSearchParams({ cursor: ws.messages()[0]!.cursor, timeout: '0' }));
      const res = await fetch(`${server.url}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      const text = await res.text();
      const value = (name: string): number => {
        const match = new RegExp(`^${name.replace(/[{}"=]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
        assert.ok(match !== null, `${name} in /metrics`);
        return Number(match[1]);
      };
      assert.equal(value('herald_messages_published_total'), 4);
      assert.ok(value('herald_messages_delivered_total{transport="websocket"}') >= 3);
      assert.ok(value('herald_messages_delivered_total{transport="poll"}') >= 2);
      assert.equal(value('herald_connections{transport="websocket"}'), 1);
      assert.equal(value('herald_connections{transport="sse"}'), 0);
      assert.equal(value('herald_subscriptions'), 1);
      assert.equal(value('herald_resets_total'), 1);
      assert.equal(value('herald_slow_consumer_disconnects_total{transport="websocket"}'), 0);
      assert.match(text, /^# TYPE herald_messages_published_total counter$/m);
      // Counters stay monotonic across scrapes.
      await publishNumbers(server.url, channel, [5]);
      const again = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(again, /^herald_messages_published_total 5$/m);
    } finally {
      await ws.close();
    }
  });

  it('answers /healthz', async () => {
    const res = await fetch(`${server.url}/healthz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok', engine: 'memory' });
  });
});
