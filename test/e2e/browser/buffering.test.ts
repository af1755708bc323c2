// The SDK in real headless Chromium behind a proxy that buffers streams (headers pass at once, bodies
// are held until they end or 64 KiB) and refuses WebSocket upgrades: with its default transports the
// page must fall back to long polling, say why, and lose nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { buildClient } from '../../../scripts/build-client.mjs';
import type { RunningHerald } from '../../../src/herald.js';
import { startTestServer } from '../../helpers/server.js';
import { httpProxy, publishOk } from '../../client/helpers.js';
import { launchBrowser, openTestPage, readInbox, startHeraldInPage, waitForCount, waitInPage } from './browser.js';

const CHANNEL = 'buffered.page';

describe('SDK in Chromium behind a buffering proxy', () => {
  let server: RunningHerald | undefined;
  let proxy: Awaited<ReturnType<typeof httpProxy>> | undefined;
  let browser: Browser | undefined;
  let page: Page;

  before(async () => {
    await buildClient();
    server = await startTestServer();
    [proxy, browser] = await Promise.all([httpProxy(server.port, { isBuffering: true }), launchBrowser()]);
    // The page's origin is the proxy's: everything it loads and asks goes through it.
    page = await openTestPage(browser, proxy.url);
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await proxy?.close();
    await server?.close();
  });

  it('falls back to long polling and delivers every message in order', { timeout: 60_000 }, async () => {
    // Default transports: WebSocket, SSE, fetch streaming, long polling.
    await startHeraldInPage(page, { streamOpenTimeoutMs: 1500, backoff: { initialMs: 50, maxMs: 500 }, pollTimeoutS: 5 }, [CHANNEL]);
    // Published while the page is still finding its way through the proxy.
    for (let n = 1; n <= 5; n++) await publishOk(server!.url, { channel: CHANNEL, data: { n } });
    await waitInPage(page, () => (globalThis as any).herald.state.state === 'connected', 20_000, 'connected');
    for (let n = 6; n <= 10; n++) await publishOk(server!.url, { channel: CHANNEL, data: { n } });
    await waitForCount(page, [CHANNEL], 10, 15_000, 'through the buffering proxy');

    const inbox = await readInbox(page);
    const expected = Array.from({ length: 10 }, (_, i) => i + 1);
    assert.deepEqual(inbox.messages[CHANNEL]!.map((m) => m.offset), expected);
    assert.deepEqual(inbox.messages[CHANNEL]!.map((m) => (m.data as { n: number }).n), expected);
    assert.deepEqual(inbox.resets[CHANNEL], []);
    assert.deepEqual(inbox.errors, []);
    const connected = inbox.states.filter((s) => s.state === 'connected');
    assert.deepEqual(connected.map((s) => s.transport), ['longpoll'], JSON.stringify(inbox.states));
    assert.ok(!inbox.states.some((s) => s.transport === 'stream'), 'fetch streaming is skipped after SSE went silent');
    assert.ok(
      inbox.states.some((s) => s.transport === 'sse' && /buffers streams; falling back to long polling/.test(s.reason ?? '')),
      `a state tells of the buffering: ${JSON.stringify(inbox.states)}`,
    );
  });
});
