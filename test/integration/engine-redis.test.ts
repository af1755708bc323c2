// The Redis engine's own contract, against a real redis-server: lost fan-out is read back from the
// stream, idle windows leave and come back, the edge says clearly when Redis is gone, and bad URLs
// stop the server at startup.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { configFromArgs } from '../../src/cli/args.js';
import { startHerald, type RunningHerald } from '../../src/herald.js';
import { TRANSPORTS, errorCode, publishNumbers, waitUntil, type Subscription } from '../helpers/clients.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { publish } from '../helpers/server.js';

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('Redis engine', () => {
  let redis: RedisServer;
  const nodes: RunningHerald[] = [];
  const open: Subscription[] = [];
  const startNode = async (): Promise<RunningHerald> => {
    const node = await startHerald({ port: 0, store: redis.url, logLevel: 'silent' });
    nodes.push(node);
    return node;
  };

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await Promise.all(open.map((s) => s.close()));
    await Promise.all(nodes.map((n) => n.close()));
    await redis.stop();
  });

  it('reads back what the fan-out lost when its connection is killed mid-stream, on every transport', async () => {
    const [a, b] = [await startNode(), await startNode()];
    const channel = 'lost-fan-out';
    const subs = await Promise.all(TRANSPORTS.map((t) => t.connect(b.url, { channels: [channel] })));
    open.push(...subs);
    await publishNumbers(a.url, channel, range(1, 5));
    await Promise.all(subs.map((s) => s.waitForMessages(5)));
    // Every pub/sub connection of both nodes goes; the publishes made meanwhile reach no node's fan-out.
    await redis.cli('CLIENT', 'KILL', 'TYPE', 'pubsub');
    for (const n of range(6, 25)) await publishNumbers(a.url, channel, [n]);
    for (const sub of subs) {
      const messages = await sub.waitForMessages(25, 15_000);
      assert.deepEqual(messages.map((m) => m.offset), range(1, 25));
      assert.deepEqual(messages.map((m) => m.data), range(1, 25).map((n) => ({ n })));
    }
  });

  it('lets an idle window go and loads it again, continuing where the channel is', async () => {
    const node = await startNode();
    const channel = 'idle-window';
    await publishNumbers(node.url, channel, [1, 2]);
    const first = await fetch(`${node.url}/v1/poll?channel=${channel}&since=beginning&timeout=0`).then((r) => r.json() as Promise<{ cursor: string }>);
    const before = node.hub.engine.channelCount;
    node.hub.sweep(Date.now() + 60_000);
    assert.equal(node.hub.engine.channelCount, before - 1, 'the unused window left memory');
    await publishNumbers(node.url, channel, [3]);
    const again = (await fetch(`${node.url}/v1/poll?channel=${channel}&cursor=${first.cursor}&timeout=0`).then((r) => r.json())) as { messages: { offset: number }[] };
    assert.deepEqual(again.messages.map((m) => m.offset), [3]);
  });

  it('refuses a start whose Redis cannot be reached, naming it', async () => {
    await assert.rejects(startHerald({ port: 0, store: 'redis://127.0.0.1:1', logLevel: 'silent' }), /Redis engine at 127\.0\.0\.1:1 is unreachable/);
  });

  it('refuses malformed store URLs at startup', () => {
    for (const bad of ['redis://', 'redis://host:99999', 'redis://a:1,b:2', 'redis-cluster://h:1/3', 'postgres://x']) {
      assert.throws(() => configFromArgs(['--store', bad], {}), /--store/, bad);
    }
    assert.equal((configFromArgs(['--store', 'redis://u:p%40ss@127.0.0.1:6380/2'], {}) as { store: string }).store, 'redis://u:p%40ss@127.0.0.1:6380/2');
  });
});

describe('Redis engine, Redis gone', () => {
  let redis: RedisServer;
  let node: RunningHerald;

  before(async () => {
    redis = await startRedis();
    node = await startHerald({ port: 0, store: redis.url, logLevel: 'silent' });
  });
  after(async () => {
    await node.close();
    await redis.stop();
  });

  it('answers 503 engine_unavailable to publishes and new channels, and /healthz says degraded; all recovers', async () => {
    await publishNumbers(node.url, 'before', [1]);
    await redis.kill();
    await waitUntil(async () => (await fetch(`${node.url}/healthz`)).status === 503, 'healthz turns 503', 5000);
    const health = await (await fetch(`${node.url}/healthz`)).json();
    assert.deepEqual(health, { status: 'degraded', reason: 'redis_unreachable', engine: 'redis' });
    const refused = await publish(node.url, { channel: 'before', data: 2 });
    assert.equal(refused.status, 503);
    const body = (await refused.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'engine_unavailable');
    assert.equal(typeof body.error.message, 'string');
    const poll = await fetch(`${node.url}/v1/poll?channel=never-loaded&timeout=0`);
    assert.equal(poll.status, 503);
    assert.equal(await errorCode(poll), 'engine_unavailable');
    await redis.restart();
    await waitUntil(async () => (await fetch(`${node.url}/healthz`)).status === 200, 'healthz back to 200', 10_000);
    await waitUntil(async () => (await publish(node.url, { channel: 'after', data: 1 })).status === 200, 'publishes accepted again', 10_000);
  });
});
