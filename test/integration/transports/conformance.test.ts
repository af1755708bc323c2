// The same scenarios against every transport (SSE, WebSocket, long poll, short poll, JSONP, NDJSON
// stream, hidden iframe), with real clients: delivery, ordering, since=beginning, resume by cursor,
// cursors across transports, one cursor for many channels, reset notices, and refused requests.
// Each runs on three deployments: one embedded node; one node on Redis; and two nodes on Redis, with
// every publish going to one node and every subscription to the other.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startHerald, type RunningHerald } from '../../../src/herald.js';
import {
  SUITE_TIMEOUT_MS,
  TRANSPORTS,
  publishNumbers,
  publishOk,
  waitUntil,
  type Entry,
  type Envelope,
  type Subscription,
} from '../../helpers/clients.js';
import { startRedis, type RedisServer } from '../../helpers/redis.js';
import { startTestServer } from '../../helpers/server.js';

/** Retained history on the small server, to make cursors fall out of history. */
const TINY_HISTORY = 5;

/** Where a suite subscribes and where it publishes (the same node, or two nodes of one service). */
interface Service {
  subscribeUrl: string;
  publishUrl: string;
}

interface Deployment {
  name: string;
  /** Starts the main service and the one with tiny history (separate histories: other epochs). */
  start(): Promise<{ main: Service; tiny: Service; stop(): Promise<void> }>;
}

let channelCount = 0;

/** A channel name no other test uses. */
function freshChannel(label: string): string {
  return `conf-${label}-${++channelCount}`;
}

const offsetsOf = (messages: readonly Envelope[]): number[] => messages.map((m) => m.offset);
const summary = (entries: readonly Entry[]): string[] =>
  entries.map((e) => (e.kind === 'reset' ? `reset:${e.channel}@${e.from}` : `${e.channel}#${e.offset}`));

/** The head offset of `channel` as the node at `url` sees it. */
async function historyHead(url: string, channel: string): Promise<number> {
  const res = await fetch(`${url}/v1/history?channel=${channel}&limit=1`);
  return ((await res.json()) as { offset: number }).offset;
}

/** 1..n */
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

const onRedis = (nodeCount: 1 | 2): Deployment => ({
  name: nodeCount === 1 ? 'one node on Redis' : 'two nodes on Redis',
  async start() {
    // Two Redis servers: the tiny service's history must be apart from the main one's.
    const redises: RedisServer[] = await Promise.all([startRedis(), startRedis()]);
    const nodes: RunningHerald[] = [];
    const service = async (redis: RedisServer, historySize?: number): Promise<Service> => {
      const options = { port: 0, store: redis.url, logLevel: 'silent', ...(historySize === undefined ? {} : { historySize }) };
      const started = await Promise.all(Array.from({ length: nodeCount }, () => startHerald(options)));
      nodes.push(...started);
      return { publishUrl: started[0]!.url, subscribeUrl: started.at(-1)!.url };
    };
    const [main, tiny] = await Promise.all([service(redises[0]!), service(redises[1]!, TINY_HISTORY)]);
    return {
      main,
      tiny,
      async stop() {
        await Promise.all(nodes.map((node) => node.close()));
        await Promise.all(redises.map((redis) => redis.stop()));
      },
    };
  },
});

const DEPLOYMENTS: Deployment[] = [
  {
    name: 'embedded',
    async start() {
      const [main, tiny] = await Promise.all([startTestServer(), startTestServer({ historySize: TINY_HISTORY })]);
      const service = (node: RunningHerald): Service => ({ subscribeUrl: node.url, publishUrl: node.url });
      return {
        main: service(main),
        tiny: service(tiny),
        async stop() {
          await Promise.all([main.close(), tiny.close()]);
        },
      };
    },
  },
  onRedis(1),
  onRedis(2),
];

for (const deployment of DEPLOYMENTS) {
  describe(deployment.name, () => {
    let main: Service;
    let tiny: Service;
    let stop: () => Promise<void>;

    before(async () => {
      ({ main, tiny, stop } = await deployment.start());
    });
    after(async () => {
      await stop();
    });

    for (const transport of TRANSPORTS) {
      describe(`transport: ${transport.name}`, { timeout: SUITE_TIMEOUT_MS }, () => {
        const open: Subscription[] = [];
        const connect = async (url: string, options: Parameters<typeof transport.connect>[1]): Promise<Subscription> => {
          const subscription = await transport.connect(url, options);
          open.push(subscription);
          return subscription;
        };
        after(async () => {
          await Promise.all(open.map((s) => s.close()));
        });

        it('delivers live messages as full envelopes', async () => {
          const channel = freshChannel(transport.name);
          const sub = await connect(main.subscribeUrl, { channels: [channel] });
          const [first] = await publishOk(main.publishUrl, { channel, data: { text: 'héllo', list: [1, null, true] }, event: 'greet' });
          const [second] = await publishOk(main.publishUrl, { channel, data: 'plain string' });
          const [third] = await publishOk(main.publishUrl, { channel, data: null });
          const messages = await sub.waitForMessages(3);
          assert.equal(messages.length, 3);
          assert.deepEqual(messages[0], {
            kind: 'message',
            channel,
            offset: 1,
            epoch: first!.epoch,
            event: 'greet',
            data: { text: 'héllo', list: [1, null, true] },
            cursor: messages[0]!.cursor,
          });
          assert.deepEqual(messages[1], { kind: 'message', channel, offset: 2, epoch: second!.epoch, data: 'plain string', cursor: messages[1]!.cursor });
          assert.deepEqual(messages[2], { kind: 'message', channel, offset: 3, epoch: third!.epoch, data: null, cursor: messages[2]!.cursor });
          for (const message of messages) assert.ok(message.cursor.length > 0, 'every envelope carries a cursor');
          assert.equal(new Set(messages.map((m) => m.cursor)).size, 3, 'each message has its own cursor');
        });

        it('delivers many concurrently published messages once each, in offset order', async () => {
          const channel = freshChannel(transport.name);
          const sub = await connect(main.subscribeUrl, { channels: [channel] });
          // Three publishers at once, each in its own order, plus one batch.
          const publisher = async (name: string, count: number): Promise<{ offset: number; data: unknown }[]> => {
            const sent: { offset: number; data: unknown }[] = [];
            for (let i = 0; i < count; i++) {
              const data = { publisher: name, i };
              const [result] = await publishOk(main.publishUrl, { channel, data });
              sent.push({ offset: result!.offset, data });
            }
            return sent;
          };
          const batch = async (): Promise<{ offset: number; data: unknown }[]> => {
            const messages = range(0, 89).map((i) => ({ channel, data: { publisher: 'batch', i } }));
            const results = await publishOk(main.publishUrl, { messages });
            return results.map((r, i) => ({ offset: r.offset, data: messages[i]!.data }));
          };
          const sent = (await Promise.all([publisher('a', 20), publisher('b', 20), publisher('c', 20), batch()])).flat();
          const total = sent.length;
          assert.deepEqual(sent.map((s) => s.offset).sort((x, y) => x - y), range(1, total), 'offsets 1..n without gaps');
          const messages = await sub.waitForMessages(total, 10_000);
          assert.deepEqual(offsetsOf(messages), range(1, total));
          const dataByOffset = new Map(sent.map((s) => [s.offset, s.data]));
          for (const message of messages) assert.deepEqual(message.data, dataByOffset.get(message.offset));
          for (const name of ['a', 'b', 'c', 'batch']) {
            const seq = messages.map((m) => m.data as { publisher: string; i: number }).filter((d) => d.publisher === name).map((d) => d.i);
            assert.deepEqual(seq, range(0, seq.length - 1), `publisher ${name}'s messages arrive in its order`);
          }
        });

        it('starts at the oldest retained message with since=beginning, then goes live', async () => {
          const channel = freshChannel(transport.name);
          await publishNumbers(main.publishUrl, channel, [1, 2, 3]);
          const sub = await connect(main.subscribeUrl, { channels: [channel], since: 'beginning' });
          await sub.waitForMessages(3);
          await publishNumbers(main.publishUrl, channel, [4]);
          const messages = await sub.waitForMessages(4);
          assert.deepEqual(offsetsOf(messages), [1, 2, 3, 4]);
          assert.deepEqual(messages.map((m) => m.data), [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]);
          assert.ok(sub.entries.items.every((e) => e.kind === 'message'), 'no reset for a fresh subscription');
        });

        it('starts at the live head without a cursor', async () => {
          const channel = freshChannel(transport.name);
          await publishNumbers(main.publishUrl, channel, [1, 2]);
          const sub = await connect(main.subscribeUrl, { channels: [channel] });
          await publishNumbers(main.publishUrl, channel, [3]);
          assert.deepEqual(offsetsOf(await sub.waitForMessages(1)), [3]);
        });

        it('resumes by cursor after a disconnect with no loss and no duplicate', async () => {
          const channel = freshChannel(transport.name);
          const first = await connect(main.subscribeUrl, { channels: [channel] });
          await publishNumbers(main.publishUrl, channel, [1, 2, 3]);
          await first.waitForMessages(3);
          const cursor = first.cursor();
          await first.close();
          await publishNumbers(main.publishUrl, channel, [4, 5, 6]);
          const resumed = await connect(main.subscribeUrl, { channels: [channel], cursor });
          await resumed.waitForMessages(3);
          // A marker published after the replay proves nothing else was (or will be) replayed before it.
          await publishNumbers(main.publishUrl, channel, [7]);
          const messages = await resumed.waitForMessages(4);
          assert.deepEqual(summary(resumed.entries.items), [4, 5, 6, 7].map((o) => `${channel}#${o}`));
          assert.deepEqual(messages.map((m) => m.data), [{ n: 4 }, { n: 5 }, { n: 6 }, { n: 7 }]);
        });

        it('resumes from a cursor in the middle of what it received', async () => {
          const channel = freshChannel(transport.name);
          const first = await connect(main.subscribeUrl, { channels: [channel] });
          await publishNumbers(main.publishUrl, channel, [1, 2, 3, 4]);
          const received = await first.waitForMessages(4);
          await first.close();
          const resumed = await connect(main.subscribeUrl, { channels: [channel], cursor: received[1]!.cursor });
          await publishNumbers(main.publishUrl, channel, [5]);
          await resumed.waitForMessages(3);
          assert.deepEqual(summary(resumed.entries.items), [3, 4, 5].map((o) => `${channel}#${o}`));
        });

        it(`gives a cursor that every other transport resumes exactly`, async () => {
          const channel = freshChannel(transport.name);
          const first = await connect(main.subscribeUrl, { channels: [channel] });
          await publishNumbers(main.publishUrl, channel, [1, 2]);
          await first.waitForMessages(2);
          const cursor = first.cursor();
          await first.close();
          await publishNumbers(main.publishUrl, channel, [3, 4]);
          const others = TRANSPORTS.filter((t) => t !== transport);
          const resumed = await Promise.all(others.map((t) => t.connect(main.subscribeUrl, { channels: [channel], cursor })));
          try {
            await Promise.all(resumed.map((s) => s.waitForMessages(2)));
            await publishNumbers(main.publishUrl, channel, [5]);
            await Promise.all(resumed.map((s) => s.waitForMessages(3)));
            resumed.forEach((s, i) => {
              assert.deepEqual(summary(s.entries.items), [3, 4, 5].map((o) => `${channel}#${o}`), `resumed on ${others[i]!.name}`);
            });
          } finally {
            await Promise.all(resumed.map((s) => s.close()));
          }
        });

        it('resumes several channels from one cursor', async () => {
          const a = freshChannel(`${transport.name}-a`);
          const b = freshChannel(`${transport.name}-b`);
          const first = await connect(main.subscribeUrl, { channels: [a, b] });
          await publishOk(main.publishUrl, {
            messages: [
              { channel: a, data: 'a1' },
              { channel: b, data: 'b1' },
              { channel: a, data: 'a2' },
            ],
          });
          await publishOk(main.publishUrl, { channel: b, data: 'b2' });
          const received = await first.waitForMessages(4);
          assert.deepEqual(received.filter((m) => m.channel === a).map((m) => m.data), ['a1', 'a2']);
          assert.deepEqual(received.filter((m) => m.channel === b).map((m) => m.data), ['b1', 'b2']);
          // The last cursor covers both channels, whichever channel its message came from.
          const cursor = first.cursor();
          await first.close();
          await publishOk(main.publishUrl, {
            messages: [
              { channel: b, data: 'b3' },
              { channel: a, data: 'a3' },
              { channel: a, data: 'a4' },
            ],
          });
          // The cursor alone names the channels.
          const resumed = await connect(main.subscribeUrl, { channels: [], cursor });
          await resumed.waitForMessages(3);
          await publishOk(main.publishUrl, { channel: b, data: 'b4' });
          const messages = await resumed.waitForMessages(4);
          assert.equal(resumed.entries.items.length, 4, `exactly the new messages: ${summary(resumed.entries.items)}`);
          assert.deepEqual(messages.filter((m) => m.channel === a).map((m) => [m.offset, m.data]), [[3, 'a3'], [4, 'a4']]);
          assert.deepEqual(messages.filter((m) => m.channel === b).map((m) => [m.offset, m.data]), [[3, 'b3'], [4, 'b4']]);
          // And the newest cursor resumes both channels again.
          const again = await connect(main.subscribeUrl, { channels: [a, b], cursor: resumed.cursor() });
          await publishOk(main.publishUrl, { messages: [{ channel: a, data: 'a5' }, { channel: b, data: 'b5' }] });
          await again.waitForMessages(2);
          assert.deepEqual(summary(again.entries.items).sort(), [`${a}#5`, `${b}#5`]);
        });

        it('sends a reset notice first when the cursor is older than retained history', async () => {
          const channel = freshChannel(transport.name);
          const first = await connect(tiny.subscribeUrl, { channels: [channel] });
          await publishNumbers(tiny.publishUrl, channel, [1, 2]);
          const early = await first.waitForMessages(2);
          await first.close();
          await publishNumbers(tiny.publishUrl, channel, range(3, 20));
          // Once the subscribing node has seen 20 (on two nodes, its window follows the engine by the
          // fan-out's latency), history there reaches back to 16 only.
          await waitUntil(async () => (await historyHead(tiny.subscribeUrl, channel)) === 20, 'the subscribing node saw offset 20');
          const resumed = await connect(tiny.subscribeUrl, { channels: [channel], cursor: early[1]!.cursor });
          await resumed.waitForMessages(TINY_HISTORY);
          await publishNumbers(tiny.publishUrl, channel, [21]);
          await resumed.waitForMessages(TINY_HISTORY + 1);
          const [reset, ...rest] = resumed.entries.items;
          assert.equal(reset!.kind, 'reset', `the first entry is a reset: ${summary(resumed.entries.items)}`);
          assert.equal(reset!.channel, channel);
          assert.equal(reset!.epoch, early[1]!.epoch);
          assert.equal(reset!.from, 16);
          assert.equal(reset!.kind === 'reset' ? reset!.missed : undefined, 13, 'offsets 3..15 were missed');
          assert.equal(typeof reset!.cursor, 'string');
          assert.deepEqual(summary(rest), range(16, 21).map((o) => `${channel}#${o}`));
          assert.deepEqual(
            rest.map((e) => (e.kind === 'message' ? e.data : undefined)),
            range(16, 21).map((n) => ({ n })),
          );
        });

        it('sends a reset notice for a cursor of another epoch, then everything retained', async () => {
          const channel = freshChannel(transport.name);
          // The same channel name on another server: its cursor holds another epoch.
          const elsewhere = await connect(main.subscribeUrl, { channels: [channel] });
          await publishNumbers(main.publishUrl, channel, [1, 2, 3, 4]);
          const foreign = await elsewhere.waitForMessages(4);
          await elsewhere.close();
          const [local] = await publishNumbers(tiny.publishUrl, channel, [1, 2]);
          assert.notEqual(local!.epoch, foreign[0]!.epoch);
          const resumed = await connect(tiny.subscribeUrl, { channels: [channel], cursor: foreign[3]!.cursor });
          await publishNumbers(tiny.publishUrl, channel, [3]);
          await resumed.waitForMessages(3);
          const [reset] = resumed.entries.items;
          assert.deepEqual(summary(resumed.entries.items), [`reset:${channel}@1`, `${channel}#1`, `${channel}#2`, `${channel}#3`]);
          assert.equal(reset!.epoch, local!.epoch);
          assert.ok(resumed.messages().every((m) => m.epoch === local!.epoch));
        });

        it('refuses a garbage cursor with 400 cursor_invalid', async () => {
          for (const cursor of ['garbage!', 'bm90IGEgY3Vyc29y', `${'A'.repeat(40)}.x`]) {
            const outcome = await transport.refusal(main.subscribeUrl, new URLSearchParams({ channel: 'ok', cursor }));
            assert.deepEqual(outcome, { status: 400, code: 'cursor_invalid' }, `cursor ${cursor}`);
          }
        });

        it('refuses a bad channel name with 400 channel_invalid', async () => {
          for (const channel of ['has space', 'bad<chan>', 'x'.repeat(201), 'ok,no pe']) {
            const outcome = await transport.refusal(main.subscribeUrl, new URLSearchParams({ channel }));
            assert.deepEqual(outcome, { status: 400, code: 'channel_invalid' }, `channel ${JSON.stringify(channel)}`);
          }
        });

        // A WebSocket without channels is normal (it subscribes with frames); see websocket.test.ts.
        if (transport.name !== 'websocket') {
          it('refuses a subscription without a channel with 400 channel_missing', async () => {
            const outcome = await transport.refusal(main.subscribeUrl, new URLSearchParams({ since: 'beginning' }));
            assert.deepEqual(outcome, { status: 400, code: 'channel_missing' });
          });
        }

        it('refuses a bad since with 400 since_invalid', async () => {
          const outcome = await transport.refusal(main.subscribeUrl, new URLSearchParams({ channel: 'ok', since: 'yesterday' }));
          assert.deepEqual(outcome, { status: 400, code: 'since_invalid' });
        });
      });
    }
  });
}
