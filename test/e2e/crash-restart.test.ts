// What a SIGKILL of the server process does to channels: with the durable store nothing acknowledged is
// lost, offsets continue and epochs stay, so cursors from before the crash resume exactly; with the
// memory store the epoch changes and resuming clients are told (reset); with a small history, a cursor
// older than what was kept gets a reset with the number of messages it missed.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { publish, startServerProcess, tempDataDir, type ServerProcess } from '../helpers/server.js';
import { openSession, type Delivery, type TransportKind } from '../helpers/resume-clients.js';

interface Result {
  channel: string;
  offset: number;
  epoch: string;
}

interface PollEntry {
  reset?: true;
  channel: string;
  offset?: number;
  epoch: string;
  from?: number;
  missed?: number;
  data?: unknown;
  cursor: string;
}

async function publishOk(url: string, body: unknown): Promise<Result[]> {
  const res = await publish(url, body);
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return (JSON.parse(text) as { results: Result[] }).results;
}

async function shortPoll(url: string, query: string): Promise<{ messages: PollEntry[]; cursor: string }> {
  const res = await fetch(`${url}/v1/poll?${query}&timeout=0&limit=1000`);
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text) as { messages: PollEntry[]; cursor: string };
}

/** Opens a session and collects its first `count` deliveries (fails after 10 s). */
async function collect(kind: TransportKind, baseUrl: string, channels: string[], cursor: string | undefined, count: number, style = 0): Promise<Delivery[]> {
  const deliveries: Delivery[] = [];
  let done!: () => void;
  const reached = new Promise<void>((resolve) => (done = resolve));
  const session = openSession(kind, {
    baseUrl,
    channels,
    cursor,
    style,
    onDelivery(delivery) {
      deliveries.push(delivery);
      if (deliveries.length === count) {
        session.close();
        done();
      }
    },
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      reached,
      session.ended.then((end) => {
        if (end.kind !== 'closed') throw new Error(`${kind} session ended early: ${JSON.stringify(end)} after ${deliveries.length}`);
      }),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${kind}: only ${deliveries.length}/${count} deliveries after 10 s`)), 10_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    session.close();
  }
  return deliveries;
}

const describeDelivery = (d: Delivery): string =>
  d.type === 'reset'
    ? `reset ${d.reset.channel} from ${d.reset.from}${d.reset.missed === undefined ? '' : ` missed ${d.reset.missed}`}`
    : `${d.envelope.channel}#${d.envelope.offset}`;

describe('crash and restart', () => {
  const servers: ServerProcess[] = [];
  const dirs: { remove(): void }[] = [];
  const start = async (args: string[]): Promise<ServerProcess> => {
    const server = await startServerProcess(args);
    servers.push(server);
    return server;
  };
  const newDir = (): string => {
    const dir = tempDataDir();
    dirs.push(dir);
    return dir.dir;
  };
  after(async () => {
    for (const server of servers) await server.kill('SIGKILL');
    for (const dir of dirs) dir.remove();
  });

  it('sqlite: offsets continue, the epoch stays and a cursor from before the kill resumes exactly', { timeout: 30_000 }, async () => {
    const args = ['--store', 'sqlite', '--data-dir', newDir()];
    const first = await start(args);
    const channels = ['crash.a', 'crash.b'];
    const before: Result[] = [];
    const publishPair = async (i: number): Promise<void> => {
      before.push(...(await publishOk(first.url, { messages: channels.map((channel) => ({ channel, data: { i } })) })));
    };
    for (let i = 1; i <= 4; i++) await publishPair(i);
    // A cursor holding a mid-way position on both channels: crash.a at 5, crash.b at 4.
    const atFour = await shortPoll(first.url, 'channel=crash.a&channel=crash.b&since=beginning');
    before.push(...(await publishOk(first.url, { channel: 'crash.a', data: { i: 5 } })));
    const atFive = await fetch(`${first.url}/v1/poll?cursor=${atFour.cursor}&timeout=0&limit=1`);
    const { messages: fifth, cursor } = (await atFive.json()) as { messages: PollEntry[]; cursor: string };
    assert.deepEqual(fifth.map((m) => `${m.channel}#${m.offset}`), ['crash.a#5']);
    before.push(...(await publishOk(first.url, { channel: 'crash.b', data: { i: 5 } })));
    for (let i = 6; i <= 8; i++) await publishPair(i);
    const epochs = new Map(before.filter((r) => r.offset === 1).map((r) => [r.channel, r.epoch]));
    assert.deepEqual(before.map((r) => r.offset), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8]);

    await first.kill('SIGKILL');
    const second = await start(args);

    const afterRestart = await publishOk(second.url, { messages: [{ channel: 'crash.a', data: { i: 9 } }, { channel: 'crash.b', data: { i: 9 } }] });
    assert.deepEqual(afterRestart.map((r) => [r.channel, r.offset, r.epoch]), [
      ['crash.a', 9, epochs.get('crash.a')],
      ['crash.b', 9, epochs.get('crash.b')],
    ]);

    // Resuming the pre-crash cursor delivers exactly what came after it, on every kind of transport.
    const expected = ['crash.a#6', 'crash.a#7', 'crash.a#8', 'crash.a#9', 'crash.b#5', 'crash.b#6', 'crash.b#7', 'crash.b#8', 'crash.b#9'];
    const polled = await shortPoll(second.url, `cursor=${cursor}`);
    assert.deepEqual(polled.messages.map((m) => `${m.channel}#${m.offset}`), expected);
    assert.ok(polled.messages.every((m) => m.reset === undefined && m.epoch === epochs.get(m.channel)));
    const sortByChannel = (names: string[]): string[] => [...names].sort((x, y) => x.localeCompare(y, 'en', { numeric: true }));
    for (const [kind, style] of [['sse', 1], ['sse', 2], ['websocket', 0], ['websocket', 1], ['stream', 1], ['iframe', 0], ['jsonp', 0]] as const) {
      const resumed = await collect(kind, second.url, channels, cursor, expected.length, style);
      // A WebSocket resumed channel by channel replays them in the order subscribed: the same set.
      assert.deepEqual(sortByChannel(resumed.map(describeDelivery)), expected, `${kind} (style ${style})`);
    }
    // And the durable history is complete from the beginning.
    const all = await shortPoll(second.url, 'channel=crash.a&channel=crash.b&since=beginning');
    assert.equal(all.messages.length, 18);
    assert.deepEqual(all.messages.map((m) => m.data), [1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => ({ i })));
  });

  it('sqlite: an idempotency key sent before the kill is still known after it', { timeout: 30_000 }, async () => {
    const args = ['--store', 'sqlite', '--data-dir', newDir()];
    const first = await start(args);
    const [original] = await publishOk(first.url, { channel: 'crash.idem', data: 1, idempotencyKey: 'k-1' });
    await first.kill('SIGKILL');
    const second = await start(args);
    const [again] = await publishOk(second.url, { channel: 'crash.idem', data: 1, idempotencyKey: 'k-1' });
    assert.deepEqual([again!.offset, again!.epoch], [original!.offset, original!.epoch]);
    const [next] = await publishOk(second.url, { channel: 'crash.idem', data: 2, idempotencyKey: 'k-2' });
    assert.equal(next!.offset, 2);
    const all = await shortPoll(second.url, 'channel=crash.idem&since=beginning');
    assert.deepEqual(all.messages.map((m) => m.data), [1, 2]);
  });

  it('memory: the epoch changes on restart and a resumed client is told with a reset', { timeout: 30_000 }, async () => {
    const first = await start(['--store', 'memory']);
    const published = await publishOk(first.url, { messages: [1, 2, 3, 4, 5].map((i) => ({ channel: 'mem.a', data: i })) });
    const oldEpoch = published[0]!.epoch;
    const { cursor } = await shortPoll(first.url, 'channel=mem.a&since=beginning');

    await first.kill('SIGKILL');
    const second = await start(['--store', 'memory']);

    // Before anything new is published: a reset to the (empty) new epoch.
    const polled = await shortPoll(second.url, `cursor=${cursor}`);
    assert.equal(polled.messages.length, 1);
    const reset = polled.messages[0]!;
    assert.equal(reset.reset, true);
    assert.equal(reset.channel, 'mem.a');
    assert.notEqual(reset.epoch, oldEpoch);
    assert.equal(reset.from, 1);
    assert.equal(reset.missed, undefined, 'across epochs the server cannot know how many were missed');

    const [fresh] = await publishOk(second.url, { channel: 'mem.a', data: 'new' });
    assert.deepEqual([fresh!.offset, fresh!.epoch], [1, reset.epoch]);
    for (const kind of ['websocket', 'sse', 'stream', 'longpoll'] as const) {
      const resumed = await collect(kind, second.url, ['mem.a'], cursor, 2);
      assert.deepEqual(resumed.map(describeDelivery), ['reset mem.a from 1', 'mem.a#1'], kind);
      const [notice, message] = resumed as [Extract<Delivery, { type: 'reset' }>, Extract<Delivery, { type: 'message' }>];
      assert.equal(notice.reset.epoch, fresh!.epoch, kind);
      assert.equal(message.envelope.epoch, fresh!.epoch, kind);
      assert.equal(message.envelope.data, 'new', kind);
    }
  });

  it('--history-size 5: only the last 5 survive a restart and an older cursor gets a reset with the missed count', { timeout: 30_000 }, async () => {
    const args = ['--store', 'sqlite', '--data-dir', newDir(), '--history-size', '5'];
    const first = await start(args);
    const early = await publishOk(first.url, { messages: [1, 2, 3].map((i) => ({ channel: 'hist.a', data: i })) });
    const epoch = early[0]!.epoch;
    const { cursor } = await shortPoll(first.url, 'channel=hist.a&since=beginning');
    for (let i = 4; i <= 20; i++) await publishOk(first.url, { channel: 'hist.a', data: i });

    await first.kill('SIGKILL');
    const second = await start(args);

    const retained = await shortPoll(second.url, 'channel=hist.a&since=beginning');
    assert.deepEqual(retained.messages.map((m) => [m.offset, m.data, m.epoch]), [16, 17, 18, 19, 20].map((i) => [i, i, epoch]));

    const resumed = await shortPoll(second.url, `cursor=${cursor}`);
    const [reset, ...rest] = resumed.messages;
    assert.deepEqual(
      { reset: reset!.reset, channel: reset!.channel, epoch: reset!.epoch, from: reset!.from, missed: reset!.missed },
      { reset: true, channel: 'hist.a', epoch, from: 16, missed: 12 },
    );
    assert.deepEqual(rest.map((m) => m.offset), [16, 17, 18, 19, 20]);
    const overSse = await collect('sse', second.url, ['hist.a'], cursor, 6, 1);
    assert.deepEqual(overSse.map(describeDelivery), ['reset hist.a from 16 missed 12', 'hist.a#16', 'hist.a#17', 'hist.a#18', 'hist.a#19', 'hist.a#20']);

    // Offsets go on after the retained ones, in the same epoch.
    const [next] = await publishOk(second.url, { channel: 'hist.a', data: 21 });
    assert.deepEqual([next!.offset, next!.epoch], [21, epoch]);
  });
});
