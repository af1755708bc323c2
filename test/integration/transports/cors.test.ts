// CORS for the browser transports: preflights, allowed origins on HTTP answers, and WebSocket upgrades
// refused from origins outside a configured allow-list.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../../src/herald.js';
import { SUITE_TIMEOUT_MS, WsClient, publishNumbers, wsUpgradeOutcome } from '../../helpers/clients.js';
import { startTestServer } from '../../helpers/server.js';

const OK = 'http://ok.example';
const EVIL = 'http://evil.example';

describe('CORS with the default origin *', { timeout: SUITE_TIMEOUT_MS }, () => {
  let server: RunningHerald;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('answers a preflight with the Access-Control-Allow-* headers', async () => {
    for (const path of ['/v1/publish', '/v1/sse', '/v1/poll', '/v1/stream']) {
      const res = await fetch(`${server.url}${path}`, {
        method: 'OPTIONS',
        headers: {
          Origin: 'http://anywhere.example',
          'Access-Control-Request-Method': path === '/v1/publish' ? 'POST' : 'GET',
          'Access-Control-Request-Headers': 'authorization, content-type, last-event-id',
        },
      });
      assert.ok(res.status === 204 || res.status === 200, `${path}: ${res.status}`);
      assert.equal(res.headers.get('access-control-allow-origin'), '*');
      const methods = (res.headers.get('access-control-allow-methods') ?? '').split(/\s*,\s*/);
      for (const method of ['GET', 'POST']) assert.ok(methods.includes(method), `${method} in ${methods}`);
      const allowed = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/);
      for (const header of ['authorization', 'content-type', 'last-event-id']) assert.ok(allowed.includes(header), `${header} in ${allowed}`);
    }
  });

  it('allows any origin on answers, and any WebSocket origin', async () => {
    const res = await fetch(`${server.url}/v1/poll?channel=c&timeout=0`, { headers: { Origin: EVIL } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.deepEqual(await wsUpgradeOutcome(server.url, { headers: { Origin: EVIL } }), { status: 101 });
  });
});

describe('CORS with an allow-list', { timeout: SUITE_TIMEOUT_MS }, () => {
  let server: RunningHerald;
  before(async () => {
    server = await startTestServer({ corsOrigins: [OK] });
  });
  after(() => server.close());

  it('refuses a WebSocket upgrade from an origin outside the list with 403', async () => {
    assert.deepEqual(await wsUpgradeOutcome(server.url, { headers: { Origin: EVIL } }), { status: 403, code: 'origin_forbidden' });
    const query = new URLSearchParams({ channel: 'c' });
    assert.deepEqual(await wsUpgradeOutcome(server.url, { query, headers: { Origin: EVIL } }), { status: 403, code: 'origin_forbidden' });
  });

  it('accepts a WebSocket from the allowed origin, and one without Origin (a backend)', async () => {
    for (const headers of [{ Origin: OK }, {}] as Record<string, string>[]) {
      const client = await WsClient.connect(server.url, { headers });
      try {
        const channel = `cors-${Object.keys(headers).length}`;
        assert.equal((await client.request({ op: 'subscribe', channel })).op, 'subscribed');
        await publishNumbers(server.url, channel, [1]);
        const message = await client.frames.find((f) => f.op === 'message', 'a message');
        assert.deepEqual(message.data, { n: 1 });
      } finally {
        await client.close();
      }
    }
  });

  it('names only an allowed origin in Access-Control-Allow-Origin', async () => {
    const allowed = await fetch(`${server.url}/v1/poll?channel=c&timeout=0`, { headers: { Origin: OK } });
    assert.equal(allowed.headers.get('access-control-allow-origin'), OK);
    assert.match(allowed.headers.get('vary') ?? '', /origin/i);
    const refused = await fetch(`${server.url}/v1/poll?channel=c&timeout=0`, { headers: { Origin: EVIL } });
    assert.equal(refused.headers.get('access-control-allow-origin'), null);
    const preflight = await fetch(`${server.url}/v1/sse`, { method: 'OPTIONS', headers: { Origin: OK, 'Access-Control-Request-Method': 'GET' } });
    assert.equal(preflight.headers.get('access-control-allow-origin'), OK);
    const evilPreflight = await fetch(`${server.url}/v1/sse`, { method: 'OPTIONS', headers: { Origin: EVIL, 'Access-Control-Request-Method': 'GET' } });
    assert.equal(evilPreflight.headers.get('access-control-allow-origin'), null);
  });
});
