// Three Herald processes on one redis-server are one service. Publishers spread single messages and
// batches over all nodes (some with idempotency keys, re-sent to another node after their 200: the
// same offsets, as duplicates, delivered once); subscribers of every transport spread over all nodes,
// each dropping its connection several times and resuming from its last cursor on the NEXT node (some
// long/short/JSONP pollers send every request to the next node). At the end every subscriber holds
// every message of its channels exactly once, in offset order, exactly as Redis stores them; and
// GET /v1/history answers the same on every node, with a cursor that resumes on any other node.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  deferrals,
  Failures,
  Ledger,
  Nodes,
  Publisher,
  Subscriber,
  delay,
  dropSchedule,
  mulberry32,
  pickChannels,
  runSeed,
  settle,
  truthClient,
  type Truth,
} from '../helpers/exactly-once.js';
import { startNodes, stopAll } from '../helpers/nodes.js';
import { startRedis } from '../helpers/redis.js';
import { openSession, TRANSPORT_KINDS, type Envelope } from '../helpers/resume-clients.js';

const CHANNELS = ['mn.a', 'mn:b', 'mn-c', 'mn/d@x'] as const;
const NODE_COUNT = 3;
const TOTAL_MESSAGES = 2500;
const SUBSCRIBERS_PER_TRANSPORT = 2;
const POLLING = new Set(['longpoll', 'shortpoll', 'jsonp']);

interface HistoryPage {
  messages: Envelope[];
  offset: number;
  oldest: number;
  epoch: string;
  cursor: string;
}

async function history(url: string, channel: string, query = ''): Promise<HistoryPage> {
  const res = await fetch(`${url}/v1/history?channel=${encodeURIComponent(channel)}${query}`);
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text) as HistoryPage;
}

/** A channel's whole retained history from one node, page by page (1000 at most per page). */
async function fullHistory(url: string, channel: string): Promise<{ epoch: string; messages: Envelope[] }> {
  const messages: Envelope[] = [];
  let epoch = '';
  for (;;) {
    const page = await history(url, channel, `&since=${messages.length}&limit=1000`);
    epoch = page.epoch;
    messages.push(...page.messages);
    if (page.messages.length < 1000) return { epoch, messages };
  }
}

describe('three Herald nodes on one Redis', () => {
  it('every subscriber, resuming on other nodes over every transport, gets every message exactly once, in order', { timeout: 90_000 }, async (t) => {
    const seed = runSeed();
    t.diagnostic(`seed ${seed} (E2E_SEED=${seed} replays the schedule)`);
    const random = mulberry32(seed);
    const defer = deferrals(t);
    const redis = await startRedis();
    defer(() => redis.stop());
    const servers = await startNodes(NODE_COUNT, ['--store', redis.url, '--history-size', '10000']);
    defer(() => stopAll(servers));
    const truthRedis = truthClient(redis);
    defer(() => truthRedis.disconnect());

    const nodes = new Nodes(servers.map((s) => s.url));
    const failures = new Failures();
    const ledger = new Ledger(failures.fail);
    const subscribers = Array.from({ length: TRANSPORT_KINDS.length * SUBSCRIBERS_PER_TRANSPORT }, (_, i) => {
      const kind = TRANSPORT_KINDS[i % TRANSPORT_KINDS.length]!;
      const channels = pickChannels(CHANNELS, random, i);
      const rotatePolls = POLLING.has(kind) && i >= TRANSPORT_KINDS.length;
      return new Subscriber({
        name: `${kind}#${i}${rotatePolls ? '(rotating)' : ''}[${channels.join(',')}]`,
        kind,
        channels,
        nodes,
        firstNode: i % NODE_COUNT,
        style: Math.floor(random() * 12),
        dropAfter: dropSchedule(random, 6, 30, 250),
        ledger,
        fail: failures.fail,
        resets: 'forbidden',
        tolerateErrors: () => false,
        rotatePolls,
      });
    });
    const publishers = Array.from({ length: NODE_COUNT }, (_, p) =>
      new Publisher({
        id: `p${p}`,
        nodes,
        firstNode: p,
        channels: CHANNELS,
        ledger,
        fail: failures.fail,
        random: mulberry32(seed + p + 1),
        keyedShare: 0.5,
        retryKeyed: false, // nothing fails here: a 503 or a lost connection fails the test
        resendShare: 0.3,
        pauseMs: 6,
      }),
    );
    const started = Date.now();
    try {
      for (const subscriber of subscribers) subscriber.start();
      for (const publisher of publishers) publisher.start();
      await failures.until(() => ledger.stats.messages >= TOTAL_MESSAGES, 30_000, () => ledger.summary());
      await Promise.all(publishers.map((p) => p.stop()));
      const publishedMs = Date.now() - started;
      assert.equal(ledger.unsettled.size, 0, 'every publish was acknowledged');
      assert.equal(ledger.stats.engineUnavailable + ledger.stats.connectionErrors, 0);
      assert.ok(ledger.stats.duplicatesConfirmed > 0, 'some keyed bodies were re-sent to another node');

      const truths = await settle({ nodes, channels: CHANNELS, ledger, failures, subscribers, redis: truthRedis });
      t.diagnostic(`${ledger.summary()}; published in ${publishedMs} ms`);
      t.diagnostic(
        `${subscribers.reduce((n, s) => n + s.sessions, 0)} subscriber sessions, ${subscribers.reduce((n, s) => n + s.deliveries, 0)} deliveries`,
      );
      for (const subscriber of subscribers) {
        assert.ok(subscriber.sessions >= 5, `${subscriber.name} resumed only ${subscriber.sessions - 1} times`);
        subscriber.nodesUsed.slice(1).forEach((node, i) => {
          assert.notEqual(node, subscriber.nodesUsed[i], `${subscriber.name} resumed on the node it left`);
        });
        assert.deepEqual(new Set(subscriber.nodesUsed).size, NODE_COUNT, `${subscriber.name} used every node`);
      }
      await Promise.all(subscribers.map((s) => s.stop()));

      await checkHistory(nodes, truths);
    } finally {
      await Promise.all(subscribers.map((s) => s.stop()));
      await Promise.all(publishers.map((p) => p.stop()));
    }
  });
});

/** GET /v1/history is the same on every node; a cursor from node A's history resumes on node C. */
async function checkHistory(nodes: Nodes, truths: ReadonlyMap<string, Truth>): Promise<void> {
  for (const channel of CHANNELS) {
    const truth = truths.get(channel)!;
    const perNode = await Promise.all(nodes.urls.map((url) => fullHistory(url, channel)));
    for (const [i, { epoch, messages }] of perNode.entries()) {
      assert.equal(epoch, truth.epoch, `node ${i}: epoch of ${channel}`);
      assert.deepEqual(messages.map((m) => m.offset), truth.keys.map((_, k) => k + 1), `node ${i}: offsets of ${channel}`);
      assert.deepEqual(messages.map((m) => (m.data as { k: string }).k), truth.keys, `node ${i}: history of ${channel}`);
      assert.deepEqual(messages, perNode[0]!.messages, `node ${i} answers ${channel}'s history as node 0 does`);
    }

    // The cursor of a page of node A's history resumes on node C, by poll and by SSE.
    const half = Math.floor(truth.keys.length / 2);
    const page = await history(nodes.urls[0]!, channel, `&limit=${half}`);
    assert.equal(page.messages.length, half);
    const rest = truth.keys.slice(half);
    const polled: string[] = [];
    let cursor = page.cursor;
    while (polled.length < rest.length) {
      const res = await fetch(`${nodes.urls[2]}/v1/poll?cursor=${cursor}&timeout=0&limit=1000`);
      const body = (await res.json()) as { messages: Envelope[]; cursor: string };
      assert.equal(res.status, 200);
      assert.ok(body.messages.length > 0, `node C's poll from node A's cursor stopped at ${polled.length}/${rest.length}`);
      polled.push(...body.messages.map((m) => (m.data as { k: string }).k));
      cursor = body.cursor;
    }
    assert.deepEqual(polled, rest, `${channel}: node A's history cursor resumed on node C (poll)`);

    const overSse: string[] = [];
    const session = openSession('sse', {
      baseUrl: nodes.urls[2]!,
      channels: [channel],
      cursor: page.cursor,
      style: 2, // ?cursor= alone
      sseEvents: ['tick'],
      onDelivery(delivery) {
        assert.equal(delivery.type, 'message');
        if (delivery.type === 'message') overSse.push((delivery.envelope.data as { k: string }).k);
      },
    });
    try {
      const deadline = Date.now() + 10_000;
      while (overSse.length < rest.length && Date.now() < deadline) await delay(10);
      await delay(50); // nothing more may come
    } finally {
      session.close();
    }
    assert.deepEqual(overSse, rest, `${channel}: node A's history cursor resumed on node C (SSE)`);
  }
}
