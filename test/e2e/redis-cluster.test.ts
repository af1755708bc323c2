// Two Herald nodes on a real 3-master Redis Cluster (no replicas). Channels are picked so that every
// master owns some of them (asserted: each channel's keys and shard channel live in the slot of its hash
// tag {channel}); publishers spread over both nodes, subscribers of several transports drop and resume
// on the other node, and every subscriber ends with every message exactly once, in order, as the
// Cluster stores them. A batch spanning channels of all three masters is answered per message, offsets
// dense per channel.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Cluster, Redis } from 'ioredis';
import {
  Failures,
  Ledger,
  Nodes,
  Publisher,
  Subscriber,
  delay,
  dropSchedule,
  mulberry32,
  pickChannels,
  readTruth,
  runSeed,
  settle,
  truthClient,
} from '../helpers/exactly-once.js';
import { startNodes, stopAll } from '../helpers/nodes.js';
import { channelsOnEveryMaster, slotOwnerPort, startRedisCluster, type RedisClusterServer } from '../helpers/redis.js';
import { openSession, type Delivery, type TransportKind } from '../helpers/resume-clients.js';
import { publish, type ServerProcess } from '../helpers/server.js';

const KINDS: TransportKind[] = ['sse', 'websocket', 'longpoll', 'stream'];
const TOTAL_MESSAGES = 1500;

/** Which master (by port) serves each channel, and a check that all three serve some. */
async function ownersOf(cluster: RedisClusterServer, channels: readonly string[]): Promise<Map<string, number>> {
  const owners = new Map<string, number>();
  for (const channel of channels) owners.set(channel, await slotOwnerPort(cluster, `{${channel}}`));
  return owners;
}

describe('two Herald nodes on a 3-master Redis Cluster', () => {
  let cluster: RedisClusterServer | undefined;
  let servers: ServerProcess[] = [];
  let truthRedis: Redis | Cluster | undefined;

  before(async () => {
    cluster = await startRedisCluster();
    servers = await startNodes(2, ['--store', cluster.url, '--history-size', '10000']);
    truthRedis = truthClient(cluster);
  });

  after(async () => {
    truthRedis?.disconnect();
    await stopAll(servers);
    await cluster?.stop();
  });

  it('every subscriber gets every message exactly once, in order, with channels on every master', { timeout: 60_000 }, async (t) => {
    const seed = runSeed();
    t.diagnostic(`seed ${seed} (E2E_SEED=${seed} replays the schedule)`);
    const random = mulberry32(seed);
    const channels = await channelsOnEveryMaster(cluster!, 'rc-', 2);
    const owners = await ownersOf(cluster!, channels);
    for (const port of cluster!.ports) {
      const owned = channels.filter((c) => owners.get(c) === port);
      assert.ok(owned.length >= 2, `master ${port} owns ${owned.length} of ${channels.join(',')}`);
    }
    t.diagnostic(`${channels.length} channels: ${channels.map((c) => `${c}@${owners.get(c)}`).join(' ')}`);

    const nodes = new Nodes(servers.map((s) => s.url));
    const failures = new Failures();
    const ledger = new Ledger(failures.fail);
    const subscribers = Array.from({ length: KINDS.length * 2 }, (_, i) => {
      const kind = KINDS[i % KINDS.length]!;
      const picked = pickChannels(channels, random, i);
      const rotatePolls = kind === 'longpoll' && i >= KINDS.length;
      return new Subscriber({
        name: `${kind}#${i}${rotatePolls ? '(rotating)' : ''}[${picked.join(',')}]`,
        kind,
        channels: picked,
        nodes,
        firstNode: i % 2,
        style: Math.floor(random() * 12),
        dropAfter: dropSchedule(random, 5, 20, 150),
        ledger,
        fail: failures.fail,
        resets: 'forbidden',
        tolerateErrors: () => false,
        rotatePolls,
      });
    });
    const publishers = [0, 1].map(
      (p) =>
        new Publisher({
          id: `c${p}`,
          nodes,
          firstNode: p,
          channels,
          ledger,
          fail: failures.fail,
          random: mulberry32(seed + p + 1),
          keyedShare: 0.5,
          retryKeyed: false,
          resendShare: 0.3,
          pauseMs: 6,
        }),
    );
    try {
      for (const subscriber of subscribers) subscriber.start();
      for (const publisher of publishers) publisher.start();
      await failures.until(() => ledger.stats.messages >= TOTAL_MESSAGES, 30_000, () => ledger.summary());
      await Promise.all(publishers.map((p) => p.stop()));
      assert.equal(ledger.unsettled.size, 0, 'every publish was acknowledged');
      assert.equal(ledger.stats.engineUnavailable + ledger.stats.connectionErrors, 0);
      await settle({ nodes, channels, ledger, failures, subscribers, redis: truthRedis! });
      t.diagnostic(ledger.summary());
      t.diagnostic(`${subscribers.reduce((n, s) => n + s.sessions, 0)} subscriber sessions, ${subscribers.reduce((n, s) => n + s.deliveries, 0)} deliveries`);
      for (const subscriber of subscribers) assert.ok(subscriber.sessions >= 4, `${subscriber.name}: ${subscriber.sessions} sessions`);
    } finally {
      await Promise.all(subscribers.map((s) => s.stop()));
      await Promise.all(publishers.map((p) => p.stop()));
    }
  });

  it('a batch spanning channels on all three masters is stored per channel, answered per message', { timeout: 30_000 }, async () => {
    const candidates = await channelsOnEveryMaster(cluster!, 'rcb-', 1);
    const owners = await ownersOf(cluster!, candidates);
    // One channel per master.
    const channels = cluster!.ports.map((port) => candidates.find((c) => owners.get(c) === port)!);
    assert.equal(new Set(channels.map((c) => owners.get(c))).size, 3);
    const [url0, url1] = servers.map((s) => s.url) as [string, string];

    // A first message on one of them, so offsets of the batch start past a head for that one.
    const first = await publish(url0, { channel: channels[0], data: 'before' });
    assert.equal(first.status, 200);

    // Subscribed on the other node before the batch.
    const seen: Delivery[] = [];
    const session = openSession('websocket', { baseUrl: url1, channels, cursor: undefined, style: 1, onDelivery: (d) => seen.push(d) });
    try {
      const messages = Array.from({ length: 12 }, (_, i) => ({ channel: channels[i % 3]!, data: { i }, ...(i % 4 === 0 ? { event: 'e' } : {}) }));
      const res = await publish(url0, { messages });
      const text = await res.text();
      assert.equal(res.status, 200, text);
      const { results } = JSON.parse(text) as { results: { channel: string; offset: number; epoch: string; duplicate?: true }[] };
      assert.equal(results.length, messages.length);
      results.forEach((result, i) => {
        assert.equal(result.channel, messages[i]!.channel, `result ${i} is for message ${i}`);
        assert.equal(result.duplicate, undefined);
      });
      for (const [c, channel] of channels.entries()) {
        const mine = results.filter((r) => r.channel === channel);
        const start = c === 0 ? 2 : 1;
        assert.deepEqual(mine.map((r) => r.offset), [start, start + 1, start + 2, start + 3], `${channel}: dense offsets in batch order`);
        assert.equal(new Set(mine.map((r) => r.epoch)).size, 1, `${channel}: one epoch`);
        // What the master owning the channel holds.
        const truth = await readTruth(truthRedis!, channel);
        assert.equal(truth.epoch, mine[0]!.epoch);
        assert.equal(truth.keys.length, start + 3);
      }
      // The other node delivers them, per channel in batch order.
      const deadline = Date.now() + 10_000;
      while (seen.filter((d) => d.type === 'message').length < 13 && Date.now() < deadline) await delay(10);
      for (const [c, channel] of channels.entries()) {
        const got = seen.flatMap((d) => (d.type === 'message' && d.envelope.channel === channel ? [d.envelope] : []));
        const expected = messages.flatMap((m, i) => (m.channel === channel ? [{ i }] : []));
        assert.deepEqual(got.map((e) => e.data), c === 0 ? ['before', ...expected] : expected, `${channel} over WebSocket on the other node`);
        assert.deepEqual(got.map((e) => e.offset), got.map((_, k) => k + 1));
      }
      assert.ok(seen.every((d) => d.type === 'message'), 'no reset');
    } finally {
      session.close();
    }
  });
});
