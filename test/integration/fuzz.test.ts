// Whatever a client sends — publish bodies, query strings, request targets, headers, WebSocket frames —
// Herald answers 4xx with the JSON error shape (or succeeds), never 5xx, never crashes, and never stores
// half a batch. Bounded: a few hundred generated inputs per surface.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import WebSocket from 'ws';
import type { RunningHerald } from '../../src/herald.js';
import { startTestServer } from '../helpers/server.js';

const RUNS = 150;
let server: RunningHerald;

before(async () => {
  server = await startTestServer({ maxBodyBytes: 64 * 1024 });
});
after(async () => {
  await server.close();
});

/** A 4xx must carry {error:{code,message}}; anything else must be a success. */
async function assertNoServerError(res: Response, what: string): Promise<void> {
  const text = await res.text();
  assert.ok(res.status < 500, `${what} answered ${res.status}: ${text}`);
  if (res.status >= 400) {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    assert.equal(typeof body.error?.code, 'string', `${what}: error shape`);
    assert.equal(typeof body.error?.message, 'string', `${what}: error shape`);
  }
}

/** Sends raw bytes and returns the status of the first response line (0 when the server just closed). */
function rawStatus(bytes: string): Promise<number> {
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let text = '';
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer')));
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (match) {
        resolve(Number(match[1]));
        socket.destroy();
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(0));
    socket.end(bytes);
  });
}

async function headOf(channel: string): Promise<number> {
  const res = await fetch(`${server.url}/v1/history?channel=${channel}&limit=1`);
  return ((await res.json()) as { offset: number }).offset;
}

const nested = fc.integer({ min: 1, max: 20_000 }).map((depth) => `{"channel":"deep","data":${'['.repeat(depth)}${']'.repeat(depth)}}`);
const anyBody = fc.oneof(
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.record({ channel: fc.oneof(fc.string(), fc.constant('ok')), data: fc.jsonValue(), event: fc.option(fc.string(), { nil: undefined }) }).map((v) => JSON.stringify(v)),
  fc.array(fc.record({ channel: fc.constantFrom('ok', 'bad chan', ''), data: fc.jsonValue() }), { maxLength: 5 }).map((messages) => JSON.stringify({ messages })),
  fc.string({ unit: 'binary' }),
  nested,
);

describe('fuzz', () => {
  it('publish bodies and content types: never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(anyBody, fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', ''), async (body, contentType) => {
        const headers: Record<string, string> = contentType === '' ? {} : { 'Content-Type': contentType };
        const res = await fetch(`${server.url}/v1/publish`, { method: 'POST', headers, body });
        await assertNoServerError(res, `publish ${body.slice(0, 80)}`);
      }),
      { numRuns: RUNS },
    );
  });

  it('a batch with one bad message stores nothing of it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 9 }), fc.constantFrom('bad chan', '', 7, null), async (badIndex, badChannel) => {
        const before = await headOf('batch-atomic');
        const messages = Array.from({ length: 10 }, (_, i) => ({ channel: i === badIndex ? badChannel : 'batch-atomic', data: i }));
        const res = await fetch(`${server.url}/v1/publish`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ messages }) });
        assert.equal(res.status, 400);
        await res.arrayBuffer();
        assert.equal(await headOf('batch-atomic'), before);
      }),
      { numRuns: 30 },
    );
  });

  it('query strings on every GET endpoint: never a 5xx', async () => {
    const paths = ['/v1/poll', '/v1/history', '/v1/presence', '/v1/presence/count', '/v1/sse', '/v1/stream', '/v1/iframe', '/v1/stats', '/healthz'];
    const value = fc.oneof(fc.string(), fc.constantFrom('beginning', 'head', '0', '-1', '1e9', 'x'.repeat(300), 'bm90IGEgY3Vyc29y'));
    const key = fc.constantFrom('channel', 'cursor', 'since', 'timeout', 'limit', 'reverse', 'before', 'callback', 'session', 'presence', 'token', 'x');
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...paths), fc.array(fc.tuple(key, value), { maxLength: 6 }), async (path, pairs) => {
        const params = new URLSearchParams(pairs);
        if (path === '/v1/poll') params.set('timeout', '0');
        const abort = new AbortController();
        const res = await fetch(`${server.url}${path}?${params}`, { signal: abort.signal, headers: { Accept: 'text/event-stream' } });
        if (res.status === 200 && path !== '/v1/poll' && path !== '/v1/history' && !path.startsWith('/v1/presence') && path !== '/healthz' && path !== '/v1/stats') {
          abort.abort(); // an open stream: its status is what counts
          return;
        }
        await assertNoServerError(res, `${path}?${params}`);
      }),
      { numRuns: RUNS },
    );
  });

  it('request targets: never a 5xx', async () => {
    const target = fc.oneof(
      fc.constantFrom('//[', 'http://[::1/x', '/%', '/%zz', '/v1/poll?channel=%', '*', 'http://h/v1/poll?channel=a&timeout=0', '/..', '/v1/session/%00', '/\u00ff'),
      fc.string({ minLength: 1, maxLength: 40 }).map((s) => `/${s}`),
      fc.string({ minLength: 1, maxLength: 40 }),
    );
    await fc.assert(
      fc.asyncProperty(target, fc.constantFrom('GET', 'POST', 'OPTIONS', 'PUT'), async (path, method) => {
        const status = await rawStatus(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        assert.ok(status < 500, `${method} ${JSON.stringify(path)} answered ${status}`);
      }),
      { numRuns: RUNS },
    );
  });

  it('headers: never a 5xx', async () => {
    const headerValue = fc.oneof(fc.string(), fc.constantFrom('Bearer ', 'Bearer x.y.z', 'null', 'http://evil.example', 'text/plain', 'application/json;;'));
    const name = fc.constantFrom('Authorization', 'Origin', 'Last-Event-ID', 'Content-Type', 'Host', 'X-Forwarded-For', 'Content-Length');
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(name, headerValue), { maxLength: 4 }), fc.constantFrom('/v1/publish', '/v1/poll?channel=a&timeout=0', '/v1/history?channel=a'), async (pairs, path) => {
        // Header values are what HTTP allows on the wire; the rest never reaches a server.
        const lines = pairs.map(([n, v]) => `${n}: ${v.replace(/[^\t\x20-\x7e]/g, '')}`).filter((l) => !/^Content-Length: (?!\d+$)/.test(l));
        if (!lines.some((l) => l.startsWith('Host:'))) lines.push('Host: 127.0.0.1');
        const body = path === '/v1/publish' ? '{"channel":"h","data":1}' : '';
        const method = path === '/v1/publish' ? 'POST' : 'GET';
        const length = lines.some((l) => l.startsWith('Content-Length:')) ? [] : [`Content-Length: ${body.length}`];
        const status = await rawStatus(`${method} ${path} HTTP/1.1\r\n${[...lines, ...length, 'Connection: close'].join('\r\n')}\r\n\r\n${body}`);
        assert.ok(status < 500, `${JSON.stringify(lines)} answered ${status}`);
      }),
      { numRuns: RUNS },
    );
  });

  it('WebSocket frames: answered with error ops, the socket and the server stay up', async () => {
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}/v1/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const replies: { op?: string; code?: string }[] = [];
    ws.on('message', (data) => replies.push(JSON.parse(data.toString())));
    const frame = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.record({ op: fc.constantFrom('subscribe', 'unsubscribe', 'publish', 'presence', 'auth', 'refresh', 'ping', 'x'), channel: fc.jsonValue(), data: fc.jsonValue(), cursor: fc.jsonValue(), since: fc.jsonValue(), token: fc.jsonValue() }, { requiredKeys: ['op'] }).map((v) => JSON.stringify(v)),
      fc.integer({ min: 1, max: 20_000 }).map((depth) => `{"op":"publish","channel":"c","data":${'['.repeat(depth)}${']'.repeat(depth)}}`),
      fc.string(),
    );
    await fc.assert(
      fc.asyncProperty(frame, async (text) => {
        ws.send(text);
      }),
      { numRuns: RUNS },
    );
    ws.send(JSON.stringify({ op: 'ping', id: 'last' }));
    const deadline = Date.now() + 5000;
    while (!replies.some((r) => r.op === 'pong' && (r as { id?: string }).id === 'last') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(ws.readyState, WebSocket.OPEN, 'the socket survived every frame');
    assert.ok(!replies.some((r) => r.code === 'internal'), 'no frame led to an internal error');
    ws.close();
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
  });
});
