// The SDK as pages get it: the bundles scripts/build-client.mjs writes, served by the server itself.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runInNewContext } from 'node:vm';
import { after, before, describe, it } from 'node:test';
import type { RunningHerald } from '../../src/herald.js';
import type * as ClientModule from '../../src/client/index.js';
import { startTestServer } from '../helpers/server.js';
import { buildClient, gzipSize } from '../../scripts/build-client.mjs';
import { Inbox, publishOk } from './helpers.js';

// Issue 4 aims at "under 6 KB for the whole SDK" (min+gzip). Sessions, tab sharing and the legacy
// transports took it past that (docs/benchmarks.md "Client SDK size" has the breakdown): this budget
// now guards against growth beyond today's size, not the aim.
const SIZE_BUDGET_BYTES = 9 * 1024;

describe('client bundle', () => {
  let server: RunningHerald;
  let paths: { esm: string; iife: string };
  before(async () => {
    paths = await buildClient();
    server = await startTestServer();
  });
  after(() => server.close());

  it(`stays under ${SIZE_BUDGET_BYTES} bytes min+gzip`, () => {
    const size = gzipSize(paths.esm);
    assert.ok(size < SIZE_BUDGET_BYTES, `dist/client/herald.js is ${size} bytes min+gzip`);
  });

  it('never imports node: modules (it must run in a page as it is)', () => {
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
    const sources = walk(new URL('../../src/client', import.meta.url).pathname).filter((f) => f.endsWith('.ts'));
    assert.ok(sources.length > 5);
    for (const file of sources) assert.doesNotMatch(readFileSync(file, 'utf8'), /from ['"]node:|require\(/, file);
  });

  it('serves /herald.js and /herald.iife.js with types, caching and source maps', async () => {
    for (const [path, type] of [
      ['/herald.js', 'text/javascript; charset=utf-8'],
      ['/herald.iife.js', 'text/javascript; charset=utf-8'],
      ['/herald.js.map', 'application/json; charset=utf-8'],
      ['/herald.iife.js.map', 'application/json; charset=utf-8'],
    ] as const) {
      const response = await fetch(`${server.url}${path}`);
      assert.equal(response.status, 200, path);
      assert.equal(response.headers.get('content-type'), type, path);
      assert.match(response.headers.get('cache-control') ?? '', /max-age=\d+/, path);
      assert.equal(response.headers.get('access-control-allow-origin'), '*', path);
      const etag = response.headers.get('etag');
      assert.ok(etag, path);
      const body = await response.text();
      if (path.endsWith('.map')) assert.ok((JSON.parse(body) as { sources: string[] }).sources.some((s) => s.endsWith('client.ts')));
      else assert.match(body, /sourceMappingURL=herald(\.iife)?\.js\.map/);
      const again = await fetch(`${server.url}${path}`, { headers: { 'If-None-Match': etag } });
      assert.equal(again.status, 304, path);
    }
    const head = await fetch(`${server.url}/herald.js`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  });

  it('the ES module bundle works in Node', async () => {
    const { Herald } = (await import(pathToFileURL(paths.esm).href)) as typeof ClientModule;
    const herald = new Herald(server.url, { transports: ['stream'] });
    try {
      const inbox = new Inbox();
      await herald.subscribe('bundled', inbox.handlers).ready;
      await publishOk(server.url, { channel: 'bundled', data: 'hello' });
      await inbox.count(1);
      assert.equal(inbox.messages[0]!.data, 'hello');
    } finally {
      herald.close();
    }
  });

  it('the classic script defines the global Herald and nothing else', () => {
    const sandbox: Record<string, unknown> = { URL, URLSearchParams, AbortController, TextDecoder, setTimeout, clearTimeout };
    sandbox.globalThis = sandbox;
    const before = new Set(Object.keys(sandbox));
    runInNewContext(readFileSync(paths.iife, 'utf8'), sandbox);
    assert.deepEqual(Object.keys(sandbox).filter((k) => !before.has(k)), ['Herald']);
    const Herald = sandbox.Herald as typeof ClientModule.Herald & { HeraldError: unknown };
    assert.equal(typeof Herald, 'function');
    assert.equal(typeof Herald.HeraldError, 'function');
  });
});
