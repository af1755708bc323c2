// GET /demo: the demo page (a ticker board of ten widgets and a chat box with who is online, over one
// SDK connection), and POST /demo/token, which gives the page its demo token (src/auth/demo-tokens.ts).
// Both exist only when the demo is on (config `demo`; by default in open mode). The HTML is
// src/demo/demo.html, copied to dist/demo by `npm run build`, so the same relative path works from
// src/http (tsx) and dist/http (built). How the page gets its prices is explained at its top.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DemoTokens } from '../auth/demo-tokens.js';
import { RateLimiter } from '../auth/rate-limit.js';
import { readJsonBody } from './body.js';
import { HeraldError } from '../errors.js';
import type { HeaderFields } from '../cors.js';
import { sendJson } from './respond.js';

const DEMO_HTML = new URL('../demo/demo.html', import.meta.url);

export const DEMO_TOKEN_PATH = '/demo/token';
const MAX_NAME_CHARS = 40;
const SEED = /^[A-Za-z0-9_-]{16,64}$/;
const MAX_BODY_BYTES = 1024;
/**
 * Tokens signed per second per client address (bursts of as many). Signing costs microseconds, but the
 * endpoint is open to anyone: this keeps it from being a free CPU sink. Behind a proxy every client
 * shares one address, which the demo (a page on the machine running herald) can live with.
 */
const TOKENS_PER_S = 10;

export function isDemoPath(path: string): boolean {
  return path === '/demo' || path === '/demo/';
}

/**
 * POST /demo/token `{"name": "Ada", "seed"?: "<16–64 of [A-Za-z0-9_-]>"}` →
 * `{"token","user","expiresAt"}`. `name` (trimmed, 1–40 characters, no control characters) becomes the
 * token's `info.name`; the same `seed` always gets the same `user`, so a page that refreshes its
 * token stays one user in presence.
 */
export class DemoTokenEndpoint {
  readonly #tokens: DemoTokens;
  readonly #limiter = new RateLimiter(TOKENS_PER_S);
  readonly #cors: HeaderFields;

  constructor(tokens: DemoTokens, cors: HeaderFields) {
    this.#tokens = tokens;
    this.#cors = cors;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { name, seed } = readRequest(await readJsonBody(req, MAX_BODY_BYTES));
    // Counted once the request is valid: what the bucket guards is the signing.
    if (!this.#limiter.take(req.socket.remoteAddress ?? '')) {
      throw new HeraldError('rate_limited', 'Too many demo tokens from this address; retry in a second.');
    }
    sendJson(res, 200, await this.#tokens.issue(name, seed), this.#cors);
  }
}

function readRequest(body: unknown): { name: string; seed: string | undefined } {
  const fail = (detail: string): never => {
    throw new HeraldError('body_invalid', detail);
  };
  if (typeof body !== 'object' || body === null || Array.isArray(body)) fail('The body is a JSON object {"name": "…"}.');
  const { name, seed, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined) fail(`Unknown field ${JSON.stringify(unknown)}; the fields are name and seed.`);
  const trimmed = typeof name === 'string' ? name.trim() : '';
  const length = [...trimmed].length;
  // Control characters (newlines, NUL, escapes) would only garble the other pages that show the name.
  if (length < 1 || length > MAX_NAME_CHARS || /\p{Cc}/u.test(trimmed)) {
    fail(`"name" is a string of 1 to ${MAX_NAME_CHARS} characters (after trimming), without control characters.`);
  }
  if (seed !== undefined && (typeof seed !== 'string' || !SEED.test(seed))) {
    fail('"seed", when given, is 16 to 64 characters of [A-Za-z0-9_-].');
  }
  return { name: trimmed, seed: seed as string | undefined };
}

let cached: Buffer | undefined;

export async function serveDemo(req: IncomingMessage, res: ServerResponse, cors: HeaderFields): Promise<void> {
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
    ...cors,
  });
  res.end(req.method === 'HEAD' ? undefined : cached);
}
