// Real headless Chromium (Debian's /usr/bin/chromium, installed by scripts/ensure-packages.sh) driven by
// playwright-core, and a tiny same-origin test page that loads the SDK the way a site does:
// <script src="/herald.iife.js"> from the Herald server under test.
import { chromium, type Browser, type Page } from 'playwright-core';
import type { StateChange, TransportName } from '../../../src/client/index.js';

export const CHROMIUM = process.env.HERALD_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Launches Chromium with a fresh profile (Playwright's launch() always makes a new temporary
 * --user-data-dir and removes it on close). QUIC and background traffic are off so the only requests
 * are the page's own.
 */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

/**
 * Opens a page on `serverUrl`'s origin with the SDK's classic script loaded from the server, and
 * `window.inbox` recording, per channel, every message (`offset`/`data`), reset and state change.
 *
 * The document is a real answer of the server (`/healthz`), not one fulfilled by Playwright: Chromium's
 * Local Network Access checks treat a document with no address of its own as public and block its
 * requests to 127.0.0.1 (net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS).
 */
export async function openTestPage(browser: Browser, serverUrl: string): Promise<Page> {
  const page = await browser.newPage();
  page.setDefaultTimeout(15_000);
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  // tsx compiles this file with esbuild's keepNames, which wraps named functions in `__name(…)`; the
  // functions passed to page.evaluate run in the page, which has no such helper.
  await page.addInitScript('globalThis.__name = (fn) => fn;');
  await page.goto(`${serverUrl}/healthz`);
  await page.addScriptTag({ url: '/herald.iife.js' });
  await page.evaluate(() => {
    (globalThis as any).inbox = { messages: {}, resets: {}, states: [], errors: [] };
  });
  const hasHerald = await page.evaluate(() => typeof (globalThis as any).Herald === 'function');
  if (!hasHerald) throw new Error(`/herald.iife.js did not define Herald on the page (page errors: ${errors.join('; ') || 'none'})`);
  return page;
}

/** Starts `window.herald` on one transport with quick reconnects and subscribes to `channels`. */
export async function subscribeInPage(page: Page, transport: TransportName, channels: string[]): Promise<void> {
  await startHeraldInPage(page, { transports: [transport], backoff: { initialMs: 50, maxMs: 500 }, heartbeatMs: 1000, pollTimeoutS: 5 }, channels);
  await waitInPage(page, () => (globalThis as any).herald.state.state === 'connected', 10_000, `${transport} connected`);
}

/**
 * Starts `window.herald` with `options` (serializable: they are passed into the page), recording into
 * `window.inbox`, and subscribes to `channels`. Does not wait for the connection, so a test can act
 * while the client is still finding its way.
 */
export async function startHeraldInPage(page: Page, options: Record<string, unknown>, channels: string[]): Promise<void> {
  await page.evaluate(
    async ({ options, channels }) => {
      const w = globalThis as any;
      const inbox = w.inbox;
      const herald = new w.Herald(location.origin, options);
      w.herald = herald;
      herald.on('state', (s: StateChange) => inbox.states.push({ state: s.state, transport: s.transport, reason: s.reason }));
      herald.on('error', (e: Error) => inbox.errors.push(e.message));
      for (const channel of channels) {
        inbox.messages[channel] = [];
        inbox.resets[channel] = [];
        await herald.subscribe(channel, {
          onMessage: (m: { offset: number; data: unknown }) => inbox.messages[channel].push({ offset: m.offset, data: m.data }),
          onReset: (r: unknown) => inbox.resets[channel].push(r),
        }).ready;
      }
    },
    { options, channels },
  );
}

export interface PageInbox {
  messages: Record<string, { offset: number; data: unknown }[]>;
  resets: Record<string, unknown[]>;
  states: { state: string; transport?: string; reason?: string }[];
  errors: string[];
}

export function readInbox(page: Page): Promise<PageInbox> {
  return page.evaluate(() => (globalThis as any).inbox as PageInbox);
}

/** Waits for `predicate` in the page; on timeout, fails with `what` and what the page received. */
export async function waitInPage(page: Page, predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  try {
    await page.waitForFunction(predicate, undefined, { timeout: timeoutMs, polling: 50 });
  } catch (error) {
    const inbox = await readInbox(page).catch(() => undefined);
    const summary = inbox && {
      counts: Object.fromEntries(Object.entries(inbox.messages).map(([c, m]) => [c, m.length])),
      lastStates: inbox.states.slice(-5),
      errors: inbox.errors,
    };
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; page: ${JSON.stringify(summary)} (${(error as Error).message.split('\n')[0]})`);
  }
}

/** Waits until every channel has received at least `n` messages. */
export function waitForCount(page: Page, channels: string[], n: number, timeoutMs: number, what: string): Promise<void> {
  return page
    .waitForFunction(
      ({ channels, n }) => channels.every((c) => ((globalThis as any).inbox.messages[c]?.length ?? 0) >= n),
      { channels, n },
      { timeout: timeoutMs, polling: 50 },
    )
    .then(
      () => undefined,
      async () => {
        const inbox = await readInbox(page).catch(() => undefined);
        const counts = inbox && Object.fromEntries(Object.entries(inbox.messages).map(([c, m]) => [c, m.map((x) => x.offset)]));
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${n} messages on ${channels.join(', ')} (${what}); got ${JSON.stringify(counts)}, states ${JSON.stringify(inbox?.states.slice(-6))}`);
      },
    );
}
