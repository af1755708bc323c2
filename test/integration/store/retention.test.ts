import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { RunningHerald } from '../../../src/herald.js';
import { publish, startTestServer, tempDataDir } from '../../helpers/server.js';

interface PollBody {
  messages: { channel: string; offset: number; epoch: string; reset?: true; from?: number; missed?: number; data?: unknown }[];
  cursor: string;
}

async function poll(herald: RunningHerald, query: string): Promise<PollBody> {
  const res = await fetch(`${herald.url}/v1/poll?timeout=0&${query}`);
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as PollBody;
}

describe('retention', () => {
  const servers: RunningHerald[] = [];
  const dirs: { remove(): void }[] = [];
  after(async () => {
    for (const s of servers) await s.close();
    for (const d of dirs) d.remove();
  });

  it('expires messages past the TTL and tells a resuming client what it missed', async () => {
    const herald = await startTestServer({ historyTtlMs: 60_000 });
    servers.push(herald);
    const start = await poll(herald, 'channel=ttl');
    for (let i = 0; i < 3; i++) await publish(herald.url, { channel: 'ttl', data: i });
    herald.hub.sweep(Date.now() + 61_000);
    await publish(herald.url, { channel: 'ttl', data: 3 });
    const body = await poll(herald, `cursor=${start.cursor}`);
    assert.deepEqual(body.messages.map((m) => (m.reset ? ['reset', m.from, m.missed] : m.offset)), [['reset', 4, 3], 4]);
  });

  it('forgets channels that were only subscribed to, and keeps published ones', async () => {
    const herald = await startTestServer();
    servers.push(herald);
    await publish(herald.url, { channel: 'kept', data: 1 });
    const before = herald.hub.engine.channelCount;
    for (let i = 0; i < 200; i++) await poll(herald, `channel=random-${i}`);
    assert.equal(herald.hub.engine.channelCount, before + 200);
    herald.hub.sweep(Date.now());
    assert.equal(herald.hub.engine.channelCount, 1);
    const body = await poll(herald, 'channel=kept&since=beginning');
    assert.deepEqual(body.messages.map((m) => m.data), [1]);
  });

  it('reloads an evicted SQLite window with the same epoch and offsets', async () => {
    const data = tempDataDir();
    dirs.push(data);
    const herald = await startTestServer({ store: 'sqlite', dataDir: data.dir });
    servers.push(herald);
    const first = (await (await publish(herald.url, { channel: 'disk', data: 'a', idempotencyKey: 'k' })).json()) as {
      results: { offset: number; epoch: string }[];
    };
    const cursor = (await poll(herald, 'channel=disk')).cursor;
    herald.hub.sweep(Date.now());
    assert.equal(herald.hub.engine.channelCount, 0, 'an unused window leaves memory');
    const again = (await (await publish(herald.url, { channel: 'disk', data: 'a', idempotencyKey: 'k' })).json()) as {
      results: { offset: number; epoch: string; duplicate?: boolean }[];
    };
    assert.deepEqual(again.results[0], { ...first.results[0], channel: 'disk', duplicate: true }, 'idempotency survives the reload');
    await publish(herald.url, { channel: 'disk', data: 'b' });
    const body = await poll(herald, `cursor=${cursor}`);
    assert.deepEqual(body.messages.map((m) => [m.offset, m.epoch, m.data]), [[2, first.results[0]!.epoch, 'b']]);
  });
});
