// The SDK's use of listen sessions (docs/protocol.md "Sessions — POST /v1/session/{id}") against the
// real server, through a recording proxy: on SSE, NDJSON streaming and long polling, a subscription
// change is a `POST /v1/session/{id}`: the stream is never reopened, the held poll is answered rather
// than dropped, and nothing is lost or repeated on the channels already flowing. When the server does
// not know the session, the SDK falls back to a new listen request, losing nothing either.
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import type { Herald, HeraldError, PresenceEvent, TransportName } from '../../src/client/index.js';
import { startTestServer } from '../helpers/server.js';
import { SECRET, signHs256 } from '../helpers/tokens.js';
import { Inbox, client, eventually, httpProxy, publishOk, stateLog, type ProxiedRequest } from './helpers.js';

const LISTEN_PATH = { sse: '/v1/sse', stream: '/v1/stream', longpoll: '/v1/poll' } as const;
const SESSION_TRANSPORTS = Object.keys(LISTEN_PATH) as (keyof typeof LISTEN_PATH)[];

const isSessionPost = (r: ProxiedRequest): boolean => r.method === 'POST' && r.path.startsWith('/v1/session/');
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('client sessions', () => {
  let server: RunningHerald;
  before(async () => {
    server = await startTestServer({ historySize: 200 });
  });
  after(() => server.close());

  /** A client on `transport` through a fresh recording proxy; both are closed when the test ends. */
  const open = async (t: TestContext, transport: TransportName, proxyOptions: Parameters<typeof httpProxy>[1] = {}, target = server) => {
    const proxy = await httpProxy(target.port, proxyOptions);
    const herald = client(proxy.url, transport, { pollTimeoutS: 20, heartbeatMs: 2000 });
    t.after(async () => {
      herald.close();
      await proxy.close();
    });
    return { proxy, herald, states: stateLog(herald) };
  };

  /** Publishes the next `count` messages of `channel`, their data the running number. */
  const publisher = (channel: string) => {
    let n = 0;
    return async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) await publishOk(server.url, { channel, data: ++n });
    };
  };

  /** Resolves once a poll of the client is held by the server (long polling only). */
  const pollHeld = (herald: Herald): Promise<void> =>
    eventually(() => {
      assert.equal(herald.state.state, 'connected');
      assert.equal(server.counters.connections.poll, 1);
    });

  for (const transport of SESSION_TRANSPORTS) {
    const listens = (requests: ProxiedRequest[]): ProxiedRequest[] => requests.filter((r) => r.path === LISTEN_PATH[transport]);

    /**
     * Subscribes `A`, publishes its first 5 messages once connected (on long polling, with a poll held),
     * then subscribes `B` while 5 more go to A, and publishes `first` on B once B is ready.
     * `startedMs`: when B's subscription was asked for.
     */
    const joinBWhileAFlows = async (herald: Herald, states: ReturnType<typeof stateLog>, A: string, B: string) => {
      const a = new Inbox();
      const b = new Inbox();
      await herald.subscribe(A, a.handlers).ready;
      await states.reach('connected');
      if (transport === 'longpoll') await pollHeld(herald);
      const publishA = publisher(A);
      await publishA(5);
      const startedMs = Date.now();
      const subB = herald.subscribe(B, b.handlers);
      await publishA(5); // A keeps flowing while B joins
      await subB.ready;
      await publishOk(server.url, { channel: B, data: 'first' });
      return { a, b, publishA, startedMs };
    };

    it(`${transport}: subscribes a channel on the open connection, losing nothing on the others`, async (t) => {
      const [A, B] = [`in-a-${transport}`, `in-b-${transport}`];
      const { proxy, herald, states } = await open(t, transport);
      const { a, b, publishA, startedMs } = await joinBWhileAFlows(herald, states, A, B);
      await b.count(1, 5000);
      const firstMs = Date.now() - startedMs;
      await publishA(5);
      await publishOk(server.url, { channel: B, data: 'second' });
      await a.count(15);
      await b.count(2);

      assert.deepEqual(a.offsets, range(1, 15), 'A: every message once, in order');
      assert.deepEqual(a.messages.map((m) => m.data), range(1, 15));
      assert.deepEqual(b.messages.map((m) => m.data), ['first', 'second']);
      assert.ok(proxy.requests.some(isSessionPost), 'the change went on POST /v1/session/{id}');
      if (transport === 'longpoll') {
        // The held poll was answered at once with B merged in, not dropped; and not waited out either.
        assert.deepEqual(listens(proxy.requests).filter((r) => r.isAborted), [], 'no poll was aborted');
        assert.ok(firstMs < 3000, `B's first message came ${firstMs} ms after subscribing (polls are held up to 20 s)`);
      } else {
        assert.equal(listens(proxy.requests).length, 1, 'the stream was never reopened');
      }
      assert.equal(states.changes.filter((s) => s.state === 'connected').length, 1, 'no reconnect');
    });

    it(`${transport}: unsubscribes on the open connection`, async (t) => {
      const [A, B] = [`out-a-${transport}`, `out-b-${transport}`];
      const { proxy, herald, states } = await open(t, transport);
      const a = new Inbox();
      const b = new Inbox();
      await herald.subscribe(A, a.handlers).ready;
      const subB = herald.subscribe(B, b.handlers);
      await subB.ready;
      await states.reach('connected');
      const [publishA, publishB] = [publisher(A), publisher(B)];
      await publishA(3);
      await publishB(3);
      await b.count(3);
      if (transport === 'longpoll') await pollHeld(herald);
      const requestsBefore = proxy.requests.length;

      subB.unsubscribe();
      await eventually(() => assert.equal(server.hub.subscriberCount(B), 0), 5000);
      await publishA(3);
      await publishB(3);
      await a.count(6);

      assert.deepEqual(a.offsets, range(1, 6));
      assert.deepEqual(b.offsets, [1, 2, 3]);
      const after = proxy.requests.slice(requestsBefore);
      assert.ok(after.some(isSessionPost), 'the change went on POST /v1/session/{id}');
      if (transport === 'longpoll') {
        assert.deepEqual(listens(proxy.requests).filter((r) => r.isAborted), [], 'no poll was aborted');
        const lastPoll = listens(after).at(-1)!;
        assert.equal(lastPoll.query.get('channel'), A, 'later polls no longer list B');
      } else {
        assert.equal(listens(proxy.requests).length, 1, 'the stream was never reopened');
      }
      assert.equal(states.changes.filter((s) => s.state === 'connected').length, 1, 'no reconnect');
    });

    it(`${transport}: a connection dropped right after a change resumes every channel where it was`, async (t) => {
      const [A, B] = [`drop-a-${transport}`, `drop-b-${transport}`];
      const { proxy, herald, states } = await open(t, transport);
      const a = new Inbox();
      const b = new Inbox();
      await herald.subscribe(A, a.handlers).ready;
      await states.reach('connected');
      const [publishA, publishB] = [publisher(A), publisher(B)];
      await publishA(3);
      await herald.subscribe(B, b.handlers).ready;
      await publishB(2);
      await publishA(2);
      proxy.drop(); // wherever the change stands: POST under way, marker read or not
      await publishB(2);
      await publishA(2);
      await b.count(4);
      await a.count(7);
      // Once more with the change settled (B's entries read after the marker).
      proxy.drop();
      await publishB(2);
      await publishA(2);
      await b.count(6);
      await a.count(9);
      assert.deepEqual(a.offsets, range(1, 9));
      assert.deepEqual(b.offsets, range(1, 6));
      assert.ok(states.changes.filter((s) => s.state === 'connected').length >= 2, 'reconnected');
    });

    it(`${transport}: a session the server does not know falls back to a new listen request, losing nothing`, async (t) => {
      const [A, B] = [`lost-a-${transport}`, `lost-b-${transport}`];
      // The proxy sends session changes where the session is unknown, as a balancer sending them to
      // another node would: the server answers 404 session_not_found.
      const { proxy, herald, states } = await open(t, transport, { rewrite: (path) => path.replace(/^\/v1\/session\/[^/?]+/, '/v1/session/elsewhere') });
      const { a, b, publishA } = await joinBWhileAFlows(herald, states, A, B);
      await publishA(5);
      await a.count(15);
      await b.count(1);

      assert.deepEqual(a.offsets, range(1, 15), 'A: every message once, in order');
      assert.deepEqual(b.messages.map((m) => m.data), ['first']);
      assert.equal(proxy.requests.find(isSessionPost)?.status, 404);
      if (transport === 'longpoll') {
        // Dropped (unless just answered) and sent again for both channels, in a new session.
        const fresh = listens(proxy.requests).filter((r) => r.query.get('session') === 'new');
        assert.equal(fresh.length, 2, 'the poll was sent again');
        assert.equal(fresh[1]!.query.get('channel'), `${A},${B}`);
      } else {
        assert.equal(listens(proxy.requests).length, 2, 'the stream was reopened');
      }
      assert.equal(states.changes.filter((s) => s.state === 'connected').length, 1, 'the fallback is no reconnect');
    });
  }

  for (const transport of SESSION_TRANSPORTS) {
    it(`${transport}: a channel the POST is refused fails alone; the connection and its other channels go on`, async (t) => {
      const secured = await startTestServer({ tokenSecret: SECRET });
      t.after(() => secured.close());
      const token = await signHs256({ sub: 'u1', channels: ['ok:*'] });
      const herald = client(secured.url, transport, { token, pollTimeoutS: 20 });
      t.after(() => herald.close());
      const states = stateLog(herald);
      const ok = new Inbox();
      await herald.subscribe('ok:1', ok.handlers).ready;
      await states.reach('connected');
      await publishOk(secured.url, { channel: 'ok:1', data: 1 });
      await ok.count(1);
      // From the beginning, so nothing anchors it first: the refusal comes from the session's POST.
      const refused = new Promise<HeraldError>((resolve) => herald.subscribe('no:1', { onMessage() {}, onError: resolve, since: 'beginning' }));
      assert.equal((await refused).code, 'forbidden_channel');
      await publishOk(secured.url, { channel: 'ok:1', data: 2 });
      await ok.count(2);
      assert.deepEqual(ok.offsets, [1, 2]);
      assert.equal(herald.state.state, 'connected');
      assert.equal(states.changes.filter((s) => s.state === 'connected').length, 1, 'no reconnect');
    });
  }

  it('longpoll: a POST answered after the poll it merged into: the next poll lists the new channel', async (t) => {
    // The POST's answer comes late (a slow hop for that request only): the held poll, answered at once
    // with B merged in, comes back first. A next poll listing only A, with a cursor naming B, would
    // tell the server B was dropped: B's messages would then wait out the 20 s poll.
    let postsApplied = 0;
    const slowPosts: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (init?.method !== 'POST') return response;
      postsApplied++;
      await new Promise((resolve) => setTimeout(resolve, 500));
      return response;
    };
    const herald = client(server.url, 'longpoll', { pollTimeoutS: 20, fetch: slowPosts });
    t.after(() => herald.close());
    const [a, b] = [new Inbox(), new Inbox()];
    await herald.subscribe('late-a', a.handlers).ready;
    await pollHeld(herald);
    await herald.subscribe('late-b', b.handlers).ready;
    await eventually(() => assert.equal(postsApplied, 1, 'the server applied the POST'));
    await publishOk(server.url, { channel: 'late-b', data: 'first' });
    await b.count(1, 5000);
    await publishOk(server.url, { channel: 'late-a', data: 'a' });
    await a.count(1);
  });

  it('longpoll: a session expired between polls gets a new one, and a change sent meanwhile falls back, losing nothing', async (t) => {
    const short = await startTestServer({ sessionIdleMs: 100 });
    t.after(() => short.close());
    const [A, B] = ['expired-a', 'expired-b'];
    // Polls take 600 ms to get through: the session idles past its 100 ms between two of them.
    const { proxy, herald, states } = await open(t, 'longpoll', { delayMs: (path) => (path === '/v1/poll' ? 600 : 0) }, short);
    const a = new Inbox();
    const b = new Inbox();
    await herald.subscribe(A, a.handlers).ready;
    await states.reach('connected');
    let n = 0;
    const publishA = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) await publishOk(short.url, { channel: A, data: ++n });
    };
    await publishA(3);
    await a.count(3);
    await publishA(3); // answers the held poll: the next one waits 600 ms in the proxy
    await a.count(6);
    await eventually(() => assert.equal(short.counters.sessions, 0, 'the session expired')); // its next poll is in the proxy
    const subB = herald.subscribe(B, b.handlers);
    await subB.ready;
    await publishOk(short.url, { channel: B, data: 'first' });
    await publishA(3);
    await a.count(9);
    await b.count(1);
    assert.deepEqual(a.offsets, range(1, 9));
    assert.deepEqual(b.messages.map((m) => m.data), ['first']);
    assert.equal(proxy.requests.find(isSessionPost)?.status, 404, 'the change was sent to the expired session');
    const sessions = new Set(proxy.requests.filter((r) => r.path === '/v1/poll').map((r) => r.query.get('session')));
    assert.ok(sessions.size >= 3, `new sessions were handed out: ${[...sessions].join(', ')}`);
    assert.equal(states.changes.filter((s) => s.state === 'connected').length, 1, 'the fallback is no reconnect');
  });

  it('longpoll: presence join and leave reach onJoin/onLeave', async (t) => {
    const secured = await startTestServer({ tokenSecret: SECRET });
    t.after(() => secured.close());
    const channel = 'lobby:poll-session';
    const grant = (sub: string): Promise<string> => signHs256({ sub, channels: ['lobby:*'], presence: ['lobby:*'], info: { name: sub } });
    const joins: PresenceEvent[] = [];
    const leaves: PresenceEvent[] = [];
    const watcher = client(secured.url, 'longpoll', { token: await grant('ada'), pollTimeoutS: 20 });
    t.after(() => watcher.close());
    await watcher.subscribe(channel, { onMessage() {}, onJoin: (e) => joins.push(e), onLeave: (e) => leaves.push(e) }).ready;
    await stateLog(watcher).reach('connected');
    const guest = client(secured.url, 'websocket', { token: await grant('bob') });
    t.after(() => guest.close());
    guest.subscribe(channel, { onMessage() {} });
    await eventually(() => assert.ok(joins.some((e) => e.user === 'bob'), 'a join for bob'), 10_000);
    assert.deepEqual(joins.find((e) => e.user === 'bob'), { channel, user: 'bob', info: { name: 'bob' } });
    guest.close();
    await eventually(() => assert.ok(leaves.some((e) => e.user === 'bob'), 'a leave for bob'), 10_000);
    assert.equal(leaves.find((e) => e.user === 'bob')?.channel, channel);
  });
});
