// Every kind of HTTP answer carries its CORS fields: with the default origin *, written in the answer's
// one writeHead (no res.setHeader, so Node keeps no header store per response); with an allow-list,
// per request with Vary: Origin. Covers poll answers (at once, held, JSONP, a repeated query), the
// streams, errors, publish, history, presence, session changes, static client assets, the demo.
import assert from 'node:assert/strict';
import { ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../../src/herald.js';
import { SUITE_TIMEOUT_MS } from '../../helpers/clients.js';
import { publish, startTestServer } from '../../helpers/server.js';

const OK = 'http://ok.example';
const PUBLISH_KEY = 'cors-answers-key';
const BACKEND = { Authorization: `Bearer ${PUBLISH_KEY}` };
const EVIL = 'http://evil.example';

/** The status and headers of a GET (a stream's, as soon as its head arrives; the stream is then dropped). */
async function head(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers }> {
  const controller = new AbortController();
  const res = await fetch(url, { ...init, signal: controller.signal });
  const { status, headers } = res;
  controller.abort();
  await res.body?.cancel().catch(() => undefined);
  return { status, headers };
}

/** Every kind of answer, each as [name, its status and headers]. */
async function everyAnswer(url: string, origin: string): Promise<[string, { status: number; headers: Headers }][]> {
  const headers = { Origin: origin };
  const post = (path: string, body: unknown) => head(`${url}${path}`, { method: 'POST', headers: { ...headers, ...BACKEND, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const channel = `cors-answers-${Math.random().toString(36).slice(2)}`;
  const answers: [string, { status: number; headers: Headers }][] = [];
  const add = async (name: string, answer: Promise<{ status: number; headers: Headers }>, status = 200) => {
    const got = await answer;
    assert.equal(got.status, status, name);
    answers.push([name, got]);
  };

  await add('publish', post('/v1/publish', { channel, data: 1 }));
  await add('poll, answered at once', head(`${url}/v1/poll?channel=${channel}&since=beginning&timeout=0`, { headers }));
  await add('poll, the same query again', head(`${url}/v1/poll?channel=${channel}&since=beginning&timeout=0`, { headers }));
  await add('poll, JSONP', head(`${url}/v1/poll?channel=${channel}&since=beginning&timeout=0&callback=cb`, { headers }));
  await add('poll, empty', head(`${url}/v1/poll?channel=${channel}-quiet&timeout=0`, { headers }));
  const held = head(`${url}/v1/poll?channel=${channel}-held&timeout=20`, { headers });
  await new Promise((resolve) => setTimeout(resolve, 100));
  await publish(url, { channel: `${channel}-held`, data: 2 }, BACKEND);
  await add('poll, held then answered', held);
  await add('poll session', head(`${url}/v1/poll?channel=${channel}&session=new&timeout=0`, { headers }));
  await add('sse', head(`${url}/v1/sse?channel=${channel}`, { headers }));
  await add('stream', head(`${url}/v1/stream?channel=${channel}`, { headers }));
  await add('iframe', head(`${url}/v1/iframe?channel=${channel}&callback=cb`, { headers }));
  await add('history', head(`${url}/v1/history?channel=${channel}`, { headers }));
  await add('presence', head(`${url}/v1/presence?channel=${channel}`, { headers: { ...headers, ...BACKEND } }));
  await add('error: not found', head(`${url}/nowhere`, { headers }), 404);
  await add('error: bad query', head(`${url}/v1/poll?channel=${channel}&timeout=x`, { headers }), 400);
  await add('error: not acceptable', head(`${url}/v1/sse?channel=${channel}`, { headers: { ...headers, Accept: 'text/html' } }), 406);
  await add('error: bad session', post('/v1/session/nope', { subscribe: [channel] }), 404);
  await add('healthz', head(`${url}/healthz`, { headers }));
  await add('metrics', head(`${url}/metrics`, { headers }));
  await add('stats', head(`${url}/v1/stats`, { headers: { ...headers, ...BACKEND } }));
  await add('client asset', head(`${url}/herald.js`, { headers }));
  await add('client asset, not modified', head(`${url}/herald.js`, { headers: { ...headers, 'If-None-Match': '*' } }), 304);
  await add('demo page', head(`${url}/demo`, { headers }));
  await add('demo token', post('/demo/token', { name: 'Ada' }));
  return answers;
}

describe('CORS fields on every answer, origin *', { timeout: SUITE_TIMEOUT_MS }, () => {
  let server: RunningHerald;
  before(async () => {
    server = await startTestServer({ publishKey: PUBLISH_KEY, demo: true });
  });
  after(() => server.close());

  it('every answer says Access-Control-Allow-Origin: *, and no answer goes through setHeader', async () => {
    const setHeader = ServerResponse.prototype.setHeader;
    const setFields: string[] = [];
    ServerResponse.prototype.setHeader = function (this: ServerResponse, name: string, value: number | string | readonly string[]) {
      setFields.push(name);
      return setHeader.call(this, name, value);
    };
    let answers: Awaited<ReturnType<typeof everyAnswer>>;
    try {
      answers = await everyAnswer(server.url, EVIL);
    } finally {
      ServerResponse.prototype.setHeader = setHeader;
    }
    for (const [name, { status, headers }] of answers) {
      assert.equal(headers.get('access-control-allow-origin'), '*', `${name} (${status})`);
      assert.equal(headers.get('vary'), null, name);
    }
    assert.deepEqual(setFields, []);
  });

  it('a session change answers with it too', async () => {
    const channel = 'cors-session';
    const opened = (await (await fetch(`${server.url}/v1/poll?channel=${channel}&session=new&timeout=0`)).json()) as { session: string };
    const res = await fetch(`${server.url}/v1/session/${opened.session}`, {
      method: 'POST',
      headers: { Origin: EVIL, 'Content-Type': 'application/json' },
      body: JSON.stringify({ subscribe: [`${channel}-2`] }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
  });
});

describe('CORS fields on every answer, an allow-list', { timeout: SUITE_TIMEOUT_MS }, () => {
  let server: RunningHerald;
  before(async () => {
    server = await startTestServer({ corsOrigins: [OK], publishKey: PUBLISH_KEY, demo: true });
  });
  after(() => server.close());

  it('names an allowed origin, with Vary: Origin, on every answer', async () => {
    for (const [name, { status, headers }] of await everyAnswer(server.url, OK)) {
      assert.equal(headers.get('access-control-allow-origin'), OK, `${name} (${status})`);
      assert.match(headers.get('vary') ?? '', /origin/i, name);
    }
  });

  it('names no other origin, on any answer', async () => {
    for (const [name, { status, headers }] of await everyAnswer(server.url, EVIL)) {
      assert.equal(headers.get('access-control-allow-origin'), null, `${name} (${status})`);
      assert.match(headers.get('vary') ?? '', /origin/i, name);
    }
  });
});
