// Bundles the client SDK (src/client) for browsers and Node: dist/client/herald.js (ES module) and
// dist/client/herald.iife.js (a classic script defining the global `Herald`), minified, with source
// maps. The server serves both at /herald.js and /herald.iife.js (src/http/static-client.ts).
// `node scripts/build-client.mjs` builds; tests import buildClient() and gzipSize().
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CLIENT_DIST = `${ROOT}dist/client`;

const COMMON = {
  bundle: true,
  minify: true,
  sourcemap: true,
  // 'browser' makes any node: import a build error: the SDK must run in a page as it is.
  platform: 'browser',
  target: ['es2022'],
  legalComments: 'none',
  logLevel: 'warning',
};

export async function buildClient(outdir = CLIENT_DIST) {
  const esm = `${outdir}/herald.js`;
  const iife = `${outdir}/herald.iife.js`;
  await Promise.all([
    build({ ...COMMON, entryPoints: [`${ROOT}src/client/index.ts`], format: 'esm', outfile: esm }),
    build({ ...COMMON, entryPoints: [`${ROOT}src/client/global.ts`], format: 'iife', outfile: iife }),
  ]);
  return { esm, iife };
}

/** The demo page (GET /demo, src/http/demo.ts) sits beside the built server, in dist/demo. */
export function copyDemo() {
  mkdirSync(`${ROOT}dist/demo`, { recursive: true });
  copyFileSync(`${ROOT}src/demo/demo.html`, `${ROOT}dist/demo/demo.html`);
}

/** Bytes of the file once gzipped at the highest level: the "min+gzip" size a page pays. */
export function gzipSize(path) {
  return gzipSync(readFileSync(path), { level: 9 }).length;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { esm, iife } = await buildClient();
  copyDemo();
  for (const path of [esm, iife]) {
    console.log(`${path.slice(ROOT.length)}: ${readFileSync(path).length} bytes minified, ${gzipSize(path)} bytes min+gzip`);
  }
}
