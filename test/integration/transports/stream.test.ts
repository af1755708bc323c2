// HTTP streaming specifics (fetch): the NDJSON stream's framing and heartbeats, and the hidden-iframe
// stream's HTML, padding, heartbeats, callback validation and script-safe escaping.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../../src/herald.js';
import {
  SUITE_TIMEOUT_MS,
  errorCode,
  publishNumbers,
  publishOk,
  subscribeIframe,
  subscribeNdjson,
  waitUntil,
  type StreamSubscription,
} from '../../helpers/clients.js';
import { startTestServer } from '../../helpers/server.js';

const HEARTBEAT_MS = 500;

let server: RunningHerald;
const open: StreamSubscription[] = [];
let channelCount = 0;
const freshChannel = (): string => `stream-${++channelCount}`;

function track<T extends StreamSubscription>(subscription: T): T {
  open.push(subscription);
  return subscription;
}

before(async () => {
  server = await startTestServer({ heartbeatMs: HEARTBEAT_MS, historySize: 4 });
});
after(async () => {
  await Promise.all(open.map((s) => s.close()));
  await server.close();
});

describe('NDJSON stream', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('streams one envelope per line as chunked application/x-ndjson', async () => {
    const channel = freshChannel();
    const sub = track(await subscribeNdjson(server.url, { channels: [channel] }));
    const { headers } = sub.response;
    assert.match(headers.get('content-type') ?? '', /^application\/x-ndjson/);
    assert.equal(headers.get('cache-control'), 'no-cache');
    assert.equal(headers.get('x-accel-buffering'), 'no');
    assert.equal(headers.get('transfer-encoding'), 'chunked');
    await publishOk(server.url, { channel, data: 'multi\nline\r\n"text"', event: 'note' });
    await publishOk(server.url, { channel, data: { nested: { deep: [1, 2] } } });
    const messages = await sub.waitForMessages(2);
    assert.deepEqual(messages.map((m) => [m.offset, m.event, m.data]), [[1, 'note', 'multi\nline\r\n"text"'], [2, undefined, { nested: { deep: [1, 2] } }]]);
    const lines = sub.raw.split('\n').filter((line) => line !== '' && !line.includes('"heartbeat"'));
    assert.equal(lines.length, 2, 'a message with line breaks in its data is still one line');
  });

  it('sends heartbeat lines while idle', async () => {
    const sub = track(await subscribeNdjson(server.url, { channels: [freshChannel()] }));
    await sub.heartbeats.until((beats) => beats.length >= 2, 'two heartbeat lines', HEARTBEAT_MS * 4 + 1000);
    assert.ok(sub.raw.split('\n').includes('{"heartbeat":true}'));
    assert.equal(sub.entries.items.length, 0);
  });

  it('writes a reset as a line with "reset":true', async () => {
    const channel = freshChannel();
    const first = track(await subscribeNdjson(server.url, { channels: [channel] }));
    await publishNumbers(server.url, channel, [1]);
    const [one] = await first.waitForMessages(1);
    await first.close();
    await publishNumbers(server.url, channel, [2, 3, 4, 5, 6, 7]);
    const sub = track(await subscribeNdjson(server.url, { channels: [channel], cursor: one!.cursor }));
    await sub.waitForMessages(4);
    const firstLine = JSON.parse(sub.raw.split('\n')[0]!) as Record<string, unknown>;
    assert.deepEqual(firstLine, { reset: true, channel, epoch: one!.epoch, from: 4, missed: 2, cursor: firstLine.cursor });
  });

  it('releases the server side when the reader goes away', async () => {
    const channel = freshChannel();
    const before = server.counters.connections.stream;
    const sub = await subscribeNdjson(server.url, { channels: [channel] });
    assert.equal(server.hub.subscriberCount(channel), 1);
    await sub.close();
    await waitUntil(() => server.counters.connections.stream === before, 'the stream to be released');
    assert.equal(server.hub.subscriberCount(channel), 0);
  });
});

describe('iframe stream', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('serves text/html opening with padding, then one script per message calling the parent callback', async () => {
    const channel = freshChannel();
    const sub = track(await subscribeIframe(server.url, { channels: [channel] }, 'app.herald.onMessage'));
    const { headers } = sub.response;
    assert.match(headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(headers.get('cache-control'), 'no-cache');
    assert.equal(headers.get('x-content-type-options'), 'nosniff');
    await publishNumbers(server.url, channel, [1, 2]);
    const messages = await sub.waitForMessages(2);
    assert.deepEqual(messages.map((m) => [m.offset, m.data]), [[1, { n: 1 }], [2, { n: 2 }]]);
    assert.match(sub.raw, /^<!DOCTYPE html>/i);
    assert.ok(sub.raw.indexOf('<script') >= 2048, 'at least 2 KiB of padding before the first script');
    assert.equal(sub.scripts.length, 2);
    for (const script of sub.scripts) assert.match(script, /^parent\.app\.herald\.onMessage\(\{.*\}\);$/);
  });

  it('escapes data so no script can be closed or injected, and U+2028 never appears raw', async () => {
    const channel = freshChannel();
    const sub = track(await subscribeIframe(server.url, { channels: [channel] }));
    const nasty = '</script><script>alert(1)</script><!-- \u2028\u2029 </SCRIPT > & <\/script';
    await publishOk(server.url, { channel, data: nasty });
    await publishOk(server.url, { channel, data: { [nasty]: [nasty] }, event: 'x' });
    const messages = await sub.waitForMessages(2);
    assert.equal(messages[0]!.data, nasty);
    assert.deepEqual(messages[1]!.data, { [nasty]: [nasty] });
    // Every script the browser would see is exactly our call, with no markup or line terminator inside.
    assert.equal(sub.scripts.length, 2);
    for (const script of sub.scripts) {
      assert.match(script, /^parent\.onHerald\(\{[^<>\u2028\u2029]*\}\);$/);
    }
    const body = sub.raw.slice(sub.raw.indexOf('<script'));
    assert.equal((body.match(/<script/gi) ?? []).length, 2, 'no injected <script');
    assert.equal((body.match(/<\/script/gi) ?? []).length, 2, 'no early </script');
    assert.ok(!/[\u2028\u2029]/.test(sub.raw));
  });

  it('sends heartbeat comments while idle', async () => {
    const sub = track(await subscribeIframe(server.url, { channels: [freshChannel()] }));
    await sub.heartbeats.until((beats) => beats.length >= 2, 'two heartbeat comments', HEARTBEAT_MS * 4 + 1000);
    assert.equal(sub.scripts.length, 0);
  });

  it('delivers a reset as a callback argument with "reset":true', async () => {
    const channel = freshChannel();
    const first = track(await subscribeIframe(server.url, { channels: [channel] }));
    await publishNumbers(server.url, channel, [1]);
    const [one] = await first.waitForMessages(1);
    await first.close();
    await publishNumbers(server.url, channel, [2, 3, 4, 5, 6, 7]);
    const sub = track(await subscribeIframe(server.url, { channels: [channel], cursor: one!.cursor }));
    await sub.waitForMessages(4);
    assert.match(sub.scripts[0]!, /^parent\.onHerald\(\{"reset":true,/);
    const [reset] = sub.entries.items;
    assert.equal(reset!.kind, 'reset');
  });

  it('refuses a missing or bad callback with 400 callback_invalid before streaming anything', async () => {
    for (const callback of [undefined, '', 'alert(1)', 'a-b', 'eval', 'x.constructor', '</script>']) {
      const params = new URLSearchParams({ channel: 'x' });
      if (callback !== undefined) params.set('callback', callback);
      const res = await fetch(`${server.url}/v1/iframe?${params}`);
      assert.equal(res.status, 400, `callback=${JSON.stringify(callback)}`);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(await errorCode(res), 'callback_invalid');
    }
  });
});
