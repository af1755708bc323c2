// Failures that TCP does not report, and paths that block a transport: the client finds out by itself
// and carries on with nothing lost.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import { Herald, HeraldError, type TransportName } from '../../src/client/index.js';
import { startTestServer } from '../helpers/server.js';
import { Inbox, blackHoleProxy, client, noUpgradeProxy, publishOk, stateLog } from './helpers.js';

describe('client resilience', () => {
  let server: RunningHerald;
  before(async () => {
    server = await startTestServer({ heartbeatMs: 200 });
  });
  after(() => server.close());

  // SSE is left out: EventSource hides the server's `:` keepalive comments, so a silent SSE stream
  // cannot be told from a quiet one (see the SSE transport).
  for (const transport of ['websocket', 'stream', 'longpoll'] as TransportName[]) {
    it(`detects a dead ${transport} connection by missed heartbeats and resumes without loss`, async () => {
      const proxy = await blackHoleProxy(server.port);
      // fetch keeps idle connections for reuse, and the freeze kills those too: a short open timeout
      // lets a reconnect that drew a dead pooled connection give up quickly and try a fresh one.
      const herald = client(proxy.url, transport, { heartbeatMs: 200, pingMs: 200, pollTimeoutS: 1, connectTimeoutMs: 1000 });
      const states = stateLog(herald);
      const channel = `dead-${transport}`;
      try {
        const inbox = new Inbox();
        await herald.subscribe(channel, inbox.handlers).ready;
        await states.reach('connected');
        for (let n = 1; n <= 3; n++) await publishOk(server.url, { channel, data: n });
        await inbox.count(3);

        proxy.freeze(); // the connection goes silent; neither end is told
        for (let n = 4; n <= 6; n++) await publishOk(server.url, { channel, data: n });
        const lost = await states.reach('disconnected', 8000);
        assert.match(lost.reason ?? '', /heartbeat_timeout/);
        await inbox.count(6, 8000);
        assert.deepEqual(inbox.offsets, [1, 2, 3, 4, 5, 6]);
      } finally {
        herald.close();
        await proxy.close();
      }
    });
  }

  it('falls back to the next transport when a proxy refuses WebSocket upgrades', async () => {
    const proxy = await noUpgradeProxy(server.port);
    const herald = client(proxy.url, 'websocket', { transports: ['websocket', 'sse', 'stream', 'longpoll'] });
    const states = stateLog(herald);
    try {
      const inbox = new Inbox();
      await herald.subscribe('fallback', inbox.handlers).ready;
      const connected = await states.reach('connected');
      assert.equal(connected.transport, 'sse');
      assert.ok(states.changes.some((s) => s.state === 'disconnected' && /websocket unavailable/.test(s.reason ?? '')));
      await publishOk(server.url, { channel: 'fallback', data: 'via sse' });
      await inbox.count(1);
      assert.equal(inbox.messages[0]!.data, 'via sse');
    } finally {
      herald.close();
      await proxy.close();
    }
  });

  it('backs off with full jitter while the server is down, and close() stops everything', async () => {
    const down = await startTestServer();
    const url = down.url;
    await down.close();
    const herald = client(url, 'longpoll', { backoff: { initialMs: 20, maxMs: 80 } });
    const states = stateLog(herald);
    herald.subscribe('nobody', { onMessage() {} });
    const waits: number[] = [];
    await new Promise<void>((resolve) => {
      herald.on('state', (change) => {
        if (change.state !== 'disconnected') return;
        waits.push(change.retryInMs!);
        if (waits.length === 5) resolve();
      });
    });
    assert.ok(waits.every((ms) => ms >= 0 && ms <= 80), `waits within the cap: ${waits}`);
    assert.ok(states.changes.every((s) => s.state !== 'connected'));
    herald.close();
    assert.equal(herald.state.state, 'closed');
    assert.throws(() => herald.subscribe('late', { onMessage() {} }), (e: unknown) => e instanceof HeraldError && e.code === 'closed');
  });

  it('refuses bad input at once with a coded error', () => {
    const herald = new Herald(server.url, { transports: ['longpoll'] });
    try {
      assert.throws(() => herald.subscribe('bad name!', { onMessage() {} }), (e: unknown) => e instanceof HeraldError && e.code === 'channel_invalid');
      assert.throws(() => herald.subscribe('ok', { onMessage() {}, since: 'not a cursor' }), (e: unknown) => e instanceof HeraldError && e.code === 'cursor_invalid');
      assert.throws(() => new Herald('ftp://example.com'), (e: unknown) => e instanceof HeraldError && e.code === 'url_invalid');
      // Node 20 has neither WebSocket nor EventSource built in.
      assert.throws(() => new Herald(server.url, { transports: ['websocket', 'sse'] }), (e: unknown) => e instanceof HeraldError && e.code === 'transport_unavailable');
    } finally {
      herald.close();
    }
  });

  it('reports a refused request as a fatal error and closes', async () => {
    const herald = client(server.url, 'stream');
    const errors: HeraldError[] = [];
    herald.on('error', (error) => errors.push(error));
    const states = stateLog(herald);
    // A well-formed but forged cursor: the server refuses it (400 cursor_invalid).
    herald.subscribe('forged', { onMessage() {}, since: 'Zm9yZ2Vk' });
    const closed = await states.reach('closed');
    assert.equal(closed.error?.code, 'cursor_invalid');
    assert.equal(errors[0]?.code, 'cursor_invalid');
  });
});
