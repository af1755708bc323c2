// Listen sessions across nodes sharing one Redis (three Herald nodes in this process): a session lives on
// its home node (named in its id) and polls, streams and POSTs naming it on any node are relayed there.
// A poll session whose polls and POSTs round-robin over the nodes gets every message of every subscribed
// period once, in order; a POST on one node answers a poll held on another at once; a stream on one node
// is changed by POSTs on the others; the owner check holds across nodes; and a home that is gone answers
// 404 promptly, the client resuming from its cursor without losing anything. The same across the
// worker processes of `--workers` (a session POST landing on another worker works).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startHerald, type RunningHerald } from '../../src/herald.js';
import { SseClient, publishNumbers, waitUntil, type SseEvent } from '../helpers/clients.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { RawStream, cursorPositions, offsets, pollRaw, postSession, postSessionOk, type JsonObject } from '../helpers/session-clients.js';
import { startServerProcess, type ServerProcess } from '../helpers/server.js';
import { Inbox as SdkInbox, client as sdkClient, stateLog } from '../client/helpers.js';
import { SECRET, signHs256 } from '../helpers/tokens.js';

const SUITE_TIMEOUT_MS = 120_000;
/** A multi-node session id: the home node's id, then the 128 random bits. */
const NODE_SESSION_ID = /^n[0-9a-f]{12}\.[A-Za-z0-9_-]{22}$/;
const q = (entries: Record<string, string>): URLSearchParams => new URLSearchParams(entries);
let channelCount = 0;
const fresh = (name: string): string => `sn-${name}-${++channelCount}`;

let redis: RedisServer;
const nodes: RunningHerald[] = [];
const extraNodes: RunningHerald[] = [];
const open: { close(): void }[] = [];

const startNode = (): Promise<RunningHerald> =>
  startHerald({ port: 0, store: redis.url, logLevel: 'silent', tokenSecret: SECRET, anonymousChannels: ['sn-*'] });

before(async () => {
  redis = await startRedis();
  nodes.push(...(await Promise.all([startNode(), startNode(), startNode()])));
});
after(async () => {
  for (const client of open) client.close();
  await Promise.all([...nodes, ...extraNodes].map((node) => node.close()));
  await redis.stop();
});

/** Starts a poll on `node` and resolves once the node holds it; the answer is wrapped (not awaited). */
async function heldPollOn(node: RunningHerald, params: URLSearchParams): Promise<{ answer: Promise<JsonObject> }> {
  const held = node.counters.connections.poll;
  const answer = pollRaw(node.url, params);
  await waitUntil(() => node.counters.connections.poll === held + 1, `the poll to be held on ${node.url}`);
  return { answer };
}

const errorOf = (body: JsonObject): string | undefined => (body.error as { code?: string } | undefined)?.code;

// --- A poll client, as a browser behind a round-robin balancer would run it --------------------------

/** The cursor as its segments, by channel (a segment is base64url "channel\nepoch\noffset"). */
function segments(cursor: string): Map<string, string> {
  const map = new Map<string, string>();
  if (cursor === '') return map;
  for (const segment of cursor.split('.')) map.set(Buffer.from(segment, 'base64url').toString('utf8').split('\n')[0]!, segment);
  return map;
}

interface Received {
  channel: string;
  offset: number;
  /** The period of the channel (see RoundRobinSession.periods) when the message came. */
  period: number;
}

/**
 * A poll session whose every poll and POST goes to the next node. Like the SDK, it polls again only once
 * no POST is under way (the POST answers the held poll with its channels merged in; the next poll must
 * list them), and it merges a POST's cursor only for channels no answer named since.
 */
class RoundRobinSession {
  id: string | undefined;
  asked: string[];
  readonly cursor = new Map<string, string>();
  readonly received: Received[] = [];
  /** Per channel, its subscribed periods: where each started (the POST's cursor or the first poll's). */
  readonly periods = new Map<string, { start: number }[]>();
  readonly sessionIds = new Set<string>();
  readonly errors: Error[] = [];
  polls = 0;
  #nextPoll = 0;
  #nextPost = 1;
  #post: Promise<unknown> = Promise.resolve();
  #adding = new Set<string>();
  #isStopped = false;
  #controller: AbortController | undefined;
  #loop: Promise<void> | undefined;
  readonly #urls: string[];

  constructor(urls: string[], channels: string[]) {
    this.#urls = urls;
    this.asked = channels;
  }

  async start(): Promise<void> {
    const first = await pollRaw(this.#urls[this.#nextPoll++ % this.#urls.length]!, q({ channel: this.asked.join(','), session: 'new', timeout: '0' }));
    this.id = first.session as string;
    this.#take(first);
    for (const [channel, offset] of Object.entries(cursorPositions(first.cursor as string))) this.periods.set(channel, [{ start: offset }]);
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#isStopped) {
      await this.#post;
      if (this.#isStopped) return;
      const params = q({ session: this.id!, timeout: '5' });
      if (this.asked.length > 0) params.set('channel', this.asked.join(','));
      const cursor = this.asked.flatMap((c) => (this.cursor.has(c) ? [this.cursor.get(c)!] : [])).join('.');
      if (cursor !== '') params.set('cursor', cursor);
      this.#controller = new AbortController();
      try {
        const answer = await pollRaw(this.#urls[this.#nextPoll++ % this.#urls.length]!, params, this.#controller.signal);
        this.polls++;
        this.#take(answer);
      } catch (error) {
        if (!this.#isStopped) this.errors.push(error as Error);
        return;
      }
    }
  }

  #take(answer: JsonObject): void {
    this.sessionIds.add(answer.session as string);
    for (const entry of answer.messages as JsonObject[]) {
      if (entry.reset === true) throw new Error(`unexpected reset ${JSON.stringify(entry)}`);
      const channel = entry.channel as string;
      this.received.push({ channel, offset: entry.offset as number, period: (this.periods.get(channel)?.length ?? 0) - 1 });
    }
    for (const [channel, segment] of segments(answer.cursor as string)) {
      // A channel unsubscribed meanwhile is forgotten (an older answer may still name it).
      if (this.asked.includes(channel) || this.#adding.has(channel)) this.cursor.set(channel, segment);
    }
  }

  /** POSTs to the next node; resolves with the answer once it is taken in. */
  change(change: { subscribe?: string[]; unsubscribe?: string[] }): Promise<JsonObject> {
    const url = this.#urls[this.#nextPost++ % this.#urls.length]!;
    for (const channel of change.subscribe ?? []) {
      this.#adding.add(channel);
      this.periods.set(channel, [...(this.periods.get(channel) ?? []), { start: Number.NaN }]);
    }
    for (const channel of change.unsubscribe ?? []) this.cursor.delete(channel);
    this.asked = this.asked.filter((c) => !(change.unsubscribe ?? []).includes(c));
    const done = postSessionOk(url, this.id!, change).then((answer) => {
      const starts = segments((answer.cursor as string | undefined) ?? '');
      for (const channel of change.subscribe ?? []) {
        this.periods.get(channel)!.at(-1)!.start = cursorPositions(starts.get(channel)!)[channel]!;
        if (!this.cursor.has(channel)) this.cursor.set(channel, starts.get(channel)!);
        this.#adding.delete(channel);
      }
      this.asked = answer.channels as string[];
      return answer;
    });
    this.#post = done.catch(() => {});
    return done;
  }

  offsetsOf(channel: string, period: number): number[] {
    return this.received.filter((r) => r.channel === channel && r.period === period).map((r) => r.offset);
  }

  async stop(): Promise<void> {
    this.#isStopped = true;
    this.#controller?.abort();
    await this.#loop;
  }
}

describe('sessions across nodes', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('polls and POSTs round-robin over three nodes: every message of every subscribed period once, in order, no gap', async () => {
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(fresh) as [string, string, string, string];
    const all = [a, b, c, d];
    const client = new RoundRobinSession(nodes.map((n) => n.url), [a]);
    await client.start();
    assert.match(client.id!, NODE_SESSION_ID);
    // Messages published while a channel is surely subscribed (after its POST was answered, before its
    // unsubscribe was sent), per channel and period: each must come.
    const firm = new Map<string, number[][]>(all.map((channel) => [channel, []]));
    firm.get(a)!.push([]);
    const active = new Set([a]);
    const plan = ['+b', '+c', '-a', '+d', '-b', '+a', '-c', '-d', '+b', '+c', '-a', '+d'];
    let nextPublish = 0;
    let n = 0;
    for (const step of plan) {
      const channel = { a, b, c, d }[step[1] as 'a' | 'b' | 'c' | 'd'];
      if (step[0] === '+') {
        await client.change({ subscribe: [channel] });
        active.add(channel);
        firm.get(channel)!.push([]);
      } else {
        active.delete(channel);
        await client.change({ unsubscribe: [channel] });
      }
      // Two messages on every channel, subscribed or not, each batch to the next node.
      for (const target of all) {
        const results = await publishNumbers(nodes[nextPublish++ % nodes.length]!.url, target, [++n, ++n]);
        if (active.has(target)) firm.get(target)!.at(-1)!.push(...results.map((r) => r.offset));
      }
      await waitUntil(
        () => [...active].every((ch) => firm.get(ch)!.at(-1)!.every((offset) => client.offsetsOf(ch, firm.get(ch)!.length - 1).includes(offset))),
        `step ${step}: every firm message received (got ${JSON.stringify(client.received.slice(-8))})`,
        10_000,
      );
    }
    await client.stop();
    assert.deepEqual(client.errors, []);
    assert.deepEqual([...client.sessionIds], [client.id], 'one session throughout: nothing fell back');
    assert.ok(client.polls >= plan.length, `${client.polls} polls`);

    for (const channel of all) {
      const periods = client.periods.get(channel) ?? [];
      assert.equal(periods.length, firm.get(channel)!.length, `${channel}: periods`);
      periods.forEach(({ start }, period) => {
        const got = client.offsetsOf(channel, period);
        const expected = Array.from({ length: got.length }, (_, i) => start + 1 + i);
        assert.deepEqual(got, expected, `${channel} period ${period}: once each, in order, no gap from its start ${start}`);
        const missing = firm.get(channel)![period]!.filter((offset) => !got.includes(offset));
        assert.deepEqual(missing, [], `${channel} period ${period}: every message published while subscribed`);
      });
      // Messages published before the channel's first period never came.
      assert.ok(client.received.filter((r) => r.channel === channel).every((r) => r.period >= 0), `${channel}: nothing before subscribing`);
    }

    // History reads, too, may land anywhere: every node tells the same.
    for (const channel of all) {
      const histories = await Promise.all(
        nodes.map(async (node) => ((await (await fetch(`${node.url}/v1/history?channel=${channel}&limit=1000`)).json()) as { messages: { offset: number }[] }).messages.map((m) => m.offset)),
      );
      assert.equal(histories[0]!.length, plan.length * 2);
      for (const history of histories) assert.deepEqual(history, histories[0]);
    }
  });

  it('a POST on another node answers the held poll at once, with the change merged; the next poll continues it', async () => {
    const [a, b] = [fresh('a'), fresh('b')];
    const [home, holder, poster] = [nodes[2]!, nodes[0]!, nodes[1]!];
    const first = await pollRaw(home.url, q({ channel: a, session: 'new', timeout: '0' }));
    const id = first.session as string;
    await publishNumbers(home.url, b, [1]);
    const startedMs = Date.now();
    const poll = await heldPollOn(holder, q({ channel: a, cursor: first.cursor as string, session: id, timeout: '30' }));
    const answer = await postSessionOk(poster.url, id, { subscribe: [b] });
    assert.deepEqual(answer.channels, [a, b].sort());
    assert.deepEqual(cursorPositions(answer.cursor as string), { [b]: 1 });
    const woken = await poll.answer;
    const elapsedMs = Date.now() - startedMs;
    assert.ok(elapsedMs < 2000, `answered long before the 30 s timeout (${elapsedMs} ms)`);
    assert.deepEqual(woken, { messages: [], cursor: woken.cursor, session: id });
    assert.deepEqual(cursorPositions(woken.cursor as string), { [a]: 0, [b]: 1 });
    await waitUntil(() => holder.counters.connections.poll === 0, 'the held poll released');

    // An unsubscribe on a third node wakes a poll held on the home node itself.
    await publishNumbers(poster.url, b, [2]);
    const next = await pollRaw(poster.url, q({ cursor: woken.cursor as string, session: id, timeout: '5' }));
    assert.deepEqual(offsets(next), [[b, 2]]);
    const again = await heldPollOn(home, q({ cursor: next.cursor as string, session: id, timeout: '30' }));
    assert.deepEqual(await postSessionOk(holder.url, id, { unsubscribe: [b] }), { session: id, channels: [a] });
    const dropped = await again.answer;
    assert.deepEqual(Object.keys(cursorPositions(dropped.cursor as string)), [a]);
    assert.equal(dropped.session, id);
  });

  it('without a held poll, a change made on one node waits for the next poll on another; a lost answer changes nothing', async () => {
    const [a, b] = [fresh('a'), fresh('b')];
    await publishNumbers(nodes[0]!.url, b, [1, 2]);
    const first = await pollRaw(nodes[0]!.url, q({ channel: a, session: 'new', timeout: '0' }));
    const id = first.session as string;
    const answer = await postSessionOk(nodes[1]!.url, id, { subscribe: [b], since: 'beginning' });
    assert.deepEqual(cursorPositions(answer.cursor as string), { [b]: 0 });
    const stale = q({ channel: a, cursor: first.cursor as string, session: id, timeout: '0' });
    const polled = await pollRaw(nodes[2]!.url, stale);
    assert.deepEqual(offsets(polled), [[b, 1], [b, 2]]);
    const repeated = await pollRaw(nodes[1]!.url, stale);
    assert.deepEqual(offsets(repeated), [[b, 1], [b, 2]], 'the same again: the change is pending until a poll confirms it');
    const settled = await pollRaw(nodes[2]!.url, q({ cursor: polled.cursor as string, session: id, timeout: '0' }));
    assert.deepEqual(offsets(settled), []);
    assert.deepEqual(cursorPositions(settled.cursor as string), { [a]: 0, [b]: 2 });
    assert.equal(settled.session, id);
  });

  it('an SSE stream with session=new on one node, changed by POSTs on the two others', async () => {
    const [a, b] = [fresh('a'), fresh('b')];
    const parsed = (event: SseEvent): JsonObject => JSON.parse(event.data) as JsonObject;
    const isMessage = (event: SseEvent): boolean => typeof parsed(event).offset === 'number';
    const client = new SseClient(`${nodes[0]!.url}/v1/sse?channel=${a}&session=new`);
    open.push(client);
    const id = (parsed(await client.events.find((e) => e.type === 'session', 'the session event')) as { session: string }).session;
    assert.match(id, NODE_SESSION_ID);
    await client.opened();
    await publishNumbers(nodes[2]!.url, b, [1]); // before the subscription: not delivered

    const answer = await postSessionOk(nodes[1]!.url, id, { subscribe: [b] });
    assert.deepEqual(answer.channels, [a, b].sort());
    assert.deepEqual(cursorPositions(answer.cursor as string), { [b]: 1 });
    const marker = await client.events.find((e) => e.type === 'subscribed', 'the marker');
    assert.deepEqual(parsed(marker), { subscribed: [b], unsubscribed: [], cursor: marker.lastEventId });
    await publishNumbers(nodes[1]!.url, b, [2]);
    await publishNumbers(nodes[2]!.url, a, [1]);
    await client.events.until((items) => items.filter(isMessage).length === 2, 'b:2 and a:1');
    const messages = client.events.items.filter(isMessage);
    assert.deepEqual(messages.map((e) => [parsed(e).channel, parsed(e).offset]).sort(), [[a, 1], [b, 2]].sort());
    assert.ok(client.events.items.indexOf(messages.find((e) => parsed(e).channel === b)!) > client.events.items.indexOf(marker), 'b only after the marker');

    assert.deepEqual(await postSessionOk(nodes[2]!.url, id, { unsubscribe: [a] }), { session: id, channels: [b] });
    const second = await client.events.find((e) => e.type === 'subscribed' && (parsed(e).unsubscribed as string[]).length === 1, 'the second marker');
    assert.deepEqual(Object.keys(cursorPositions(second.lastEventId)), [b]);
    await waitUntil(() => nodes[0]!.hub.subscriberCount(a) === 0, 'a detached on the stream node');
  });

  it('a stream taking a session of another node (session=<id>) is changed by a POST on a third', async () => {
    const [a, b] = [fresh('a'), fresh('b')];
    const first = await RawStream.open(nodes[0]!.url, '/v1/stream', q({ channel: a, session: 'new' }));
    open.push(first);
    const id = (await first.objects.find((o) => typeof o.session === 'string', 'session')).session as string;
    first.close();
    const second = await RawStream.open(nodes[1]!.url, '/v1/stream', q({ channel: a, session: id }));
    open.push(second);
    assert.equal((await second.objects.find((o) => typeof o.session === 'string', 'session')).session, id, 'the same session, on another node');
    const answer = await postSessionOk(nodes[2]!.url, id, { subscribe: [b], since: 'beginning' });
    assert.deepEqual(answer.channels, [a, b].sort());
    await publishNumbers(nodes[0]!.url, b, [1]);
    await second.objects.until((items) => items.some((o) => o.channel === b), 'b:1 on the stream');
    const [, marker, message] = second.objects.items;
    assert.deepEqual(marker, { subscribed: [b], unsubscribed: [], cursor: marker!.cursor });
    assert.deepEqual([message!.channel, message!.offset], [b, 1]);
    assert.equal(nodes[1]!.hub.subscriberCount(b), 1, 'the stream node subscribed b');

    // Once that stream closes, a POST applies to the session's next listen request.
    second.close();
    await waitUntil(() => nodes[1]!.hub.subscriberCount(a) === 0, 'the stream to close');
    await waitUntil(async () => (await postSession(nodes[2]!.url, id, { unsubscribe: [a] })).status === 200, 'a POST once the stream ended');
    const polled = await pollRaw(nodes[2]!.url, q({ channel: `${a},${b}`, session: id, since: 'beginning', timeout: '0' }));
    assert.equal(polled.session, id);
    assert.deepEqual(Object.keys(cursorPositions(polled.cursor as string)), [b], 'the unsubscribe applied');
  });

  it("another user's token (or none) finds no session on any node; the owner's does", async () => {
    const ada = await signHs256({ sub: 'ada', channels: ['room:*'] });
    const bob = await signHs256({ sub: 'bob', channels: ['room:*'] });
    const opened = await pollRaw(nodes[0]!.url, q({ channel: 'room:1', session: 'new', timeout: '0', token: ada }));
    const id = opened.session as string;
    for (const node of nodes) {
      const refused = await postSession(node.url, id, { subscribe: ['room:2'] }, { Authorization: `Bearer ${bob}` });
      assert.deepEqual([refused.status, errorOf(refused.body)], [404, 'session_not_found'], node.url);
      const anonymous = await postSession(node.url, id, {});
      assert.deepEqual([anonymous.status, errorOf(anonymous.body)], [404, 'session_not_found'], `${node.url}: anonymous`);
    }
    // 404 comes before 403: bob asking for a channel he may not have still hears of no session.
    const forbidden = await postSession(nodes[1]!.url, id, { subscribe: ['secret:1'] }, { Authorization: `Bearer ${bob}` });
    assert.equal(forbidden.status, 404);
    const adaForbidden = await postSession(nodes[1]!.url, id, { subscribe: ['room:2', 'x'], unsubscribe: ['room:1'] }, { Authorization: `Bearer ${ada}` });
    assert.deepEqual([adaForbidden.status, errorOf(adaForbidden.body)], [403, 'forbidden_channel'], 'the owner is refused the channel, nothing applied');
    const bobs = await pollRaw(nodes[2]!.url, q({ channel: 'room:1', session: id, timeout: '0', token: bob }));
    assert.notEqual(bobs.session, id, 'his poll gets a session of his own');
    assert.deepEqual(await postSessionOk(nodes[2]!.url, id, {}, { Authorization: `Bearer ${ada}` }), { session: id, channels: ['room:1'] });
  });

  it('presence events queued at home wake a poll held on another node', async () => {
    const room = fresh('room').replace('sn-', 'room:');
    const grant = (user: string): Promise<string> => signHs256({ sub: user, channels: ['room:*'], presence: ['room:*'] });
    const ada = await grant('ada');
    const first = await pollRaw(nodes[0]!.url, q({ channel: room, session: 'new', presence: '1', timeout: '0', token: ada }));
    const id = first.session as string;
    const poll = await heldPollOn(nodes[1]!, q({ cursor: first.cursor as string, session: id, presence: '1', timeout: '30', token: ada }));
    const startedMs = Date.now();
    const bob = await RawStream.open(nodes[0]!.url, '/v1/stream', q({ channel: room, token: await grant('bob') }));
    open.push(bob);
    const answer = await poll.answer;
    assert.ok(Date.now() - startedMs < 2000, 'woken at once');
    assert.equal(answer.session, id);
    assert.ok((answer.presence as JsonObject[]).some((e) => e.presence === 'join' && e.user === 'bob'), JSON.stringify(answer));
    bob.close();
  });

  it('a home node that stopped: a POST elsewhere is 404 promptly, and the client resumes from its cursor losing nothing', async () => {
    const home = await startNode();
    extraNodes.push(home);
    const channel = fresh('x');
    await publishNumbers(nodes[0]!.url, channel, [1, 2]);
    const first = await pollRaw(home.url, q({ channel, session: 'new', since: 'beginning', timeout: '0' }));
    const id = first.session as string;
    assert.deepEqual(offsets(first), [[channel, 1], [channel, 2]]);
    const poll = await heldPollOn(nodes[1]!, q({ channel, cursor: first.cursor as string, session: id, timeout: '30' }));
    await home.close();
    await publishNumbers(nodes[0]!.url, channel, [3, 4]);
    const polled = await poll.answer; // the held poll goes on without its home
    assert.deepEqual(offsets(polled)[0], [channel, 3]);

    const startedMs = Date.now();
    const refused = await postSession(nodes[2]!.url, id, { subscribe: [fresh('y')] });
    assert.deepEqual([refused.status, errorOf(refused.body)], [404, 'session_not_found']);
    assert.ok(Date.now() - startedMs <= 2500, `prompt (${Date.now() - startedMs} ms)`);
    // The client listens again from the cursor it has: a new session, and nothing lost (at once: the node
    // that waited for the home once does not wait again).
    const resumedMs = Date.now();
    const resumed = await pollRaw(nodes[2]!.url, q({ channel, cursor: polled.cursor as string, session: id, timeout: '0' }));
    assert.notEqual(resumed.session, id);
    assert.match(resumed.session as string, NODE_SESSION_ID);
    assert.deepEqual([...offsets(polled), ...offsets(resumed)], [[channel, 3], [channel, 4]]);
    assert.ok(Date.now() - resumedMs < 1000, `not waiting for the home again (${Date.now() - resumedMs} ms)`);
    assert.equal((await postSession(nodes[1]!.url, resumed.session as string, {})).status, 200, 'the new session works from any node');
  });

  it('a home that never answers (gone without a word): 404 after the relay bound, then a poll gets a new session at once', async () => {
    const channel = fresh('z');
    const nowhere = 'n0123456789ab.AAAAAAAAAAAAAAAAAAAAAA';
    let startedMs = Date.now();
    const refused = await postSession(nodes[0]!.url, nowhere, {});
    const postMs = Date.now() - startedMs;
    assert.deepEqual([refused.status, errorOf(refused.body)], [404, 'session_not_found']);
    assert.ok(postMs >= 1500 && postMs <= 3000, `after about 2 s (${postMs} ms)`);
    startedMs = Date.now();
    const polled = await pollRaw(nodes[0]!.url, q({ channel, session: nowhere, timeout: '0' }));
    assert.notEqual(polled.session, nowhere);
    assert.ok(Date.now() - startedMs < 1000, `the node that did not answer is not waited for again (${Date.now() - startedMs} ms)`);
  });
});

/**
 * A plain round-robin balancer: every request goes to the next node (no stickiness, no cookie), its
 * answer piped back as it comes.
 */
async function roundRobinProxy(targets: RunningHerald[]): Promise<{ url: string; requests: { method: string; path: string; node: number; status?: number }[]; close(): Promise<void> }> {
  const requests: { method: string; path: string; node: number; status?: number }[] = [];
  let next = 0;
  const server = createServer((req, res) => {
    const node = next++ % targets.length;
    const record: { method: string; path: string; node: number; status?: number } = { method: req.method ?? 'GET', path: new URL(req.url ?? '/', 'http://x').pathname, node };
    requests.push(record);
    const upstream = request({ host: '127.0.0.1', port: targets[node]!.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      record.status = answer.statusCode;
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

describe('the SDK behind a round-robin balancer over three nodes', { timeout: SUITE_TIMEOUT_MS }, () => {
  for (const transport of ['longpoll', 'sse', 'stream'] as const) {
    it(`${transport}: subscribing and unsubscribing go by session POSTs on other nodes; every message once, in order`, async () => {
      const proxy = await roundRobinProxy(nodes);
      const herald = sdkClient(proxy.url, transport, { pollTimeoutS: 10, heartbeatMs: 2000 });
      const states = stateLog(herald);
      try {
        const [A, B] = [fresh(`sdk-a-${transport}`), fresh(`sdk-b-${transport}`)];
        const a = new SdkInbox();
        const b = new SdkInbox();
        let n = 0;
        const publishTo = async (channel: string, count: number): Promise<void> => {
          for (let i = 0; i < count; i++) await publishNumbers(nodes[n % nodes.length]!.url, channel, [++n]);
        };
        const subA = herald.subscribe(A, a.handlers);
        await subA.ready;
        await states.reach('connected');
        await publishTo(A, 5);
        const subB = herald.subscribe(B, b.handlers);
        await publishTo(A, 5); // A keeps flowing while B joins
        await subB.ready;
        await publishTo(B, 3);
        await a.count(10);
        await b.count(3);
        subA.unsubscribe();
        await publishTo(A, 2);
        await publishTo(B, 2);
        await b.count(5);

        assert.deepEqual(a.offsets, Array.from({ length: 10 }, (_, i) => i + 1), 'A: every message once, in order');
        assert.deepEqual(b.offsets, [1, 2, 3, 4, 5], 'B: every message once, in order');
        const posts = proxy.requests.filter((r) => r.method === 'POST' && r.path.startsWith('/v1/session/'));
        assert.ok(posts.length >= 2, `${posts.length} session POSTs`);
        assert.deepEqual(posts.map((r) => r.status), posts.map(() => 200), 'every POST found the session, on whichever node');
        const listens = proxy.requests.filter((r) => r.path === { longpoll: '/v1/poll', sse: '/v1/sse', stream: '/v1/stream' }[transport]);
        assert.ok(new Set(listens.map((r) => r.node)).size >= (transport === 'longpoll' ? 2 : 1));
        if (transport !== 'longpoll') {
          assert.equal(listens.length, 1, `the stream was never reopened: ${JSON.stringify(proxy.requests)}`);
          assert.ok(posts.some((r) => r.node !== listens[0]!.node), 'a POST landed on another node than the stream');
        }
        assert.equal(states.changes.filter((change) => change.state === 'connected').length, 1, 'no reconnect');
      } finally {
        herald.close();
        await proxy.close();
      }
    });
  }
});

/** A request on a connection of its own (`Connection: close`): under `--workers`, it may land on any worker. */
function freshRequest(url: string, path: string, body?: unknown): Promise<{ status: number; body: JsonObject }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      `${url}${path}`,
      {
        method: payload === undefined ? 'GET' : 'POST',
        agent: false,
        headers: { Connection: 'close', ...(payload === undefined ? {} : { 'Content-Type': 'application/json' }) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) as JsonObject }));
      },
    );
    req.setTimeout(40_000, () => req.destroy(new Error(`no answer to ${path}`)));
    req.on('error', reject);
    req.end(payload);
  });
}

describe('sessions across workers', { timeout: SUITE_TIMEOUT_MS }, () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess(['--workers', '2', '--store', 'memory']);
  });
  after(() => server.kill('SIGTERM'));

  it('POSTs and polls land on either worker: every one finds the session; a POST answers a poll held on the other worker at once', async () => {
    const channels = ['sw-a', 'sw-b', 'sw-c', 'sw-d', 'sw-e', 'sw-f'];
    // Connections are dealt round-robin to the workers: sessions made on both of them.
    const opened = await Promise.all([0, 1, 2, 3].map(() => freshRequest(server.url, `/v1/poll?channel=${channels[0]}&session=new&timeout=0`)));
    const homes = new Set(opened.map((o) => (o.body.session as string).split('.')[0]));
    assert.equal(homes.size, 2, `sessions on both workers: ${[...homes].join(', ')}`);
    const id = opened[0]!.body.session as string;
    assert.match(id, /^w\d+\.[A-Za-z0-9_-]{22}$/);

    let cursor = opened[0]!.body.cursor as string;
    for (const channel of channels.slice(1)) {
      const changed = await freshRequest(server.url, `/v1/session/${id}`, { subscribe: [channel] });
      assert.equal(changed.status, 200, JSON.stringify(changed.body));
      const polled = await freshRequest(server.url, `/v1/poll?cursor=${cursor}&session=${id}&timeout=0`);
      assert.equal(polled.body.session, id, 'the same session, whichever worker took the poll');
      assert.ok(Object.keys(cursorPositions(polled.body.cursor as string)).includes(channel), `${channel} merged into the poll`);
      cursor = polled.body.cursor as string;
    }

    for (const channel of channels.slice(0, 4)) {
      const startedMs = Date.now();
      const held = freshRequest(server.url, `/v1/poll?cursor=${cursor}&session=${id}&timeout=30`);
      await new Promise((resolve) => setTimeout(resolve, 300)); // the poll is held by now
      const changed = await freshRequest(server.url, `/v1/session/${id}`, { unsubscribe: [channel] });
      assert.equal(changed.status, 200);
      const answer = await held;
      assert.ok(Date.now() - startedMs < 3000, `answered at once (${Date.now() - startedMs} ms)`);
      assert.ok(!Object.keys(cursorPositions(answer.body.cursor as string)).includes(channel), `${channel} dropped`);
      cursor = answer.body.cursor as string;
    }
    const published = await freshRequest(server.url, '/v1/publish', { channel: 'sw-f', data: { n: 1 } });
    assert.equal(published.status, 200);
    const last = await freshRequest(server.url, `/v1/poll?cursor=${cursor}&session=${id}&timeout=5`);
    assert.deepEqual(offsets(last.body), [['sw-f', 1]]);
  });
});
