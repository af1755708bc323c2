// A token that expires while connected: the client is told (WS op, SSE event, stream/iframe notice),
// has a grace period to present a fresh token, and is disconnected otherwise, losing nothing either way:
// a refresh keeps the connection, a reconnect resumes from the cursor.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../../src/herald.js';
import { SUITE_TIMEOUT_MS, WsClient, publishOk, subscribeIframe, subscribeNdjson, subscribeSse } from '../../helpers/clients.js';
import { startTestServer } from '../../helpers/server.js';
import { SECRET, signHs256 } from '../../helpers/tokens.js';

const KEY = 'publish-key-for-tests';
const GRACE_MS = 1000;
/** exp is in whole seconds and the sweep checks once a second: expiry plus grace lands within this. */
const WAIT_MS = 8000;
let server: RunningHerald;
let n = 0;
const fresh = (): string => `user:e${++n}`;
const nowS = (): number => Math.floor(Date.now() / 1000);
const shortLived = (channel: string, sub = 'e'): Promise<string> => signHs256({ sub, channels: [channel], exp: nowS() + 2 });
const longLived = (channel: string, sub = 'e'): Promise<string> => signHs256({ sub, channels: [channel], exp: nowS() + 600 });
const publish = (channel: string, data: unknown): Promise<unknown> => publishOk(server.url, { channel, data }, { Authorization: `Bearer ${KEY}` });

before(async () => {
  server = await startTestServer({ tokenSecret: SECRET, publishKey: KEY, tokenGraceMs: GRACE_MS });
});
after(() => server.close());

describe('token expiry while connected', { timeout: SUITE_TIMEOUT_MS, concurrency: true }, () => {
  it('WebSocket: notice, refresh within the grace period, and the socket lives on with nothing lost', async () => {
    const channel = fresh();
    const client = await WsClient.connect(server.url);
    try {
      await client.request({ op: 'auth', token: await shortLived(channel) });
      await client.request({ op: 'subscribe', channel });
      await publish(channel, 1);
      const notice = await client.frames.find((f) => f.op === 'token_expired', 'the token_expired op', WAIT_MS);
      assert.equal(notice.graceMs, GRACE_MS);
      await publish(channel, 2); // during the grace period
      const refreshed = await client.request({ op: 'refresh', token: await longLived(channel) });
      assert.equal(refreshed.op, 'refreshed');
      // Well past the grace period (nothing to await: the point is that nothing happens), the socket
      // is still open and delivering.
      await new Promise((resolve) => setTimeout(resolve, GRACE_MS + 1500));
      await publish(channel, 3);
      await client.frames.until((fs) => fs.filter((f) => f.op === 'message').length === 3, 'three messages');
      assert.deepEqual(client.frames.items.filter((f) => f.op === 'message').map((f) => f.data), [1, 2, 3]);
      assert.equal(client.ws.readyState, client.ws.OPEN);
    } finally {
      await client.close();
    }
  });

  it('WebSocket: without a refresh the socket is closed with 4001 token_expired after the grace period', async () => {
    const channel = fresh();
    const client = await WsClient.connect(server.url, { query: new URLSearchParams({ channel, token: await shortLived(channel) }) });
    const notice = await client.frames.find((f) => f.op === 'token_expired', 'the token_expired op', WAIT_MS);
    const noticedAt = Date.now();
    const closed = await client.closed;
    assert.deepEqual(closed, { code: 4001, reason: 'token_expired' });
    assert.ok(Date.now() - noticedAt >= GRACE_MS - 50, 'the grace period was given');
    assert.equal(notice.graceMs, GRACE_MS);
  });

  it('SSE: token_expired event, the stream ends after the grace period, a reconnect with a fresh token resumes losslessly', async () => {
    const channel = fresh();
    const sub = await subscribeSse(server.url, { channels: [channel], token: await shortLived(channel) });
    try {
      await publish(channel, 1);
      await sub.waitForMessages(1);
      const notice = await sub.client.events.find((e) => e.type === 'token_expired', 'the token_expired event', WAIT_MS);
      assert.deepEqual(JSON.parse(notice.data), { code: 'token_expired', graceMs: GRACE_MS });
      await sub.client.errors.find(() => true, 'the stream to end', WAIT_MS);
      const cursor = sub.cursor();
      sub.client.close();
      await publish(channel, 2); // while disconnected
      const resumed = await subscribeSse(server.url, { channels: [channel], cursor, token: await longLived(channel) });
      try {
        await publish(channel, 3);
        assert.deepEqual((await resumed.waitForMessages(2)).map((e) => e.data), [2, 3]);
      } finally {
        await resumed.close();
      }
    } finally {
      await sub.close();
    }
  });

  for (const [name, connect] of [['NDJSON stream', subscribeNdjson], ['iframe', subscribeIframe]] as const) {
    it(`${name}: a notice, then the end of the stream`, async () => {
      const channel = fresh();
      const sub = await connect(server.url, { channels: [channel], token: await shortLived(channel) });
      try {
        const notice = await sub.notices.find(() => true, 'the notice line', WAIT_MS);
        assert.deepEqual(notice, { notice: 'token_expired', graceMs: GRACE_MS });
        await assert.rejects(sub.entries.until(() => false, 'the end of the stream', WAIT_MS), /the server ended the stream/);
      } finally {
        await sub.close();
      }
    });
  }
});
