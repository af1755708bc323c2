// The SDK with client tokens against the real server (tokens signed as a backend would, with jose):
// subscribing with `token`, `getToken()` called again when the token expires while connected (nothing
// lost, on every transport), `sub.publish()` over WebSocket and HTTP, `sub.presence()` and onJoin/onLeave.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import type { Herald, HeraldError, PresenceEvent } from '../../src/client/index.js';
import { startTestServer } from '../helpers/server.js';
import { SECRET, signHs256, type Grant } from '../helpers/tokens.js';
import { Inbox, TRANSPORTS, client, publishOk, stateLog } from './helpers.js';

const GRACE_MS = 1000;
const nowS = (): number => Math.floor(Date.now() / 1000);

describe('client tokens', { concurrency: true }, () => {
  let server: RunningHerald;
  const clients: Herald[] = [];
  const open = (transport: (typeof TRANSPORTS)[number], options: Parameters<typeof client>[2]): Herald => {
    const herald = client(server.url, transport, { heartbeatMs: 1000, pollTimeoutS: 1, ...options });
    clients.push(herald);
    return herald;
  };
  before(async () => {
    // A token secret and no --anonymous-channels: nothing may be subscribed without a token.
    server = await startTestServer({ tokenSecret: SECRET, tokenGraceMs: GRACE_MS });
  });
  after(async () => {
    for (const herald of clients) herald.close();
    await server.close();
  });

  for (const transport of TRANSPORTS) {
    it(`${transport}: subscribes with a token to a channel closed to anonymous clients`, async () => {
      const channel = `user:${transport}`;
      const herald = open(transport, { token: await signHs256({ sub: 'u1', channels: [channel] }) });
      const inbox = new Inbox();
      await herald.subscribe(channel, inbox.handlers).ready;
      await stateLog(herald).reach('connected');
      for (let n = 1; n <= 3; n++) await publishOk(server.url, { channel, data: n });
      await inbox.count(3);
      assert.deepEqual(inbox.offsets, [1, 2, 3]);
    });

    it(`${transport}: getToken() is called again when the token expires, and nothing is lost`, async () => {
      const channel = `expiring:${transport}`;
      let calls = 0;
      let firstExpMs = 0;
      let secondCallMs = 0;
      // The first token expires in a second or two; the ones after it last.
      const getToken = (): Promise<string> => {
        if (++calls === 1) firstExpMs = (nowS() + 2) * 1000;
        if (calls === 2) secondCallMs = Date.now();
        return signHs256({ sub: 'u2', channels: [channel], exp: calls === 1 ? firstExpMs / 1000 : nowS() + 600 });
      };
      const herald = open(transport, { getToken });
      const inbox = new Inbox();
      await herald.subscribe(channel, inbox.handlers).ready;
      let n = 0;
      const deadline = Date.now() + 15_000;
      while (calls < 2) {
        if (Date.now() > deadline) throw new Error(`${transport}: getToken() was called ${calls} time(s) in 15 s`);
        await publishOk(server.url, { channel, data: ++n });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      // Well past the old token's grace period, still delivering.
      await new Promise((resolve) => setTimeout(resolve, GRACE_MS + 1200));
      for (let i = 0; i < 5; i++) await publishOk(server.url, { channel, data: ++n });
      await inbox.count(n, 15_000);
      assert.deepEqual(inbox.offsets, Array.from({ length: n }, (_, i) => i + 1));
      assert.equal(herald.state.state, 'connected');
      assert.ok(secondCallMs >= firstExpMs - 50, `the token was refreshed at its expiry, not before (${secondCallMs - firstExpMs} ms)`);
    });
  }

  for (const transport of ['websocket', 'longpoll'] as const) {
    it(`${transport}: sub.publish() where the token allows it, refused elsewhere`, async () => {
      const grant: Grant = { sub: 'u3', channels: [`room:*`, `ro:*`], publish: [`room:*`] };
      const herald = open(transport, { token: await signHs256(grant) });
      const inbox = new Inbox();
      const sub = herald.subscribe(`room:${transport}`, inbox.handlers);
      await sub.ready;
      await stateLog(herald).reach('connected');
      const first = await sub.publish({ hi: 1 });
      assert.equal(first.offset, 1);
      assert.equal(first.channel, `room:${transport}`);
      const again = await sub.publish({ hi: 2 }, { idempotencyKey: 'k2' });
      const duplicate = await sub.publish({ hi: 2 }, { idempotencyKey: 'k2' });
      assert.deepEqual([again.offset, duplicate.offset, duplicate.duplicate], [2, 2, true]);
      await inbox.count(2);
      assert.deepEqual(inbox.messages.map((m) => m.data), [{ hi: 1 }, { hi: 2 }]);

      const readOnly = herald.subscribe(`ro:${transport}`, { onMessage() {} });
      await readOnly.ready;
      await assert.rejects(readOnly.publish('nope'), (error: HeraldError) => error.code === 'forbidden_publish');
    });
  }

  for (const transport of TRANSPORTS) {
    it(`${transport}: onJoin/onLeave and sub.presence()`, async () => {
      const channel = `lobby:${transport}`;
      const grant = (sub: string): Promise<string> =>
        signHs256({ sub, channels: ['lobby:*'], presence: ['lobby:*'], info: { name: sub.toUpperCase() } });
      const joins: PresenceEvent[] = [];
      const leaves: PresenceEvent[] = [];
      const watcher = open(transport, { token: await grant('ada') });
      const sub = watcher.subscribe(channel, { onMessage() {}, onJoin: (e) => joins.push(e), onLeave: (e) => leaves.push(e) });
      await sub.ready;
      await stateLog(watcher).reach('connected');
      const guest = open('websocket', { token: await grant('bob') });
      guest.subscribe(channel, { onMessage() {} });
      await stateLog(guest).reach('connected');

      const members = async (): Promise<string[]> => (await sub.presence()).map((m) => m.user).sort();
      await waitFor(async () => (await members()).join() === 'ada,bob', `${transport}: ada and bob present`);
      const list = await sub.presence();
      assert.deepEqual(list.find((m) => m.user === 'bob'), { user: 'bob', info: { name: 'BOB' }, connections: 1 });
      await waitFor(async () => joins.some((e) => e.user === 'bob'), `${transport}: a join for bob`);
      assert.deepEqual(joins.find((e) => e.user === 'bob'), { channel, user: 'bob', info: { name: 'BOB' } });
      guest.close();
      await waitFor(async () => leaves.some((e) => e.user === 'bob'), `${transport}: a leave for bob`);
      assert.deepEqual(await members(), ['ada']);
    });
  }
});

/** Polls `check` every 20 ms until it holds, failing with `what` after 10 s. */
async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
