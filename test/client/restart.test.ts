// The server SIGKILLed mid-stream and restarted on the same port and data directory: every client,
// whatever its transport, resumes from its cursor and ends with every message exactly once, in order.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Herald } from '../../src/client/index.js';
import { startServerProcess, tempDataDir, type ServerProcess } from '../helpers/server.js';
import { Inbox, TRANSPORTS, client, freePort, stateLog } from './helpers.js';

const CHANNELS = ['live.a', 'live.b'];
const TOTAL = 40; // per channel
const KILL_AT = 15;

describe('client across a server crash', () => {
  const data = tempDataDir();
  let server: ServerProcess | undefined;
  const clients: Herald[] = [];
  after(async () => {
    for (const herald of clients) herald.close();
    await server?.kill('SIGKILL');
    data.remove();
  });

  it('loses nothing and duplicates nothing on any transport', async () => {
    const port = await freePort();
    const args = ['--port', String(port), '--data-dir', data.dir, '--heartbeat', '1s'];
    server = await startServerProcess(args);
    const url = server.url;

    const inboxes = new Map<string, Inbox>();
    const logs = new Map<string, ReturnType<typeof stateLog>>();
    for (const transport of TRANSPORTS) {
      const herald = client(url, transport, { heartbeatMs: 1000 });
      clients.push(herald);
      logs.set(transport, stateLog(herald));
      for (const channel of CHANNELS) {
        const inbox = new Inbox();
        inboxes.set(`${transport} ${channel}`, inbox);
        await herald.subscribe(channel, inbox.handlers).ready;
      }
    }
    await Promise.all([...logs.values()].map((log) => log.reach('connected')));

    // The publisher retries until each message is acknowledged; the idempotency key makes a retry of a
    // message stored just before the crash harmless.
    const publish = async (channel: string, n: number): Promise<void> => {
      for (;;) {
        try {
          const response = await fetch(`${url}/v1/publish`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ channel, data: { n }, idempotencyKey: `${channel}-${n}` }),
          });
          if (response.status === 200) return;
        } catch {
          // the server is down: retry
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };

    let restarted: Promise<void> | undefined;
    for (let n = 1; n <= TOTAL; n++) {
      if (n === KILL_AT) {
        await server.kill('SIGKILL');
        // Come back while the publisher is already retrying.
        restarted = (async () => {
          server = await startServerProcess(args);
        })();
      }
      for (const channel of CHANNELS) await publish(channel, n);
    }
    await restarted;

    const expected = Array.from({ length: TOTAL }, (_, i) => i + 1);
    for (const [name, inbox] of inboxes) {
      await inbox.count(TOTAL, 15_000).catch((error: Error) => {
        throw new Error(`${name}: ${error.message}`);
      });
      assert.deepEqual(inbox.offsets, expected, `${name} offsets`);
      assert.deepEqual(inbox.messages.map((m) => (m.data as { n: number }).n), expected, `${name} data`);
      assert.deepEqual(inbox.resets, [], `${name} resets`);
    }
    for (const [transport, log] of logs) {
      const connects = log.changes.filter((s) => s.state === 'connected');
      assert.ok(connects.length >= 2, `${transport} reconnected`);
      assert.ok(connects.every((s) => s.transport === transport), `${transport} stayed on its transport`);
      assert.ok(log.changes.some((s) => s.state === 'disconnected' && typeof s.retryInMs === 'number'));
    }
  });
});
