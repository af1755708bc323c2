// A path that buffers streams: a proxy that passes headers at once but holds every body until it ends
// (or 64 KiB), and refuses WebSocket upgrades. SSE and NDJSON streams never get a byte through it. The
// SDK, with its default transports, must notice (no bytes within streamOpenTimeoutMs while /healthz
// answers), skip the other stream transports, settle on long polling, and lose nothing on the way.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { Herald } from '../../src/client/index.js';
import type { RunningHerald } from '../../src/herald.js';
import { startTestServer } from '../helpers/server.js';
import { Inbox, eventually, httpProxy, publishOk, stateLog } from './helpers.js';

describe('client behind a proxy that buffers streams', () => {
  let server: RunningHerald;
  let proxy: Awaited<ReturnType<typeof httpProxy>>;
  before(async () => {
    server = await startTestServer();
    proxy = await httpProxy(server.port, { isBuffering: true });
  });
  after(async () => {
    await proxy.close();
    await server.close();
  });

  it('falls back to long polling and delivers every message in order', { timeout: 30_000 }, async () => {
    const herald = new Herald(proxy.url, { WebSocket, EventSource, streamOpenTimeoutMs: 1500, backoff: { initialMs: 50, maxMs: 300 } });
    const states = stateLog(herald);
    try {
      const inbox = new Inbox();
      await herald.subscribe('buffered', inbox.handlers).ready;
      // Published while the SDK is still finding its way through.
      for (let n = 1; n <= 5; n++) await publishOk(server.url, { channel: 'buffered', data: n });
      const startedMs = Date.now();
      await states.reach('connected', 15_000);
      const connectedMs = Date.now() - startedMs;
      for (let n = 6; n <= 10; n++) await publishOk(server.url, { channel: 'buffered', data: n });
      await inbox.count(10);

      assert.equal(herald.state.transport, 'longpoll');
      assert.deepEqual(inbox.offsets, Array.from({ length: 10 }, (_, i) => i + 1));
      assert.deepEqual(inbox.messages.map((m) => m.data), inbox.offsets);
      const tried = [...new Set(states.changes.map((s) => s.transport))];
      assert.deepEqual(tried, ['websocket', 'sse', 'longpoll'], 'the stream transport after SSE is skipped');
      const reasons = states.changes.filter((s) => s.state === 'disconnected').map((s) => s.reason ?? '');
      assert.ok(
        reasons.some((r) => r.startsWith('sse') && /within 1500 ms/.test(r) && /buffers streams/.test(r) && /long polling/.test(r)),
        `a reason tells of the buffering: ${JSON.stringify(reasons)}`,
      );
      assert.equal(states.changes.filter((s) => s.state === 'connected').length, 1, 'connected once, on long polling');
      assert.ok(connectedMs < 10_000, `connected on long polling ${connectedMs} ms after subscribing`);
      // The SSE request got its headers, never a byte of its body.
      assert.ok(proxy.requests.some((r) => r.path === '/v1/sse' && r.isAborted));
      assert.ok(!proxy.requests.some((r) => r.path === '/v1/stream'));
    } finally {
      herald.close();
    }
  });

  it('a stream that opened before is retried, not given up, when it goes silent', { timeout: 30_000 }, async () => {
    // Buffering can't be why a stream that once got through now gets nothing: it is retried as any drop.
    const options = { isBuffering: false };
    const flaky = await httpProxy(server.port, options);
    const herald = new Herald(flaky.url, { EventSource, transports: ['sse', 'longpoll'], streamOpenTimeoutMs: 500, backoff: { initialMs: 50, maxMs: 300 } });
    const states = stateLog(herald);
    try {
      const inbox = new Inbox();
      await herald.subscribe('flaky', inbox.handlers).ready;
      assert.equal((await states.reach('connected')).transport, 'sse');
      await publishOk(server.url, { channel: 'flaky', data: 1 });
      await inbox.count(1);
      options.isBuffering = true;
      flaky.drop();
      await publishOk(server.url, { channel: 'flaky', data: 2 });
      const silent = (s: { reason?: string }): boolean => /did not open within 500 ms/.test(s.reason ?? '');
      await eventually(() => assert.ok(states.changes.some(silent), 'the silent stream was given up'), 10_000);
      options.isBuffering = false;
      await publishOk(server.url, { channel: 'flaky', data: 3 });
      await inbox.count(3);
      assert.deepEqual(inbox.offsets, [1, 2, 3]);
      assert.ok(states.changes.every((s) => s.transport === undefined || s.transport === 'sse'), 'never fell back');
      assert.ok(!states.changes.some((s) => /buffers streams/.test(s.reason ?? '')));
    } finally {
      herald.close();
      await flaky.close();
    }
  });

  it('without the proxy, the same client stays on its first stream transport', async () => {
    const herald = new Herald(server.url, { EventSource, transports: ['sse', 'stream', 'longpoll'], streamOpenTimeoutMs: 1500 });
    const states = stateLog(herald);
    try {
      const inbox = new Inbox();
      await herald.subscribe('direct', inbox.handlers).ready;
      const connected = await states.reach('connected');
      assert.equal(connected.transport, 'sse');
      await publishOk(server.url, { channel: 'direct', data: 1 });
      await inbox.count(1);
    } finally {
      herald.close();
    }
  });
});
