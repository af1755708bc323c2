// One connection per browser (client SDK `share`, src/client/tabs/), in real headless Chromium: tabs of
// one browser context on one origin share the leader tab's connection (the server counts one), each tab
// gets exactly its own channels, in order, once; the leader tab closed while messages keep coming, a
// follower takes over (still one connection) and every tab still ends with every message, in order, no
// gap, no duplicate. With `share: false` each tab holds its own connection.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { StateChange } from '../../../src/client/index.js';
import type { RunningHerald } from '../../../src/herald.js';
import { buildClient } from '../../../scripts/build-client.mjs';
import { startTestServer } from '../../helpers/server.js';
import { launchBrowser, readInbox, waitForCount, waitInPage } from './browser.js';

interface Stats {
  connections: Record<string, number>;
  subscriptions: number;
}

describe('SDK in Chromium: tabs share one connection', () => {
  let server: RunningHerald;
  let browser: Browser | undefined;

  before(async () => {
    await buildClient();
    [server, browser] = await Promise.all([startTestServer(), launchBrowser()]);
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await server?.close();
  });

  const stats = async (): Promise<Stats> => (await (await fetch(`${server.url}/v1/stats`)).json()) as Stats;
  const open = (s: Stats): number => Object.values(s.connections).reduce((a, b) => a + b, 0);
  /** Polls the server's stats until `predicate` holds (a closed socket takes the server a moment to see). */
  const statsUntil = async (predicate: (s: Stats) => boolean, what: string): Promise<Stats> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const s = await stats();
      if (predicate(s)) return s;
      if (Date.now() > deadline) throw new Error(`stats never showed ${what}: ${JSON.stringify(s)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  /** Publishes message `n` on each channel, each acknowledged before the next. */
  const publishAll = async (channels: string[], n: number): Promise<void> => {
    for (const channel of channels) {
      const response = await fetch(`${server.url}/v1/publish`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ channel, data: { n }, idempotencyKey: `${channel}-${n}` }),
      });
      assert.equal(response.status, 200, await response.text());
    }
  };

  /** A tab on the server's origin with the SDK's classic script and `window.inbox`, as browser.ts's openTestPage. */
  const openTab = async (context: BrowserContext): Promise<Page> => {
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    await page.goto(`${server.url}/healthz`);
    await page.addScriptTag({ url: '/herald.iife.js' });
    await page.evaluate(() => {
      (globalThis as any).inbox = { messages: {}, resets: {}, states: [], errors: [] };
    });
    return page;
  };

  /** Starts `window.herald` (default transports) and subscribes `channels`, waiting for each to be ready. */
  const start = async (page: Page, channels: string[], share?: boolean, since?: string, transport?: string): Promise<void> => {
    await page.evaluate(
      async ({ channels, share, since, transport }) => {
        const w = globalThis as any;
        const inbox = w.inbox;
        const herald = new w.Herald(location.origin, {
          backoff: { initialMs: 50, maxMs: 500 },
          heartbeatMs: 1000,
          pollTimeoutS: 5,
          ...(share === undefined ? {} : { share }),
          ...(transport === undefined ? {} : { transports: [transport] }),
        });
        w.herald = herald;
        w.subs = {};
        herald.on('state', (s: StateChange) => inbox.states.push({ state: s.state, transport: s.transport, reason: s.reason }));
        herald.on('error', (e: Error) => inbox.errors.push(e.message));
        for (const channel of channels) {
          inbox.messages[channel] = [];
          inbox.resets[channel] = [];
          w.subs[channel] = herald.subscribe(channel, {
            onMessage: (m: { offset: number; data: unknown }) => inbox.messages[channel].push({ offset: m.offset, data: m.data }),
            onReset: (r: unknown) => inbox.resets[channel].push(r),
            ...(since === undefined ? {} : { since }),
          });
          await w.subs[channel].ready;
        }
      },
      { channels, share, since, transport },
    );
    await waitInPage(page, () => (globalThis as any).herald.state.state === 'connected', 10_000, 'connected');
  };

  const transportOf = (page: Page): Promise<string | undefined> => page.evaluate(() => (globalThis as any).herald.state.transport);

  /** Every tab got messages 1..n on each of its channels, exactly once and in order, and no reset. */
  const expectAll = async (tabs: Map<Page, string[]>, n: number, what: string): Promise<void> => {
    const expected = Array.from({ length: n }, (_, i) => i + 1);
    for (const [page, channels] of tabs) {
      await waitForCount(page, channels, n, 20_000, what);
      const inbox = await readInbox(page);
      assert.deepEqual(Object.keys(inbox.messages).sort(), [...channels].sort(), `only its own channels (${what})`);
      for (const channel of channels) {
        const got = inbox.messages[channel]!;
        assert.deepEqual(got.map((m) => m.offset), expected, `${channel} offsets (${what})`);
        assert.deepEqual(got.map((m) => (m.data as { n: number }).n), expected, `${channel} data (${what})`);
        assert.deepEqual(inbox.resets[channel], [], `${channel} resets (${what})`);
      }
      assert.deepEqual(inbox.errors, [], what);
    }
  };

  // The new leader resumes every relayed channel from the cursors the tabs hold: channel by channel on
  // WebSocket, one joined cursor on the HTTP transports.
  for (const transport of ['websocket', 'sse', 'longpoll']) {
    it(`three tabs hold one connection, and the leader tab closed mid-stream loses nothing (${transport})`, async () => {
      const context = await browser!.newContext();
      await context.addInitScript('globalThis.__name = (fn) => fn;'); // see browser.ts openTestPage
      try {
        const tabs = new Map<Page, string[]>();
        for (const own of ['a', 'b', 'c'].map((t) => `${transport}.${t}`)) {
          const page = await openTab(context);
          await start(page, [`${transport}.shared`, own], undefined, undefined, transport);
          tabs.set(page, [`${transport}.shared`, own]);
        }
        const all = [`${transport}.shared`, ...['a', 'b', 'c'].map((t) => `${transport}.${t}`)];
        const pages = [...tabs.keys()];
        const transports = await Promise.all(pages.map(transportOf));
        const leaders = pages.filter((_, i) => transports[i] !== 'tab');
        assert.equal(leaders.length, 1, `one leader: ${JSON.stringify(transports)}`);
        assert.equal(transports.filter((t) => t === 'tab').length, 2, JSON.stringify(transports));
        // The first tab leads and shows its own transport only, as a lone tab always did.
        const { states: leaderStates } = await readInbox(leaders[0]!);
        assert.ok(leaderStates.every((s) => s.transport === transports[pages.indexOf(leaders[0]!)]), JSON.stringify(leaderStates));

        for (let n = 1; n <= 10; n++) await publishAll(all, n);
        await expectAll(tabs, 10, 'shared');
        const shared = await stats();
        assert.equal(open(shared), 1, `one connection for three tabs: ${JSON.stringify(shared)}`);
        assert.equal(shared.subscriptions, 4, JSON.stringify(shared));

        // The leader tab goes while messages keep coming; one follower takes over.
        const leader = leaders[0]!;
        let closed: Promise<void> | undefined;
        for (let n = 11; n <= 40; n++) {
          await publishAll(all, n);
          if (n === 15) closed = leader.close();
          await new Promise((resolve) => setTimeout(resolve, 15));
        }
        await closed;
        tabs.delete(leader);
        await expectAll(tabs, 40, 'after the leader tab closed');
        const rest = [...tabs.keys()];
        const after = await Promise.all(rest.map(transportOf));
        assert.equal(after.filter((t) => t !== 'tab').length, 1, `one new leader: ${JSON.stringify(after)}`);
        const { states: newLeaderStates } = await readInbox(rest[after.findIndex((t) => t !== 'tab')]!);
        assert.deepEqual(
          newLeaderStates.map((s) => `${s.state} ${s.transport}`),
          ['connecting tab', 'connected tab', `connecting ${transport}`, `connected ${transport}`],
          'the new leader went from following to its own connection at once',
        );
        const taken = await statsUntil((s) => open(s) === 1 && s.subscriptions === 3, 'one connection with three channels');
        assert.equal(open(taken), 1, JSON.stringify(taken));

        // A follower letting its own channel go: the leader stops carrying it.
        const follower = rest[after.indexOf('tab')]!;
        const own = tabs.get(follower)!.find((c) => c !== `${transport}.shared`)!;
        await follower.evaluate((channel) => (globalThis as any).subs[channel].unsubscribe(), own);
        await statsUntil((s) => open(s) === 1 && s.subscriptions === 2, `${own} let go`);
        const { states } = await readInbox(follower);
        assert.ok(states.every((s) => s.transport === 'tab'), `a follower shows the tab transport: ${JSON.stringify(states)}`);
      } finally {
        await context.close();
      }
    });
  }

  it('a tab asking for more than the leader carries catches up by itself', async () => {
    const context = await browser!.newContext();
    await context.addInitScript('globalThis.__name = (fn) => fn;');
    try {
      const leader = await openTab(context);
      await start(leader, ['late.ch']);
      for (let n = 1; n <= 5; n++) await publishAll(['late.ch'], n);
      await waitForCount(leader, ['late.ch'], 5, 10_000, 'leader');
      // The leader carries late.ch from its head; this follower wants it from the beginning.
      const follower = await openTab(context);
      await start(follower, ['late.ch'], undefined, 'beginning');
      assert.equal(await transportOf(follower), 'tab');
      for (let n = 6; n <= 10; n++) await publishAll(['late.ch'], n);
      await expectAll(new Map([[leader, ['late.ch']], [follower, ['late.ch']]]), 10, 'late follower');
      assert.equal(open(await stats()), 1);
    } finally {
      await context.close();
    }
  });

  it('share: false gives each tab its own connection', async () => {
    const context = await browser!.newContext();
    await context.addInitScript('globalThis.__name = (fn) => fn;');
    try {
      const tabs = new Map<Page, string[]>();
      for (const own of ['solo.a', 'solo.b']) {
        const page = await openTab(context);
        await start(page, ['solo.shared', own], false);
        tabs.set(page, ['solo.shared', own]);
        assert.equal(await transportOf(page), 'websocket');
      }
      for (let n = 1; n <= 5; n++) await publishAll(['solo.shared', 'solo.a', 'solo.b'], n);
      await expectAll(tabs, 5, 'unshared');
      const s = await stats();
      assert.equal(open(s), 2, `two tabs, two connections: ${JSON.stringify(s)}`);
      assert.equal(s.connections.websocket, 2, JSON.stringify(s));
    } finally {
      await context.close();
    }
  });
});
