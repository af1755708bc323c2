// Presence shared by Herald nodes on one real Redis (test/helpers/redis.ts): two nodes in this process,
// a third started late, one as a child process that is SIGKILLed. On every node the list is the same,
// a user connected to two nodes is one member, join/leave events fire exactly once per transition, a
// polling user whose polls move between nodes does not flap, and a dead node's users leave everywhere
// within --presence-timeout.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunningHerald } from '../../src/herald.js';
import { WsClient, pollOnce, subscribeSse, subscribeWs, waitUntil } from '../helpers/clients.js';
import { startNodes, stopAll } from '../helpers/nodes.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { startTestServer } from '../helpers/server.js';
import { SECRET, signHs256 } from '../helpers/tokens.js';

const KEY = 'publish-key-for-tests';
const backend = { Authorization: `Bearer ${KEY}` };
const PRESENCE_TIMEOUT_MS = 2000;
/** What a change takes to reach every node (pub/sub on loopback): generous. */
const SPREAD_MS = 3000;
/** How long "nothing more happens" is watched for. */
const QUIET_MS = 700;

let redis: RedisServer;
let a: RunningHerald;
let b: RunningHerald;
let roomCount = 0;
const freshRoom = (): string => `room/shared-${++roomCount}`;

const nodeOptions = () => ({ store: redis.url, tokenSecret: SECRET, publishKey: KEY, presenceTimeoutMs: PRESENCE_TIMEOUT_MS, heartbeatMs: 1000 });

before(async () => {
  redis = await startRedis();
  [a, b] = await Promise.all([startTestServer(nodeOptions()), startTestServer(nodeOptions())]);
});
after(async () => {
  await Promise.all([a?.close(), b?.close()]);
  await redis?.stop();
});

const userToken = (user: string, room: string): Promise<string> =>
  signHs256({ sub: user, channels: [room], presence: [room], info: { name: user.toUpperCase() } });

interface Member {
  user: string;
  info?: Record<string, unknown>;
  connections: number;
}

async function members(url: string, room: string): Promise<Member[]> {
  const res = await fetch(`${url}/v1/presence?channel=${encodeURIComponent(room)}`, { headers: backend });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { members: Member[]; count: number };
  assert.equal(body.count, body.members.length);
  return body.members.sort((x, y) => x.user.localeCompare(y.user));
}

/** Waits until GET /v1/presence on every node in `urls` answers `expected`. */
async function membersEverywhere(urls: string[], room: string, expected: Member[], what: string): Promise<void> {
  for (const url of urls) {
    let last: Member[] = [];
    await waitUntil(async () => JSON.stringify((last = await members(url, room))) === JSON.stringify(expected), `${what} on ${url}`, SPREAD_MS).catch((err: Error) => {
      throw new Error(`${err.message}: got ${JSON.stringify(last)}, want ${JSON.stringify(expected)}`);
    });
  }
}

/** The backend on WebSocket, subscribed to `room` with join/leave events. */
async function observe(url: string, room: string): Promise<{ client: WsClient; events(): string[] }> {
  const client = await WsClient.connect(url, { headers: backend });
  assert.equal((await client.request({ op: 'subscribe', channel: room, presence: true })).op, 'subscribed');
  const events = (): string[] => client.frames.items.filter((f) => f.op === 'join' || f.op === 'leave').map((f) => `${f.op} ${String(f.user)}`);
  return { client, events };
}

async function eventsAre(observer: { client: WsClient; events(): string[] }, expected: string[], what: string, timeoutMs = SPREAD_MS): Promise<void> {
  await observer.client.frames.until(() => observer.events().length >= expected.length, `${what}: ${JSON.stringify(expected)}`, timeoutMs);
  assert.deepEqual(observer.events(), expected, what);
}

const member = (user: string, connections: number): Member => ({ user, info: { name: user.toUpperCase() }, connections });

describe('presence shared over Redis', { timeout: 120_000 }, () => {
  it('a user on two nodes is one member everywhere; join once, no leave until its last connection goes', async () => {
    const room = freshRoom();
    const observers = await Promise.all([observe(a.url, room), observe(b.url, room)]);
    const token = await userToken('ada', room);
    try {
      const onA = await subscribeWs(a.url, { channels: [room], token });
      for (const [i, o] of observers.entries()) await eventsAre(o, ['join ada'], `observer ${i} after ada's first connection, on A`);
      await membersEverywhere([a.url, b.url], room, [member('ada', 1)], 'ada on A');

      const onB = await subscribeSse(b.url, { channels: [room], token });
      await membersEverywhere([a.url, b.url], room, [member('ada', 2)], 'ada on A and B');
      const count = await fetch(`${b.url}/v1/presence/count?channel=${encodeURIComponent(room)}`, { headers: backend });
      assert.deepEqual(await count.json(), { channel: room, count: 1 });

      await onA.close();
      await membersEverywhere([a.url, b.url], room, [member('ada', 1)], 'ada on B only');
      await sleep(QUIET_MS);
      for (const o of observers) assert.deepEqual(o.events(), ['join ada'], 'no leave while ada is still on B');

      await onB.close();
      for (const [i, o] of observers.entries()) await eventsAre(o, ['join ada', 'leave ada'], `observer ${i} after ada's last connection`);
      await membersEverywhere([a.url, b.url], room, [], 'nobody');
      await sleep(QUIET_MS);
      for (const o of observers) assert.deepEqual(o.events(), ['join ada', 'leave ada'], 'exactly once');
    } finally {
      await Promise.all(observers.map((o) => o.client.close()));
    }
  });

  it('joins and leaves on one node reach the listeners of the other exactly once, for each of several users', async () => {
    const room = freshRoom();
    const onB = await observe(b.url, room);
    try {
      const tabs = await Promise.all(['u1', 'u2', 'u3'].map(async (user) => subscribeWs(a.url, { channels: [room], token: await userToken(user, room) })));
      const second = await subscribeWs(a.url, { channels: [room], token: await userToken('u1', room) }); // a second tab of u1
      await membersEverywhere([b.url], room, [member('u1', 2), member('u2', 1), member('u3', 1)], 'three users on A');
      assert.deepEqual(onB.events().sort(), ['join u1', 'join u2', 'join u3']);
      await tabs[0]!.close();
      await tabs[1]!.close();
      await membersEverywhere([b.url], room, [member('u1', 1), member('u3', 1)], 'u2 gone');
      await second.close();
      await tabs[2]!.close();
      await membersEverywhere([a.url, b.url], room, [], 'everyone gone');
      await sleep(QUIET_MS);
      assert.deepEqual(onB.events().slice(3), ['leave u2', 'leave u1', 'leave u3']);
    } finally {
      await onB.client.close();
    }
  });

  it('a polling user whose polls move from one node to the other stays one member, with one connection, and does not flap', async () => {
    const room = freshRoom();
    const observers = await Promise.all([observe(a.url, room), observe(b.url, room)]);
    const token = await userToken('pat', room);
    const poll = (url: string) => pollOnce(url, new URLSearchParams({ channel: room, timeout: '0', token }));
    try {
      // Polls on A for a while, then on B only: A's entry expires while B's is fresh.
      const startedMs = Date.now();
      let onA = true;
      while (Date.now() - startedMs < 600 + PRESENCE_TIMEOUT_MS + 1500) {
        if (Date.now() - startedMs > 600) onA = false;
        await poll(onA ? a.url : b.url);
        // The other node hears of a poll one bus hop later; a flap would show in the observers' events.
        await membersEverywhere([a.url, b.url], room, [member('pat', 1)], `polling on ${onA ? 'A' : 'B'}`);
        await sleep(200);
      }
      for (const o of observers) assert.deepEqual(o.events(), ['join pat'], 'no leave while the polls go on');
      const stoppedMs = Date.now();
      for (const [i, o] of observers.entries()) await eventsAre(o, ['join pat', 'leave pat'], `observer ${i} after the last poll`, PRESENCE_TIMEOUT_MS + 4000);
      assert.ok(Date.now() - stoppedMs >= PRESENCE_TIMEOUT_MS - 200, `left ${Date.now() - stoppedMs} ms after the last poll`);
    } finally {
      await Promise.all(observers.map((o) => o.client.close()));
    }
  });

  it('a node that starts late sees the members already there, and hears what follows', async () => {
    const room = freshRoom();
    const ada = await subscribeWs(a.url, { channels: [room], token: await userToken('ada', room) });
    const bob = await subscribeWs(b.url, { channels: [room], token: await userToken('bob', room) });
    await membersEverywhere([a.url, b.url], room, [member('ada', 1), member('bob', 1)], 'ada on A, bob on B');
    const c = await startTestServer(nodeOptions());
    try {
      await membersEverywhere([c.url], room, [member('ada', 1), member('bob', 1)], 'the late node');
      const onC = await observe(c.url, room);
      const cy = await subscribeWs(a.url, { channels: [room], token: await userToken('cy', room) });
      await eventsAre(onC, ['join cy'], 'a join after the late start');
      await ada.close();
      await eventsAre(onC, ['join cy', 'leave ada'], 'a leave after the late start');
      // The late node's own users reach the others too.
      const dee = await subscribeWs(c.url, { channels: [room], token: await userToken('dee', room) });
      await membersEverywhere([a.url, b.url, c.url], room, [member('bob', 1), member('cy', 1), member('dee', 1)], 'dee on C');
      await Promise.all([cy.close(), dee.close(), onC.client.close()]);
    } finally {
      await bob.close();
      await c.close();
    }
  });

  it('a node that shuts down takes its users out at once (it says goodbye)', async () => {
    const room = freshRoom();
    const onA = await observe(a.url, room);
    const c = await startTestServer(nodeOptions());
    try {
      await subscribeWs(c.url, { channels: [room], token: await userToken('ada', room) });
      await eventsAre(onA, ['join ada'], 'ada on C');
      const closedMs = Date.now();
      await c.close();
      await eventsAre(onA, ['join ada', 'leave ada'], 'C closed');
      assert.ok(Date.now() - closedMs < PRESENCE_TIMEOUT_MS / 2, `left ${Date.now() - closedMs} ms after C closed: the goodbye, not the timeout`);
    } finally {
      await onA.client.close();
      await c.close();
    }
  });

  it('a SIGKILLed node takes its users out of presence everywhere within --presence-timeout', async () => {
    const room = freshRoom();
    const [victim] = await startNodes(1, ['--store', redis.url, '--token-secret', SECRET, '--publish-key', KEY, '--presence-timeout', `${PRESENCE_TIMEOUT_MS / 1000}s`]);
    const observers = await Promise.all([observe(a.url, room), observe(b.url, room)]);
    try {
      const ada = await subscribeWs(victim!.url, { channels: [room], token: await userToken('ada', room) });
      const both = await subscribeWs(victim!.url, { channels: [room], token: await userToken('both', room) });
      const bothOnA = await subscribeWs(a.url, { channels: [room], token: await userToken('both', room) });
      await membersEverywhere([a.url, b.url], room, [member('ada', 1), member('both', 2)], 'users on the child node');
      await victim!.kill('SIGKILL');
      const killedMs = Date.now();
      for (const [i, o] of observers.entries()) {
        await o.client.frames.find((f) => f.op === 'leave' && f.user === 'ada', `observer ${i}: ada's leave`, PRESENCE_TIMEOUT_MS + 3000);
      }
      const tookMs = Date.now() - killedMs;
      // The timeout, plus what a bus message and a timer turn take.
      assert.ok(tookMs <= PRESENCE_TIMEOUT_MS + 500, `ada left ${tookMs} ms after the kill`);
      await membersEverywhere([a.url, b.url], room, [member('both', 1)], 'after the kill');
      await sleep(QUIET_MS);
      for (const o of observers) assert.deepEqual(o.events().sort(), ['join ada', 'join both', 'leave ada']);
      await Promise.all([ada.close(), both.close(), bothOnA.close()]);
    } finally {
      await Promise.all(observers.map((o) => o.client.close()));
      await stopAll([victim!]);
    }
  });

  // Last: it stops the Redis that every node uses.
  for (const outage of ['paused', 'restarted'] as const) {
    it(`after a Redis outage (${outage}) long enough for the nodes to lose each other, every node shows everyone again`, async () => {
      const room = freshRoom();
      const ada = await subscribeWs(a.url, { channels: [room], token: await userToken('ada', room) });
      const bob = await subscribeWs(b.url, { channels: [room], token: await userToken('bob', room) });
      try {
        await membersEverywhere([a.url, b.url], room, [member('ada', 1), member('bob', 1)], 'before the outage');
        if (outage === 'paused') redis.pause();
        else await redis.kill();
        // The limit: without the bus, each node hears nobody and shows its own users only.
        await membersEverywhere([a.url], room, [member('ada', 1)], 'A during the outage');
        await membersEverywhere([b.url], room, [member('bob', 1)], 'B during the outage');
        if (outage === 'paused') redis.resume();
        else await redis.restart();
        await membersEverywhere([a.url, b.url], room, [member('ada', 1), member('bob', 1)], 'after the outage');
      } finally {
        redis.resume();
        await Promise.all([ada.close(), bob.close()]);
      }
    });
  }
});
