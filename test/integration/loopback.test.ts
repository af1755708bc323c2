// Loopback's keyless publish (no --publish-key) is for the machine's own programs and Herald's own
// pages, not for any page a browser on the machine opens: cross-origin, text/plain, rebinding and
// forwarded requests need the key.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import { startTestServer } from '../helpers/server.js';

let server: RunningHerald;
before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server.close();
});

/** A raw publish (fetch would not let a test set Host or Origin freely). */
function rawPublish(headers: Record<string, string>, path = '/v1/publish'): Promise<{ status: number; body: { error?: { code: string; message: string } } }> {
  const { port } = new URL(server.url);
  const body = '{"channel":"loop","data":1}';
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'Content-Length': Buffer.byteLength(body), ...headers } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const JSON_TYPE = { 'Content-Type': 'application/json' };

describe('keyless publish from loopback', () => {
  it('is accepted from a program (no Origin) and from Herald’s own pages', async () => {
    assert.equal((await rawPublish(JSON_TYPE)).status, 200);
    const host = new URL(server.url).host;
    assert.equal((await rawPublish({ ...JSON_TYPE, Host: host, Origin: `http://${host}` })).status, 200);
    assert.equal((await rawPublish({ 'Content-Type': 'application/json; charset=utf-8', Host: `localhost:${new URL(server.url).port}` })).status, 200);
  });

  for (const [what, headers] of [
    ['a cross-origin page', { ...JSON_TYPE, Origin: 'http://evil.example' }],
    ['a text/plain body (no preflight)', { 'Content-Type': 'text/plain' }],
    ['a form body', { 'Content-Type': 'application/x-www-form-urlencoded' }],
    ['no content type', {}],
    ['a DNS-rebinding Host', { ...JSON_TYPE, Host: 'evil.example:8080' }],
    ['a request forwarded by a proxy (X-Forwarded-For)', { ...JSON_TYPE, 'X-Forwarded-For': '203.0.113.9' }],
    ['a request forwarded by a proxy (Forwarded)', { ...JSON_TYPE, Forwarded: 'for=203.0.113.9' }],
  ] as const) {
    it(`is refused for ${what}, with 403 forbidden saying why`, async () => {
      const { status, body } = await rawPublish(headers as Record<string, string>);
      assert.equal(status, 403);
      assert.equal(body.error?.code, 'forbidden');
      assert.match(body.error!.message, /publish key/);
    });
  }

  it('refuses a cross-origin page /v1/stats too', async () => {
    const { port } = new URL(server.url);
    const status = await new Promise<number>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/v1/stats', headers: { Origin: 'http://evil.example' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      }).on('error', reject).end();
    });
    assert.equal(status, 403);
  });

  it('does not apply with a publish key: the key decides', async () => {
    const keyed = await startTestServer({ publishKey: 'k'.repeat(16) });
    try {
      const res = await fetch(`${keyed.url}/v1/publish`, {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain', Authorization: `Bearer ${'k'.repeat(16)}`, Origin: 'http://backend.example' },
        body: '{"channel":"loop","data":1}',
      });
      assert.equal(res.status, 200);
    } finally {
      await keyed.close();
    }
  });
});
