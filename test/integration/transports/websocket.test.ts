// WebSocket specifics, with the `ws` client: control ops, bad frames (an error op, the socket stays
// up), per-channel subscribe/unsubscribe with cursors covering the whole socket, protocol pings and the
// release of a peer that stops answering them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../../src/herald.js';
import { SUITE_TIMEOUT_MS, WsClient, publishNumbers, publishOk, subscribeWs, waitUntil, withTimeout, type WsFrame } from '../../helpers/clients.js';
import { startTestServer } from '../../helpers/server.js';

const HEARTBEAT_MS = 500;

let server: RunningHerald;
const sockets: WsClient[] = [];
let channelCount = 0;
const freshChannel = (): string => `ws-${++channelCount}`;

async function connect(options?: Parameters<typeof WsClient.connect>[1]): Promise<WsClient> {
  const client = await WsClient.connect(server.url, options);
  sockets.push(client);
  return client;
}

const messagesOf = (client: WsClient, channel?: string): WsFrame[] =>
  client.frames.items.filter((f) => f.op === 'message' && (channel === undefined || f.channel === channel));

async function waitForMessages(client: WsClient, count: number, channel?: string): Promise<WsFrame[]> {
  await client.frames.until((frames) => frames.filter((f) => f.op === 'message' && (channel === undefined || f.channel === channel)).length >= count, `${count} message op(s)${channel === undefined ? '' : ` on ${channel}`}`);
  return messagesOf(client, channel);
}

before(async () => {
  server = await startTestServer({ heartbeatMs: HEARTBEAT_MS });
});
after(async () => {
  await Promise.all(sockets.map((s) => s.close()));
  await server.close();
});

describe('WebSocket', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('answers ping with pong, echoing the id', async () => {
    const client = await connect();
    assert.deepEqual(await client.request({ op: 'ping' }), { op: 'pong', id: 'r1' });
    client.sendRaw(JSON.stringify({ op: 'ping', id: 42 }));
    assert.deepEqual(await client.frames.find((f) => f.id === 42, 'pong 42'), { op: 'pong', id: 42 });
  });

  it('answers a non-JSON frame with an error op and keeps the socket up', async () => {
    const client = await connect();
    for (const [i, bad] of ['not json', '{"op":', '[1,2]', '"subscribe"', '{"channel":"x"}', '{"op":7}', 'null'].entries()) {
      client.sendRaw(bad);
      await client.frames.until((frames) => frames.filter((f) => f.op === 'error').length > i, `an error op for ${bad}`);
      const error = client.frames.items.filter((f) => f.op === 'error')[i]!;
      assert.equal(error.code, 'frame_invalid', `frame ${bad}`);
      assert.equal(typeof error.message, 'string');
    }
    client.sendRaw(Buffer.from('{"op":"ping"}'), true);
    await client.frames.until((frames) => frames.filter((f) => f.op === 'error').length === 8, 'an error op for a binary frame');
    assert.equal(client.frames.items.at(-1)!.code, 'frame_invalid');
    // Still up: a later subscribe works and delivers.
    const channel = freshChannel();
    assert.deepEqual(await client.request({ op: 'subscribe', channel }), { op: 'subscribed', channel, id: 'r1' });
    await publishNumbers(server.url, channel, [1]);
    const [message] = await waitForMessages(client, 1);
    assert.equal(message!.channel, channel);
    assert.deepEqual(message!.data, { n: 1 });
    assert.equal(client.ws.readyState, client.ws.OPEN);
  });

  it('answers an unknown op with op_unknown, echoing the id', async () => {
    const client = await connect();
    const reply = await client.request({ op: 'shout', channel: 'x', data: 1 });
    assert.equal(reply.op, 'error');
    assert.equal(reply.code, 'op_unknown');
    assert.equal(reply.id, 'r1');
    assert.deepEqual(await client.request({ op: 'ping' }), { op: 'pong', id: 'r2' });
  });

  it('refuses a bad channel with an error op naming it, while other subscriptions keep delivering', async () => {
    const client = await connect();
    const good = freshChannel();
    await client.request({ op: 'subscribe', channel: good });
    await publishNumbers(server.url, good, [1]);
    await waitForMessages(client, 1);
    for (const channel of ['bad channel', 'x'.repeat(201), '<script>', '']) {
      const reply = await client.request({ op: 'subscribe', channel });
      assert.equal(reply.op, 'error', `subscribe ${JSON.stringify(channel)}`);
      assert.equal(reply.code, 'channel_invalid');
      assert.equal(reply.channel, channel);
    }
    const missing = await client.request({ op: 'subscribe' });
    assert.equal(missing.code, 'channel_invalid');
    const badCursor = await client.request({ op: 'subscribe', channel: freshChannel(), cursor: 'garbage' });
    assert.equal(badCursor.code, 'cursor_invalid');
    const badSince = await client.request({ op: 'subscribe', channel: freshChannel(), since: 'yesterday' });
    assert.equal(badSince.code, 'since_invalid');
    const numericCursor = await client.request({ op: 'subscribe', channel: freshChannel(), cursor: 5 });
    assert.equal(numericCursor.code, 'cursor_invalid');
    await publishNumbers(server.url, good, [2, 3]);
    const messages = await waitForMessages(client, 3);
    assert.deepEqual(messages.map((m) => m.offset), [1, 2, 3]);
    assert.ok(messages.every((m) => m.channel === good));
  });

  it('carries many channels on one socket, with cursors covering every channel', async () => {
    const a = freshChannel();
    const b = freshChannel();
    const client = await connect();
    await client.request({ op: 'subscribe', channel: a });
    await client.request({ op: 'subscribe', channel: b });
    await publishOk(server.url, { messages: [{ channel: a, data: 'a1' }, { channel: b, data: 'b1' }, { channel: a, data: 'a2' }] });
    const received = await waitForMessages(client, 3);
    // The last cursor came with a message of channel a, but it holds b's position too.
    const cursor = received.at(-1)!.cursor as string;
    await client.close();
    await publishOk(server.url, { messages: [{ channel: b, data: 'b2' }, { channel: a, data: 'a3' }] });
    const resumed = await connect();
    await resumed.request({ op: 'subscribe', channel: b, cursor });
    await resumed.request({ op: 'subscribe', channel: a, cursor });
    await waitForMessages(resumed, 2);
    await publishOk(server.url, { channel: a, data: 'a4' });
    await waitForMessages(resumed, 3);
    assert.deepEqual(messagesOf(resumed).map((m) => m.data), ['b2', 'a3', 'a4']);
  });

  it('starts a channel the cursor does not name at the head, or at since', async () => {
    const named = freshChannel();
    const other = freshChannel();
    const early = freshChannel();
    const first = await subscribeWs(server.url, { channels: [named] });
    await publishNumbers(server.url, named, [1]);
    const [message] = await first.waitForMessages(1);
    await first.close();
    await publishNumbers(server.url, other, [1, 2]);
    await publishNumbers(server.url, early, [1, 2]);
    const client = await connect();
    await client.request({ op: 'subscribe', channel: other, cursor: message!.cursor });
    await client.request({ op: 'subscribe', channel: early, cursor: message!.cursor, since: 'beginning' });
    await waitForMessages(client, 2, early);
    await publishNumbers(server.url, other, [3]);
    await waitForMessages(client, 1, other);
    assert.deepEqual(messagesOf(client, other).map((m) => m.offset), [3]);
    assert.deepEqual(messagesOf(client, early).map((m) => m.offset), [1, 2]);
  });

  it('subscribes from the upgrade URL as the HTTP transports do', async () => {
    const a = freshChannel();
    const b = freshChannel();
    await publishNumbers(server.url, a, [1, 2]);
    const client = await connect({ query: new URLSearchParams([['channel', `${a},${b}`], ['since', 'beginning']]) });
    await waitForMessages(client, 2, a);
    await publishNumbers(server.url, b, [1]);
    await waitForMessages(client, 1, b);
    assert.deepEqual(messagesOf(client).map((m) => `${m.channel}#${m.offset}`), [`${a}#1`, `${a}#2`, `${b}#1`]);
  });

  it('unsubscribes: nothing more arrives from that channel', async () => {
    const gone = freshChannel();
    const kept = freshChannel();
    const client = await connect();
    await client.request({ op: 'subscribe', channel: gone });
    await client.request({ op: 'subscribe', channel: kept });
    await publishNumbers(server.url, gone, [1]);
    await waitForMessages(client, 1, gone);
    assert.deepEqual(await client.request({ op: 'unsubscribe', channel: gone }), { op: 'unsubscribed', channel: gone, id: 'r3' });
    await publishNumbers(server.url, gone, [2]);
    // A message on the kept channel, published after, proves the one on `gone` was not sent.
    await publishNumbers(server.url, kept, [1]);
    await waitForMessages(client, 1, kept);
    assert.deepEqual(messagesOf(client).map((m) => `${m.channel}#${m.offset}`), [`${gone}#1`, `${kept}#1`]);
    const bad = await client.request({ op: 'unsubscribe', channel: 'bad channel' });
    assert.equal(bad.code, 'channel_invalid');
  });

  it('does not deliver twice when a channel is subscribed twice', async () => {
    const channel = freshChannel();
    const client = await connect();
    await client.request({ op: 'subscribe', channel });
    assert.deepEqual(await client.request({ op: 'subscribe', channel, since: 'beginning' }), { op: 'subscribed', channel, id: 'r2' });
    await publishNumbers(server.url, channel, [1, 2]);
    await waitForMessages(client, 2);
    await client.request({ op: 'ping' });
    assert.deepEqual(messagesOf(client).map((m) => m.offset), [1, 2]);
  });

  it('sends protocol pings that a live client answers', async () => {
    const client = await connect();
    const pings: number[] = [];
    client.ws.on('ping', () => pings.push(Date.now()));
    await waitUntil(() => pings.length >= 2, 'two protocol pings', HEARTBEAT_MS * 4 + 1000);
    assert.equal(client.ws.readyState, client.ws.OPEN, 'a client that answers pings stays connected');
  });

  it('cuts a peer that stops answering pings, releasing its subscriptions', async () => {
    const channel = freshChannel();
    const before = { connections: server.counters.connections.websocket, subscribers: server.hub.subscriberCount(channel) };
    const silent = await connect({ autoPong: false });
    await silent.request({ op: 'subscribe', channel });
    assert.equal(server.hub.subscriberCount(channel), before.subscribers + 1);
    const { code } = await withTimeout(silent.closed, 'the server to cut the silent peer', HEARTBEAT_MS * 4 + 2000);
    assert.equal(code, 1006, 'the server terminates the socket');
    await waitUntil(() => server.counters.connections.websocket === before.connections, 'the connection to be released');
    assert.equal(server.hub.subscriberCount(channel), before.subscribers);
  });
});
