// GET /demo in real Chromium: the ten price widgets fill and tick, a chat message typed in the page comes
// back through the server, and the whole page holds one connection to the server.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { buildClient } from '../../../scripts/build-client.mjs';
import { startServerProcess, tempDataDir, type ServerProcess } from '../../helpers/server.js';
import { launchBrowser } from './browser.js';

describe('/demo in Chromium', () => {
  const data = tempDataDir();
  let server: ServerProcess | undefined;
  let browser: Browser | undefined;

  before(async () => {
    await buildClient();
    [server, browser] = await Promise.all([startServerProcess(['--store', 'sqlite', '--data-dir', data.dir]), launchBrowser()]);
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await server?.kill('SIGKILL');
    data.remove();
  });

  it('shows ten ticking prices and the chat, over one connection', async () => {
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const response = await page.goto(`${server!.url}/demo`);
    assert.equal(response?.status(), 200);
    assert.match(response!.headers()['content-type'] ?? '', /^text\/html/);

    const widgets = page.locator('.widget');
    assert.equal(await widgets.count(), 10);
    await page
      .waitForFunction(() => document.querySelectorAll('.widget[data-price]').length === 10, undefined, { timeout: 10_000 })
      .catch(async () => {
        throw new Error(`not every widget got a price: ${await page.locator('#board').innerText()} / ${await page.locator('#status').innerText()} / ${await page.locator('#note').innerText()} / ${errors.join('; ')}`);
      });
    // Prices keep coming: some widget changes.
    const before = await page.evaluate(() => [...document.querySelectorAll<HTMLElement>('.widget')].map((w) => w.dataset.price).join());
    await page.waitForFunction(
      (before) => [...document.querySelectorAll<HTMLElement>('.widget')].map((w) => w.dataset.price).join() !== before,
      before,
      { timeout: 10_000 },
    );

    await page.fill('#name', 'Ada');
    await page.fill('#text', 'hello from the test');
    await page.click('#say button');
    await page.locator('#log li', { hasText: 'hello from the test' }).waitFor({ timeout: 10_000 });
    assert.match(await page.locator('#log li').last().innerText(), /Ada\s*hello from the test/);

    // Eleven subscriptions, one connection (the page's other requests are short: history, publish).
    const stats = (await (await fetch(`${server!.url}/v1/stats`)).json()) as { connections: Record<string, number>; subscriptions: number };
    const open = Object.values(stats.connections).reduce((a, b) => a + b, 0);
    assert.equal(stats.connections.websocket, 1, JSON.stringify(stats));
    assert.equal(open, 1, JSON.stringify(stats));
    assert.equal(stats.subscriptions, 11, JSON.stringify(stats));
    assert.deepEqual(errors, []);
  });
});
