import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import { publish, startTestServer } from '../helpers/server.js';

describe('server basics', () => {
  let herald: RunningHerald;
  before(async () => {
    herald = await startTestServer();
  });
  after(() => herald.close());

  it('answers /healthz', async () => {
    const res = await fetch(`${herald.url}/healthz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok', engine: 'memory' });
  });

  it('publishes with consecutive offsets and answers a short poll from the beginning', async () => {
    const first = await publish(herald.url, { channel: 'smoke', data: { n: 1 } });
    assert.equal(first.status, 200);
    const { results } = (await first.json()) as { results: { channel: string; offset: number; epoch: string }[] };
    assert.equal(results[0]!.offset, 1);
    await publish(herald.url, { channel: 'smoke', data: { n: 2 }, event: 'tick' });
    const poll = await fetch(`${herald.url}/v1/poll?channel=smoke&since=beginning&timeout=0`);
    const body = (await poll.json()) as { messages: { offset: number; data: unknown; event?: string }[]; cursor: string };
    assert.deepEqual(body.messages.map((m) => [m.offset, m.data, m.event]), [[1, { n: 1 }, undefined], [2, { n: 2 }, 'tick']]);
    assert.equal(typeof body.cursor, 'string');
  });

  it('answers unknown paths with a JSON 404', async () => {
    const res = await fetch(`${herald.url}/nope`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'not_found');
  });
});
