// Herald must give back what clients take: after 10,000 connects and disconnects nothing is left in the
// hub or the counters; a client that stops reading is cut once its unsent bytes pass the limit (and
// resumes from its cursor with nothing lost); a WebSocket peer that stops answering pings is dropped.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import WebSocket from 'ws';
import type { RunningHerald } from '../../src/herald.js';
import { TRANSPORTS } from '../../src/metrics.js';
import { publish, startTestServer } from '../helpers/server.js';
import {
  openSession,
  parseServerFrames,
  rawRequest,
  rawUpgradeRequest,
  readToEnd,
  splitHttpResponse,
  waitUntil,
  type Envelope,
} from '../helpers/resume-clients.js';

// A real collection before each memory reading, so the figures are live objects, not garbage.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Live array-buffer bytes: collected, and given V8's concurrent array-buffer sweeper time to finish. */
async function liveArrayBuffers(): Promise<number> {
  let least = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
    least = Math.min(least, process.memoryUsage().arrayBuffers);
  }
  return least;
}

function describeServer(herald: RunningHerald): string {
  return JSON.stringify({
    connections: herald.counters.connections,
    subscriptions: herald.hub.subscriptionCount,
    channels: Object.fromEntries(herald.hub.subscriberCounts()),
  });
}

/** Waits until the server holds no connection and no subscription. */
async function waitReleased(herald: RunningHerald, timeoutMs = 10_000): Promise<void> {
  await waitUntil(
    () => TRANSPORTS.every((t) => herald.counters.connections[t] === 0) && herald.hub.subscriptionCount === 0,
    timeoutMs,
    () => `server still holds ${describeServer(herald)}`,
  );
  assert.deepEqual(herald.counters.connections, { websocket: 0, sse: 0, stream: 0, iframe: 0, poll: 0 });
  assert.equal(herald.hub.subscriptionCount, 0);
  assert.equal(herald.hub.subscriberCounts().size, 0, 'no channel keeps an (empty) subscriber set');
}

async function postOk(url: string, body: unknown): Promise<void> {
  const res = await publish(url, body);
  assert.equal(res.status, 200, await res.text());
}

/** Runs `task(0..count-1)` with at most `limit` at a time. */
async function runBounded(count: number, limit: number, task: (n: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

const CYCLE_CHANNELS = ['res.0', 'res.1', 'res.2', 'res.3', 'res.4'];

/** One client that connects, maybe receives something, and goes away (politely or not). */
async function cycle(url: string, n: number): Promise<void> {
  const channel = CYCLE_CHANNELS[n % CYCLE_CHANNELS.length]!;
  const kind = (['sse', 'websocket', 'poll', 'stream'] as const)[Math.floor(n / CYCLE_CHANNELS.length) % 4]!;
  const variant = Math.floor(n / 20) % 3;
  const controller = new AbortController();
  const { signal } = controller;
  switch (kind) {
    case 'sse':
    case 'stream': {
      // variant 0: gone right after the headers; 1: after the first bytes (the SSE opening, or replay);
      // 2: two channels, replayed from the beginning, read once.
      const query = variant === 2 ? `channel=${channel}&channel=res.shared&since=beginning` : `channel=${channel}${variant === 1 ? '&since=beginning' : ''}`;
      const res = await fetch(`${url}/v1/${kind}?${query}`, { signal });
      assert.equal(res.status, 200);
      if (variant > 0) {
        const reader = res.body!.getReader();
        await reader.read();
      }
      controller.abort();
      return;
    }
    case 'websocket': {
      const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/ws${variant === 1 ? `?channel=${channel}&since=beginning` : ''}`);
      ws.on('error', () => {});
      await once(ws, 'open');
      if (variant === 1) await once(ws, 'message');
      if (variant === 2) {
        ws.send(JSON.stringify({ op: 'subscribe', channel, id: 1 }));
        ws.send(JSON.stringify({ op: 'subscribe', channel: 'res.shared', since: 'beginning', id: 2 }));
        await once(ws, 'message');
        // A polite close handshake this time.
        ws.close();
        await once(ws, 'close');
        return;
      }
      ws.terminate();
      return;
    }
    case 'poll': {
      // variant 0: answered at once from history; 1: held at the head and dropped while waiting;
      // 2: held at the head until the background publisher's next message answers it.
      const query = variant === 0 ? `channel=${channel}&since=beginning` : `channel=${channel}`;
      const pending = fetch(`${url}/v1/poll?${query}&timeout=30`, { signal });
      if (variant === 1) {
        setTimeout(() => controller.abort(), n % 7);
        await pending.then((res) => res.text()).catch((err: unknown) => {
          if ((err as Error).name !== 'AbortError') throw err;
        });
        return;
      }
      const res = await pending;
      assert.equal(res.status, 200);
      await res.text();
      return;
    }
  }
}

describe('resources', () => {
  const servers: RunningHerald[] = [];
  const sockets: (Socket | WebSocket)[] = [];
  after(async () => {
    for (const socket of sockets) socket instanceof WebSocket ? socket.terminate() : socket.destroy();
    for (const server of servers) await server.close();
  });

  it('releases everything after 10,000 connect/disconnect cycles', { timeout: 120_000 }, async (t) => {
    const herald = await startTestServer();
    servers.push(herald);
    for (const channel of [...CYCLE_CHANNELS, 'res.shared']) await postOk(herald.url, { channel, data: { seed: channel } });
    // Live traffic while clients come and go: fan-out to connected clients, answers to held polls.
    let isPublishing = true;
    const publisher = (async () => {
      for (let i = 0; isPublishing; i++) {
        await postOk(herald.url, { messages: [...CYCLE_CHANNELS, 'res.shared'].map((channel) => ({ channel, data: i })) });
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    const heapAfter: number[] = [];
    try {
      for (const [from, to] of [[0, 2000], [2000, 10_000]] as const) {
        await runBounded(to - from, 50, (k) => cycle(herald.url, from + k));
        gc();
        heapAfter.push(process.memoryUsage().heapUsed);
      }
    } finally {
      isPublishing = false;
      await publisher;
    }
    await waitReleased(herald);
    assert.equal(herald.hub.engine.channelCount, CYCLE_CHANNELS.length + 1, 'no channel window beyond the ones used');
    // Server and clients share this process: 8,000 more cycles may not leave more than ~1 KiB each.
    const growth = heapAfter[1]! - heapAfter[0]!;
    t.diagnostic(`heap after 2,000 cycles ${(heapAfter[0]! / 1048576).toFixed(1)} MiB, after 10,000 ${(heapAfter[1]! / 1048576).toFixed(1)} MiB`);
    assert.ok(growth < 8 * 1024 * 1024, `heap grew by ${(growth / 1048576).toFixed(1)} MiB over 8,000 cycles`);
  });

  it('cuts clients that stop reading, without buffering past the limit, and they resume from their cursor', { timeout: 60_000 }, async (t) => {
    const maxBufferedBytes = 64 * 1024;
    const herald = await startTestServer({ maxBufferedBytes, maxBodyBytes: 1024 * 1024, historySize: 5000 });
    servers.push(herald);
    const channels = ['slow.a', 'slow.b'];
    // Two channels per client, so every frame is built for that client (nothing shared with others):
    // an unbounded buffer would show in this process's memory.
    const wsSocket = await rawRequest(herald.url, rawUpgradeRequest(herald.url, `/v1/ws?channel=slow.a&channel=slow.b`));
    const { host } = new URL(herald.url);
    const sseSocket = await rawRequest(herald.url, `GET /v1/sse?channel=slow.a&channel=slow.b HTTP/1.1\r\nHost: ${host}\r\nAccept: text/event-stream\r\n\r\n`);
    sockets.push(wsSocket, sseSocket);
    // Neither socket is read from here on: Node takes what fits its small read buffer, then stops.
    wsSocket.pause();
    sseSocket.pause();
    await waitUntil(
      () => herald.counters.connections.websocket === 1 && herald.counters.connections.sse === 1 && herald.hub.subscriptionCount === 4,
      5000,
      () => `slow clients not subscribed: ${describeServer(herald)}`,
    );

    const baseline = await liveArrayBuffers();
    const payload = 'x'.repeat(32 * 1024);
    const messageCount = 1200; // ~38 MiB, far more than the socket buffers of both ends can hold
    let publishedWhenCut = 0;
    for (let i = 1; i <= messageCount; i++) {
      await postOk(herald.url, { channel: channels[i % 2]!, data: { i, payload } });
      const cuts = herald.counters.slowConsumerCuts;
      if (publishedWhenCut === 0 && cuts.websocket > 0 && cuts.sse > 0) publishedWhenCut = i;
    }
    const grown = await liveArrayBuffers();
    assert.ok(publishedWhenCut > 0, `both slow clients are cut: ${JSON.stringify(herald.counters.slowConsumerCuts)}`);
    await waitReleased(herald);
    // The history (strings on the heap) grows by what was published; buffers for the slow clients must
    // not: unbounded, they would hold every frame published (~75 MiB here for the two clients).
    const bufferGrowth = grown - baseline;
    assert.ok(bufferGrowth < 16 * 1024 * 1024, `unsent buffers grew by ${(bufferGrowth / 1048576).toFixed(1)} MiB`);

    const heads = new Map([['slow.a', messageCount / 2], ['slow.b', messageCount / 2]]);

    // What the WebSocket client did receive before the cut: the frames up to the close frame.
    const wsBytes = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      wsSocket.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        const bytes = Buffer.concat(chunks);
        const headEnd = bytes.indexOf('\r\n\r\n');
        if (headEnd >= 0 && parseServerFrames(bytes.subarray(headEnd + 4)).some((f) => f.opcode === 8)) resolve(bytes);
      });
      wsSocket.once('close', () => resolve(Buffer.concat(chunks)));
      wsSocket.resume();
    });
    wsSocket.destroy();
    const wsHeadEnd = wsBytes.indexOf('\r\n\r\n');
    assert.match(wsBytes.subarray(0, wsHeadEnd).toString('latin1'), /^HTTP\/1\.1 101 /);
    const wsFrames = parseServerFrames(wsBytes.subarray(wsHeadEnd + 4));
    const close = wsFrames.find((f) => f.opcode === 8);
    assert.ok(close !== undefined, 'the server closed the socket with a close frame');
    assert.equal(close.payload.readUInt16BE(0), 4008, 'close code slow_consumer');
    const wsReceived = wsFrames
      .filter((f) => f.opcode === 1)
      .map((f) => JSON.parse(f.payload.toString()) as Envelope & { op: string })
      .filter((f) => f.op === 'message');

    // What the SSE client did receive before the cut: the complete events.
    const { head: sseHead, body: sseBody } = splitHttpResponse(await readToEnd(sseSocket));
    assert.match(sseHead, /^HTTP\/1\.1 200 /);
    const sseText = sseBody.toString('utf8');
    const sseReceived = sseText
      .slice(0, sseText.lastIndexOf('\n\n') + 2)
      .split('\n\n')
      .map((block) => block.split('\n').find((line) => line.startsWith('data: ')))
      .filter((line): line is string => line !== undefined)
      .map((line) => JSON.parse(line.slice('data: '.length)) as Envelope)
      .filter((entry) => typeof entry.offset === 'number'); // messages only, not other events

    const diagnostics: string[] = [];
    for (const [kind, received] of [['websocket', wsReceived], ['sse', sseReceived]] as const) {
      assert.ok(received.length < messageCount, `${kind} got ${received.length} before the cut`);
      // Resume from the last cursor received. A replay larger than the limit gets the resumed client
      // cut again (replay is written at once): like any cut client, it resumes from its last cursor.
      const resumed: Envelope[] = [];
      const unexpected: string[] = [];
      const remaining = messageCount - received.length;
      let cursor = received.at(-1)?.cursor;
      let sessions = 0;
      const deadline = Date.now() + 20_000;
      while (resumed.length < remaining) {
        assert.ok(Date.now() < deadline, `${kind}: resumed only ${resumed.length}/${remaining} in ${sessions} sessions`);
        sessions++;
        let done!: () => void;
        const complete = new Promise<void>((resolve) => (done = resolve));
        const session = openSession(kind, {
          baseUrl: herald.url,
          channels,
          cursor,
          style: 0,
          onDelivery(delivery) {
            if (delivery.type === 'message') {
              resumed.push(delivery.envelope);
              cursor = delivery.envelope.cursor;
            } else unexpected.push(`${kind}: reset on resume ${JSON.stringify(delivery.reset)}`);
            if (resumed.length === remaining) done();
          },
        });
        const end = await Promise.race([complete.then(() => undefined), session.ended]);
        session.close();
        if (end !== undefined) assert.equal(end.kind, 'error', `${kind}: ${JSON.stringify(end)}`);
      }
      diagnostics.push(`${kind}: ${received.length} before the cut, the rest in ${sessions} resumed session(s)`);
      assert.deepEqual(unexpected, []);
      for (const channel of channels) {
        const offsets = [...received, ...resumed].filter((m) => m.channel === channel).map((m) => m.offset);
        assert.deepEqual(offsets, Array.from({ length: heads.get(channel)! }, (_, k) => k + 1), `${kind} ${channel}: all, once, in order`);
      }
    }
    assert.ok(publishedWhenCut < messageCount, `cut after ${publishedWhenCut} messages`);
    t.diagnostic(`cut after ${publishedWhenCut} of ${messageCount} messages; buffers grew ${(bufferGrowth / 1048576).toFixed(2)} MiB; ${diagnostics.join('; ')}`);
    await settle();
    await waitReleased(herald);
  });

  it('replays a backlog far larger than the buffer limit without cutting the client', { timeout: 30_000 }, async () => {
    const herald = await startTestServer({ maxBufferedBytes: 64 * 1024, maxBodyBytes: 1024 * 1024, historySize: 1000 });
    servers.push(herald);
    const payload = 'y'.repeat(16 * 1024);
    for (let i = 0; i < 10; i++) {
      await postOk(herald.url, { messages: Array.from({ length: 20 }, (_, k) => ({ channel: k % 2 === 0 ? 'big.a' : 'big.b', data: { k, payload } })) });
    }
    // 200 messages, 3.2 MiB: fifty times the limit. Each client must get all of it in one connection.
    for (const kind of ['sse', 'websocket', 'stream', 'iframe'] as const) {
      const offsets = new Map<string, number[]>([['big.a', []], ['big.b', []]]);
      let count = 0;
      let done!: () => void;
      const complete = new Promise<void>((resolve) => (done = resolve));
      const session = openSession(kind, {
        baseUrl: herald.url,
        channels: ['big.a', 'big.b'],
        cursor: undefined,
        style: 0,
        onDelivery(delivery) {
          if (delivery.type === 'message') offsets.get(delivery.envelope.channel)!.push(delivery.envelope.offset);
          if (++count === 200) done();
        },
      });
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<{ kind: 'stalled' }>((resolve) => {
        timer = setTimeout(() => resolve({ kind: 'stalled' }), 10_000);
      });
      const end = await Promise.race([complete.then(() => undefined), session.ended, stalled]);
      clearTimeout(timer);
      session.close();
      assert.equal(end, undefined, `${kind} connection ended after ${count} of 200: ${JSON.stringify(end)}`);
      for (const list of offsets.values()) assert.deepEqual(list, Array.from({ length: 100 }, (_, k) => k + 1), kind);
    }
    assert.deepEqual(herald.counters.slowConsumerCuts, { websocket: 0, sse: 0, stream: 0, iframe: 0, poll: 0 });
    await waitReleased(herald);
  });

  it('drops a WebSocket peer that stops answering pings within ~3 s', { timeout: 20_000 }, async () => {
    const herald = await startTestServer({ heartbeatMs: 1000 });
    servers.push(herald);
    // A ws client whose socket is paused (it never reads a ping, so never answers), and a raw socket
    // that did the upgrade and never reads anything.
    const client = new WebSocket(`${herald.url.replace(/^http/, 'ws')}/v1/ws?channel=dead.a`);
    sockets.push(client);
    client.on('error', () => {});
    await once(client, 'open');
    (client as unknown as { _socket: Socket })._socket.pause();
    const raw = await rawRequest(herald.url, rawUpgradeRequest(herald.url, '/v1/ws?channel=dead.b'));
    sockets.push(raw);
    raw.pause();
    await waitUntil(() => herald.counters.connections.websocket === 2, 5000, () => describeServer(herald));
    const startedMs = Date.now();
    await waitReleased(herald, 5000);
    const tookMs = Date.now() - startedMs;
    assert.ok(tookMs <= 3000, `released after ${tookMs} ms`);
  });
});
