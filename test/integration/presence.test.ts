// Presence with real clients: 3 users × 2 tabs over mixed transports join and leave in random order;
// after every step the list and the join/leave events seen by observers (WebSocket and SSE) are exactly
// right: a user joins with its first tab and leaves with its last. A SIGKILLed client leaves within
// the timeout. Seeing presence needs the presence claim (or the publish key).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import {
  SUITE_TIMEOUT_MS,
  SseClient,
  WsClient,
  errorCode,
  subscribeIframe,
  subscribeNdjson,
  subscribePoll,
  subscribeSse,
  subscribeWs,
  waitUntil,
  type SubscribeOptions,
  type Subscription,
} from '../helpers/clients.js';
import { startTestServer } from '../helpers/server.js';
import { SECRET, signHs256 } from '../helpers/tokens.js';

const KEY = 'publish-key-for-tests';
const backend = { Authorization: `Bearer ${KEY}` };
const PRESENCE_TIMEOUT_MS = 1000;
/** A polling tab leaves its hold time + the presence timeout + up to a second of sweep after its last poll. */
const LEAVE_WAIT_MS = 8000;
let server: RunningHerald;

before(async () => {
  server = await startTestServer({ tokenSecret: SECRET, publishKey: KEY, presenceTimeoutMs: PRESENCE_TIMEOUT_MS, heartbeatMs: 1000 });
});
after(() => server.close());

const userToken = (user: string, room: string): Promise<string> =>
  signHs256({ sub: user, channels: [room], presence: [room], info: { name: user.toUpperCase() } });

interface Member {
  user: string;
  info?: Record<string, unknown>;
  connections: number;
}

async function members(room: string): Promise<Member[]> {
  const res = await fetch(`${server.url}/v1/presence?channel=${encodeURIComponent(room)}`, { headers: backend });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { members: Member[]; count: number };
  assert.equal(body.count, body.members.length);
  return body.members.sort((a, b) => a.user.localeCompare(b.user));
}

type Connect = (url: string, options: SubscribeOptions) => Promise<Subscription>;
const TABS: Record<string, Connect> = {
  websocket: subscribeWs,
  sse: subscribeSse,
  stream: subscribeNdjson,
  iframe: (url, options) => subscribeIframe(url, options),
  'short-poll': (url, options) => subscribePoll(url, options, { timeoutS: 0, intervalMs: 50 }),
  'long-poll': (url, options) => subscribePoll(url, options, { timeoutS: 1 }),
};
const isPolling = (transport: string): boolean => transport.endsWith('poll');

/** A small seeded PRNG (mulberry32), so a failing order can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(items: T[], next: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

describe('presence', { timeout: SUITE_TIMEOUT_MS * 3 }, () => {
  for (const seed of [1, 2]) {
    it(`3 users × 2 tabs over mixed transports, random joins and leaves (seed ${seed})`, async () => {
      const room = `room/${seed}`;
      const next = random(seed);
      // Observers: the backend on WebSocket and on SSE, both asking for join/leave events.
      const wsObserver = await WsClient.connect(server.url, { headers: backend });
      assert.equal((await wsObserver.request({ op: 'subscribe', channel: room, presence: true })).op, 'subscribed');
      const sseObserver = new SseClient(`${server.url}/v1/sse?channel=${encodeURIComponent(room)}&presence=1`, { headers: backend });
      await sseObserver.opened();
      const wsEvents = (): string[] => wsObserver.frames.items.filter((f) => f.op === 'join' || f.op === 'leave').map((f) => `${f.op} ${String(f.user)}`);
      const sseEvents = (): string[] => sseObserver.events.items.filter((e) => e.type === 'join' || e.type === 'leave').map((e) => `${e.type} ${(JSON.parse(e.data) as { user: string }).user}`);

      const plan: [string, string][] = [['u1', 'websocket'], ['u1', 'sse'], ['u2', 'stream'], ['u2', 'short-poll'], ['u3', 'iframe'], ['u3', 'long-poll']];
      const open = new Map<string, Subscription>();
      const expectedEvents: string[] = [];
      const connections = new Map<string, number>();

      const check = async (what: string): Promise<void> => {
        await wsObserver.frames.until(() => wsEvents().length >= expectedEvents.length, `${what}: WS events ${JSON.stringify(expectedEvents)}`, LEAVE_WAIT_MS);
        await sseObserver.events.until(() => sseEvents().length >= expectedEvents.length, `${what}: SSE events ${JSON.stringify(expectedEvents)}`, LEAVE_WAIT_MS);
        assert.deepEqual(wsEvents(), expectedEvents, `${what}: WS events`);
        assert.deepEqual(sseEvents(), expectedEvents, `${what}: SSE events`);
        const expected = [...connections].filter(([, n]) => n > 0).sort().map(([user, n]) => ({ user, info: { name: user.toUpperCase() }, connections: n }));
        let last: Member[] = [];
        await waitUntil(async () => JSON.stringify((last = await members(room))) === JSON.stringify(expected), `${what}: the list ${JSON.stringify(expected)}`, LEAVE_WAIT_MS).catch((err: Error) => {
          throw new Error(`${err.message}; got ${JSON.stringify(last)}`);
        });
        const viaWs = await wsObserver.request({ op: 'presence', channel: room });
        assert.deepEqual((viaWs.members as Member[]).sort((a, b) => a.user.localeCompare(b.user)), expected, `${what}: the presence op`);
      };
      // Polling tabs of one user share one presence connection.
      const countOf = (user: string): number => {
        const tabs = plan.filter(([u, t]) => u === user && open.has(`${u}/${t}`)).map(([, t]) => t);
        return tabs.filter((t) => !isPolling(t)).length + (tabs.some(isPolling) ? 1 : 0);
      };

      try {
        for (const [user, transport] of shuffle(plan, next)) {
          const wasPresent = countOf(user) > 0;
          open.set(`${user}/${transport}`, await TABS[transport]!(server.url, { channels: [room], token: await userToken(user, room) }));
          connections.set(user, countOf(user));
          if (!wasPresent) expectedEvents.push(`join ${user}`);
          await check(`after ${user} opened ${transport}`);
        }
        for (const [user, transport] of shuffle(plan, next)) {
          await open.get(`${user}/${transport}`)!.close();
          open.delete(`${user}/${transport}`);
          connections.set(user, countOf(user));
          if (countOf(user) === 0) expectedEvents.push(`leave ${user}`);
          await check(`after ${user} closed ${transport}`);
        }
      } finally {
        await Promise.all([...open.values()].map((s) => s.close()));
        await wsObserver.close();
        sseObserver.close();
      }
    });
  }

  for (const kind of ['websocket', 'poll'] as const) {
    it(`a SIGKILLed ${kind} client leaves within the timeout`, async () => {
      const room = `room/kill-${kind}`;
      const observer = await WsClient.connect(server.url, { headers: backend });
      await observer.request({ op: 'subscribe', channel: room, presence: true });
      const token = await userToken('victim', room);
      const base = server.url;
      const script =
        kind === 'websocket'
          ? `import WebSocket from 'ws'; const ws = new WebSocket(${JSON.stringify(`${base.replace('http', 'ws')}/v1/ws?channel=${room}&token=${token}`)}); ws.on('open', () => console.log('up'));`
          : `for (;;) { const r = await fetch(${JSON.stringify(`${base}/v1/poll?channel=${room}&timeout=0&token=${token}`)}); await r.text(); console.log('up'); await new Promise((s) => setTimeout(s, 100)); }`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: new URL('../..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'inherit'] });
      try {
        await observer.frames.find((f) => f.op === 'join' && f.user === 'victim', 'the join of the child');
        child.kill('SIGKILL');
        const killedAt = Date.now();
        await observer.frames.find((f) => f.op === 'leave' && f.user === 'victim', 'the leave of the killed child', LEAVE_WAIT_MS);
        // WebSocket: the kernel closes the socket at once. Poll: the presence timeout plus a sweep.
        assert.ok(Date.now() - killedAt <= PRESENCE_TIMEOUT_MS + 2000, `left after ${Date.now() - killedAt} ms`);
        assert.deepEqual(await members(room), []);
      } finally {
        child.kill('SIGKILL');
        await observer.close();
      }
    });
  }

  it('follows the token of a WebSocket: shows after auth, leaves when a refresh drops the presence claim', async () => {
    const room = 'room/refresh';
    const observer = await WsClient.connect(server.url, { headers: backend });
    const client = await WsClient.connect(server.url);
    try {
      await observer.request({ op: 'subscribe', channel: room, presence: true });
      const reader = await signHs256({ sub: 'r', channels: [room] });
      assert.equal((await client.request({ op: 'auth', token: reader })).op, 'authenticated');
      await client.request({ op: 'subscribe', channel: room });
      assert.deepEqual(await members(room), []);
      assert.equal((await client.request({ op: 'refresh', token: await userToken('r', room) })).op, 'refreshed');
      await observer.frames.find((f) => f.op === 'join' && f.user === 'r', 'the join after the refresh');
      assert.deepEqual(await members(room), [{ user: 'r', info: { name: 'R' }, connections: 1 }]);
      await client.request({ op: 'refresh', token: reader });
      await observer.frames.find((f) => f.op === 'leave' && f.user === 'r', 'the leave after the second refresh');
      assert.deepEqual(await members(room), []);
      assert.equal(client.ws.readyState, client.ws.OPEN, 'still subscribed, just not shown');
    } finally {
      await client.close();
      await observer.close();
    }
  });

  it('shows presence only to tokens whose presence claim covers the channel, and to the backend', async () => {
    const room = 'room/private';
    const viewer = await signHs256({ sub: 'v', channels: [room] }); // may subscribe, not see presence
    const member = await userToken('m', room);
    for (const [headers, status] of [[{}, 403], [{ Authorization: `Bearer ${viewer}` }, 403], [{ Authorization: `Bearer ${member}` }, 200], [backend, 200]] as const) {
      const res = await fetch(`${server.url}/v1/presence/count?channel=${encodeURIComponent(room)}`, { headers });
      assert.equal(res.status, status, JSON.stringify(headers));
      if (status === 403) assert.equal(await errorCode(res), 'forbidden_channel');
      else assert.deepEqual(await res.json(), { channel: room, count: 0 });
    }
    const client = await WsClient.connect(server.url);
    try {
      await client.request({ op: 'auth', token: viewer });
      const refused = await client.request({ op: 'subscribe', channel: room, presence: true });
      assert.deepEqual([refused.op, refused.code, refused.channel], ['error', 'forbidden_channel', room]);
      assert.equal((await client.request({ op: 'presence', channel: room })).code, 'forbidden_channel');
      // Without asking for presence, the viewer subscribes, and does not show in presence.
      assert.equal((await client.request({ op: 'subscribe', channel: room })).op, 'subscribed');
      assert.deepEqual(await members(room), []);
    } finally {
      await client.close();
    }
    const sse = await fetch(`${server.url}/v1/sse?channel=${encodeURIComponent(room)}&presence=1&token=${viewer}`);
    assert.equal(sse.status, 403);
  });
});
