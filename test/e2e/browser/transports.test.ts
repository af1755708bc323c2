// The SDK in real headless Chromium, each transport forced in turn (the four automatic ones and the
// opt-in legacy `jsonp` and `iframe`), against the real server as a child process (SQLite store, fixed
// port so it can come back where the pages expect it): delivery and order; the server SIGKILLed and
// restarted mid-stream; the browser taken offline and back (DevTools network emulation). Every page must
// end with every message exactly once, in order, and no reset. Each page is its own browser context, so
// its held requests do not share Chromium's six connections per host with the others.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { TransportName } from '../../../src/client/index.js';
import { buildClient } from '../../../scripts/build-client.mjs';
import { startServerProcess, tempDataDir, type ServerProcess } from '../../helpers/server.js';
import { freePort, TRANSPORTS } from '../../client/helpers.js';
import { launchBrowser, openTestPage, readInbox, subscribeInPage, waitForCount, waitInPage } from './browser.js';

const CHANNELS = ['b.one', 'b.two'];
const BROWSER_TRANSPORTS: TransportName[] = [...TRANSPORTS, 'jsonp', 'iframe'];

describe('SDK in Chromium', () => {
  const data = tempDataDir();
  let args: string[];
  let server: ServerProcess | undefined;
  let browser: Browser | undefined;
  const pages = new Map<TransportName, Page>();
  let published = 0; // per channel, all acknowledged

  before(async () => {
    await buildClient();
    const port = await freePort();
    args = ['--store', 'sqlite', '--data-dir', data.dir, '--port', String(port), '--heartbeat', '1s'];
    [server, browser] = await Promise.all([startServerProcess(args), launchBrowser()]);
    for (const transport of BROWSER_TRANSPORTS) {
      const page = await openTestPage(browser, server.url);
      await subscribeInPage(page, transport, CHANNELS);
      pages.set(transport, page);
    }
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await server?.kill('SIGKILL');
    data.remove();
  });

  /** Publishes message n on every channel, retrying until acknowledged (the key makes a retry harmless). */
  const publishAll = async (n: number): Promise<void> => {
    for (const channel of CHANNELS) {
      const deadline = Date.now() + 20_000;
      for (;;) {
        try {
          const response = await fetch(`${server!.url}/v1/publish`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ channel, data: { n }, idempotencyKey: `${channel}-${n}` }),
          });
          if (response.status === 200) break;
        } catch {
          // the server is down: retry
        }
        if (Date.now() > deadline) throw new Error(`publish ${channel} #${n} not acknowledged within 20 s`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    published = n;
  };

  const expectAll = async (what: string): Promise<void> => {
    const expected = Array.from({ length: published }, (_, i) => i + 1);
    await Promise.all(
      [...pages].map(async ([transport, page]) => {
        await waitForCount(page, CHANNELS, published, 20_000, `${transport}, ${what}`);
        const inbox = await readInbox(page);
        for (const channel of CHANNELS) {
          const got = inbox.messages[channel]!;
          assert.deepEqual(got.map((m) => m.offset), expected, `${transport} ${channel} offsets (${what})`);
          assert.deepEqual(got.map((m) => (m.data as { n: number }).n), expected, `${transport} ${channel} data (${what})`);
          assert.deepEqual(inbox.resets[channel], [], `${transport} ${channel} resets (${what})`);
        }
        assert.ok(inbox.states.every((s) => s.transport === undefined || s.transport === transport), `${transport} stayed on its transport`);
      }),
    );
  };

  it('delivers every message in order on each transport', async () => {
    for (let n = 1; n <= 20; n++) await publishAll(n);
    await expectAll('plain delivery');
  });

  it('loses nothing when the server is SIGKILLed and restarted mid-stream', async () => {
    const start = published + 1;
    let restarted: Promise<void> | undefined;
    for (let n = start; n < start + 20; n++) {
      if (n === start + 8) {
        await server!.kill('SIGKILL');
        restarted = startServerProcess(args).then((s) => {
          server = s;
        });
      }
      await publishAll(n);
    }
    await restarted;
    await expectAll('after SIGKILL and restart');
    for (const [transport, page] of pages) {
      const { states } = await readInbox(page);
      assert.ok(states.filter((s) => s.state === 'connected').length >= 2, `${transport} reconnected: ${JSON.stringify(states)}`);
    }
  });

  it('loses nothing across offline → online (DevTools network emulation)', async () => {
    for (const page of pages.values()) {
      await page.evaluate(() => ((globalThis as any).inbox.mark = (globalThis as any).inbox.states.length));
      await page.context().setOffline(true);
    }
    const start = published + 1;
    for (let n = start; n < start + 10; n++) await publishAll(n);
    // Chromium keeps SSE and fetch streams open under the emulation: the SDK drops them on `offline`.
    for (const [transport, page] of pages) {
      await waitInPage(
        page,
        () => navigator.onLine === false && (globalThis as any).inbox.states.slice((globalThis as any).inbox.mark).some((s: any) => s.state === 'disconnected'),
        5000,
        `${transport} to notice it is offline`,
      );
    }
    for (const page of pages.values()) await page.context().setOffline(false);
    for (let n = start + 10; n < start + 15; n++) await publishAll(n);
    await expectAll('after offline → online');
  });

  it('surfaces a refused jsonp or iframe request as an error and a closed state, never a hang', async () => {
    for (const transport of ['jsonp', 'iframe'] as const) {
      const page = await openTestPage(browser!, server!.url);
      try {
        // The server refuses a cursor it never issued: 400 cursor_invalid, answered as JSON, which a
        // <script> only shows as `error` and an <iframe> as a loaded page, both without the status.
        await page.evaluate((transport) => {
          const w = globalThis as any;
          const herald = new w.Herald(location.origin, { transports: [transport], backoff: { initialMs: 50, maxMs: 500 } });
          w.herald = herald;
          herald.on('state', (s: { state: string; reason?: string }) => w.inbox.states.push({ state: s.state, reason: s.reason }));
          herald.on('error', (e: { code: string }) => w.inbox.errors.push(e.code));
          herald.subscribe('b.refused', { onMessage: () => {}, since: 'notACursorThisServerIssued' });
        }, transport);
        await waitInPage(page, () => (globalThis as any).herald.state.state === 'closed', 10_000, `${transport} to close on the refusal`);
        const inbox = await readInbox(page);
        assert.deepEqual(inbox.errors, ['cursor_invalid'], `${transport} errors`);
        assert.ok(!inbox.states.some((s) => s.state === 'connected'), `${transport} never claimed connected: ${JSON.stringify(inbox.states)}`);
        // Nothing of the transport is left in the page: no script or frame, no global callback.
        const leftovers = await page.evaluate(() => ({
          elements: document.querySelectorAll('script[src*="/v1/"], iframe').length,
          globals: Object.keys(globalThis).filter((k) => k.startsWith('_herald')),
        }));
        assert.deepEqual(leftovers, { elements: 0, globals: [] }, `${transport} cleaned up`);
      } finally {
        await page.context().close();
      }
    }
  });
});
