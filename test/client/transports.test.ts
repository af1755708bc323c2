// The client SDK against a real Herald, each transport forced in turn: one conformance suite (order,
// exactly once, resume from `since`, reset notices, subscription changes on one connection).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import { startTestServer } from '../helpers/server.js';
import { Inbox, SERVER_NAME, TRANSPORTS, client, eventually, publishOk, stateLog } from './helpers.js';

for (const transport of TRANSPORTS) {
  describe(`client over ${transport}`, () => {
    let server: RunningHerald;
    before(async () => {
      server = await startTestServer({ historySize: 50 });
    });
    after(() => server.close());

    it('delivers every message once, in order, with its data and event', async () => {
      const herald = client(server.url, transport);
      const states = stateLog(herald);
      try {
        const inbox = new Inbox();
        const sub = herald.subscribe('order', inbox.handlers);
        await sub.ready;
        const connected = await states.reach('connected');
        assert.equal(connected.transport, transport);
        // Event names vary: SSE delivers each name only to its listeners, so names first seen
        // mid-stream exercise the client's gap repair.
        const batch = (from: number) =>
          Array.from({ length: 10 }, (_, i) => ({
            channel: 'order',
            data: { n: from + i, text: `m${from + i}` },
            ...(i % 3 === 1 ? { event: `kind${i % 2}` } : {}),
          }));
        await publishOk(server.url, { messages: batch(1) });
        await publishOk(server.url, { messages: batch(11) });
        for (let n = 21; n <= 30; n++) await publishOk(server.url, { channel: 'order', data: { n, text: `m${n}` } });
        await inbox.count(30);
        assert.deepEqual(inbox.offsets, Array.from({ length: 30 }, (_, i) => i + 1));
        assert.deepEqual(inbox.messages.map((m) => (m.data as { n: number }).n), inbox.offsets);
        assert.equal(inbox.messages[1]!.event, 'kind1');
        assert.equal(inbox.messages[0]!.event, undefined);
        assert.equal(typeof inbox.messages[29]!.cursor, 'string');
        assert.deepEqual(inbox.resets, []);
      } finally {
        herald.close();
      }
      assert.equal(herald.state.state, 'closed');
    });

    it('starts from the beginning, or from a cursor, and reports a gap with onReset', async () => {
      await publishOk(server.url, { messages: [1, 2, 3].map((n) => ({ channel: 'early', data: n })) });
      const herald = client(server.url, transport);
      try {
        const fromStart = new Inbox();
        herald.subscribe('early', { ...fromStart.handlers, since: 'beginning' });
        await fromStart.count(3);
        await publishOk(server.url, { channel: 'early', data: 4 });
        await fromStart.count(4);
        assert.deepEqual(fromStart.offsets, [1, 2, 3, 4]);

        // A cursor older than the retained history (50 messages): a reset, then the oldest retained.
        await publishOk(server.url, { channel: 'gap', data: 0 });
        const poll = (await (await fetch(`${server.url}/v1/poll?channel=gap&since=beginning&timeout=0`)).json()) as { cursor: string };
        await publishOk(server.url, { messages: Array.from({ length: 60 }, (_, i) => ({ channel: 'gap', data: i + 1 })) });
        const resumed = new Inbox();
        herald.subscribe('gap', { ...resumed.handlers, since: poll.cursor });
        await resumed.count(50);
        assert.equal(resumed.resets.length, 1);
        assert.equal(resumed.resets[0]!.channel, 'gap');
        assert.equal(resumed.resets[0]!.from, 12);
        assert.equal(resumed.resets[0]!.missed, 10);
        assert.deepEqual(resumed.offsets, Array.from({ length: 50 }, (_, i) => i + 12));
      } finally {
        herald.close();
      }
    });

    it('subscribes and unsubscribes on one connection without disturbing the other subscriptions', async () => {
      const herald = client(server.url, transport);
      const states = stateLog(herald);
      try {
        const a = new Inbox();
        const b = new Inbox();
        const c = new Inbox();
        await herald.subscribe('chan-a', a.handlers).ready;
        const subB = herald.subscribe('chan-b', b.handlers);
        await subB.ready;
        await states.reach('connected');
        const both = (n: number) => [{ channel: 'chan-a', data: n }, { channel: 'chan-b', data: n }];
        for (let n = 1; n <= 5; n++) await publishOk(server.url, { messages: both(n) });
        await b.count(5);

        subB.unsubscribe();
        subB.unsubscribe(); // idempotent
        // Messages keep flowing on a while the connection changes under it.
        for (let n = 6; n <= 10; n++) await publishOk(server.url, { messages: both(n) });
        const subC = herald.subscribe('chan-c', c.handlers);
        for (let n = 11; n <= 15; n++) await publishOk(server.url, { messages: both(n) });
        await subC.ready;
        for (let n = 16; n <= 20; n++) await publishOk(server.url, { messages: [...both(n), { channel: 'chan-c', data: n }] });

        await a.count(20);
        await c.until((inbox) => inbox.messages.some((m) => m.data === 20), 10_000, 'c to get message 20');
        assert.deepEqual(a.offsets, Array.from({ length: 20 }, (_, i) => i + 1));
        assert.deepEqual(b.offsets, [1, 2, 3, 4, 5]);
        assert.deepEqual(c.offsets, [1, 2, 3, 4, 5]);
        // One connection, never dropped: no reconnect happened.
        assert.equal(states.changes.filter((s) => s.state === 'connected').length, 1);
        await eventually(() => {
          assert.equal(server.hub.subscriberCount('chan-b'), 0);
          assert.ok(server.counters.connections[SERVER_NAME[transport]] <= 1);
        });
      } finally {
        herald.close();
      }
      await eventually(() => assert.equal(server.counters.connections[SERVER_NAME[transport]], 0));
    });
  });
}
