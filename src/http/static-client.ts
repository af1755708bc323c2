// GET /herald.js, /herald.iife.js and their source maps: the client SDK, served by the server itself so
// a page needs only `<script src="http://SERVER/herald.iife.js">`. The files are the bundles
// scripts/build-client.mjs writes to dist/client (`npm run build`).
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HeaderFields } from '../cors.js';
import { HeraldError } from '../errors.js';

// Resolves to <root>/dist/client both from src/http (tsx) and from dist/http (built).
const CLIENT_DIR = new URL('../../dist/client/', import.meta.url);

const ASSETS: ReadonlyMap<string, string> = new Map([
  // RFC 9239 §6: text/javascript is the one JavaScript media type.
  ['/herald.js', 'text/javascript; charset=utf-8'],
  ['/herald.iife.js', 'text/javascript; charset=utf-8'],
  ['/herald.js.map', 'application/json; charset=utf-8'],
  ['/herald.iife.js.map', 'application/json; charset=utf-8'],
]);

/**
 * The URLs never change while the files do (a new version of the server), so answers are cached
 * briefly and then revalidated by ETag (RFC 9111 §4.3): a page reload costs a 304, an upgrade shows up
 * within minutes.
 */
const CACHE_CONTROL = 'public, max-age=300, must-revalidate';

interface Asset {
  bytes: Buffer;
  etag: string;
  mtimeMs: number;
}

const cache = new Map<string, Asset>();

export function isClientAsset(path: string): boolean {
  return ASSETS.has(path);
}

async function load(path: string): Promise<Asset> {
  const file = new URL(`.${path}`, CLIENT_DIR);
  let mtimeMs: number;
  try {
    mtimeMs = (await stat(file)).mtimeMs;
  } catch {
    throw new HeraldError('not_found', `${path} is not built; run npm run build.`);
  }
  const cached = cache.get(path);
  if (cached !== undefined && cached.mtimeMs === mtimeMs) return cached;
  const bytes = await readFile(file);
  const asset = { bytes, mtimeMs, etag: `"${createHash('sha256').update(bytes).digest('base64url').slice(0, 27)}"` };
  cache.set(path, asset);
  return asset;
}

export async function serveClientAsset(req: IncomingMessage, res: ServerResponse, path: string, cors: HeaderFields): Promise<void> {
  const asset = await load(path);
  const headers = {
    'Content-Type': ASSETS.get(path)!,
    'Cache-Control': CACHE_CONTROL,
    ETag: asset.etag,
    'X-Content-Type-Options': 'nosniff',
    ...cors,
  };
  if (matchesEtag(req.headers['if-none-match'], asset.etag)) {
    res.writeHead(304, headers).end();
    return;
  }
  res.writeHead(200, { ...headers, 'Content-Length': asset.bytes.length });
  res.end(req.method === 'HEAD' ? undefined : asset.bytes);
}

/** RFC 9110 §13.1.2: If-None-Match is "*" or a list of entity tags, compared weakly. */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((tag) => {
    const t = tag.trim();
    return t === '*' || t.replace(/^W\//, '') === etag;
  });
}
