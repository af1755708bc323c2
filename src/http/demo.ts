// GET /demo: the demo page (a ticker board of ten widgets and a chat box over one SDK connection). The
// HTML is src/demo/demo.html, copied to dist/demo by `npm run build`, so the same relative path works
// from src/http (tsx) and dist/http (built). How the page gets its prices is explained at its top.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HeraldError } from './errors.js';

const DEMO_HTML = new URL('../demo/demo.html', import.meta.url);

export function isDemoPath(path: string): boolean {
  return path === '/demo' || path === '/demo/';
}

let cached: Buffer | undefined;

export async function serveDemo(req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    cached ??= await readFile(DEMO_HTML);
  } catch {
    throw new HeraldError('not_found', 'The demo page is not built; run npm run build.');
  }
  res.writeHead(200, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': cached.length,
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : cached);
}
