// GET /demo in real Chromium, two visitors with their own names (each page in its own browser context):
// the ten price widgets fill and tick; each visitor gets a demo token and sees the other under
// "Online now"; a chat line typed in one page shows in the other with its sender's name; each page holds
// one connection to the server; a page that closes leaves the other's list.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { buildClient } from '../../../scripts/build-client.mjs';
import { startServerProcess, tempDataDir, type ServerProcess } from '../../helpers/server.js';
import { launchBrowser } from './browser.js';

const WAIT_MS = 10_000;

describe('/demo in Chromium', { timeout: 90_000 }, () => {
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

  /** Opens /demo in a fresh context, joins as `name`, and waits until the chat is live. */
  async function join(name: string, errors: string[]): Promise<Page> {
    const page = await browser!.newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on('pageerror', (error) => errors.push(`${name}: ${error.message}`));
    const response = await page.goto(`${server!.url}/demo`);
    assert.equal(response?.status(), 200);
    assert.match(response!.headers()['content-type'] ?? '', /^text\/html/);
    assert.match(await page.inputValue('#name'), /^guest-\d{4}$/, 'a newcomer is offered a guest name');
    await page.fill('#name', name);
    await page.click('#join button');
    await page.locator('#say button:not([disabled])').waitFor().catch(async (error: Error) => {
      throw new Error(`${name} did not join: ${await page.locator('#status').innerText()} / ${await page.locator('#note').innerText()} / ${errors.join('; ')} (${error.message.split('\n')[0]})`);
    });
    return page;
  }

  const onlineNames = (page: Page): Promise<string[]> => page.locator('#online li').allInnerTexts();

  async function waitForOnline(page: Page, expected: string[], what: string): Promise<void> {
    await page
      .waitForFunction(
        (expected) => [...document.querySelectorAll('#online li')].map((li) => li.textContent).join('|') === expected.join('|'),
        expected,
        { timeout: WAIT_MS, polling: 50 },
      )
      .catch(async () => {
        throw new Error(`timed out waiting for ${what}: online is ${JSON.stringify(await onlineNames(page))}, want ${JSON.stringify(expected)}`);
      });
  }

  it('shows ten ticking prices, the chat and who is online, over one connection per page', async () => {
    const errors: string[] = [];
    const ada = await join('Ada', errors);

    const widgets = ada.locator('.widget');
    assert.equal(await widgets.count(), 10);
    await ada
      .waitForFunction(() => document.querySelectorAll('.widget[data-price]').length === 10, undefined, { timeout: WAIT_MS })
      .catch(async () => {
        throw new Error(`not every widget got a price: ${await ada.locator('#board').innerText()} / ${await ada.locator('#status').innerText()} / ${await ada.locator('#note').innerText()} / ${errors.join('; ')}`);
      });
    // Prices keep coming: some widget changes.
    const before = await ada.evaluate(() => [...document.querySelectorAll<HTMLElement>('.widget')].map((w) => w.dataset.price).join());
    await ada.waitForFunction(
      (before) => [...document.querySelectorAll<HTMLElement>('.widget')].map((w) => w.dataset.price).join() !== before,
      before,
      { timeout: WAIT_MS },
    );

    // Each sees the other under "Online now" (and itself, marked).
    const grace = await join('Grace', errors);
    await waitForOnline(ada, ['Ada (you)', 'Grace'], 'Grace to show on Ada’s page');
    await waitForOnline(grace, ['Ada', 'Grace (you)'], 'Ada to show on Grace’s page');
    assert.equal(await ada.locator('#count').innerText(), '2');

    // A line typed by Ada shows on Grace's page, with Ada's name; the text is shown as text.
    const line = 'hello from the test <b>not bold</b>';
    await ada.fill('#text', line);
    await ada.click('#say button');
    const received = grace.locator('#log li', { hasText: 'hello from the test' });
    await received.waitFor();
    assert.match(await received.innerText(), /^Ada\s*hello from the test <b>not bold<\/b>$/);
    assert.equal(await grace.locator('#log li b').count(), 1, 'user text never becomes markup');
    await ada.locator('#log li', { hasText: 'hello from the test' }).waitFor();

    // Eleven subscriptions and one WebSocket per page (the other requests are short: token, history, publish).
    const stats = (await (await fetch(`${server!.url}/v1/stats`)).json()) as { connections: Record<string, number>; subscriptions: number };
    const open = Object.values(stats.connections).reduce((a, b) => a + b, 0);
    assert.equal(stats.connections.websocket, 2, JSON.stringify(stats));
    assert.equal(open, 2, JSON.stringify(stats));
    assert.equal(stats.subscriptions, 22, JSON.stringify(stats));

    // Grace closes her page: she leaves Ada's list.
    await grace.close();
    await waitForOnline(ada, ['Ada (you)'], 'Grace to leave Ada’s list');
    assert.equal(await ada.locator('#count').innerText(), '1');
    await ada.close();
    assert.deepEqual(errors, []);
  });
});
