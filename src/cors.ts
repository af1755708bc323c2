// CORS on plain HTTP answers. With `--cors-origin *` every answer carries the same
// `Access-Control-Allow-Origin: *`, so each writer puts it into its one writeHead (`corsHeaders`)
// rather than the edge calling res.setHeader on every request: a response whose fields all come
// through writeHead takes Node's fast path (no setHeader per field, no header store kept for the life
// of a stream). With an allow-list the answer depends on the request's Origin and `applyRequestCors`
// sets it per request, with `Vary: Origin`.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from './config.js';

/** Header fields as `writeHead` takes them. */
export type HeaderFields = Readonly<Record<string, string | number>>;

const ANY_ORIGIN: HeaderFields = Object.freeze({ 'Access-Control-Allow-Origin': '*' });
const NO_FIELDS: HeaderFields = Object.freeze({});

/**
 * The CORS fields every answer of a server with this config carries, whatever the request: to be
 * included in the answer's writeHead. Empty with an allow-list (see `applyRequestCors`).
 */
export function corsHeaders(config: Pick<Config, 'corsOrigins'>): HeaderFields {
  return config.corsOrigins === '*' ? ANY_ORIGIN : NO_FIELDS;
}

export function isOriginAllowed(config: Pick<Config, 'corsOrigins'>, origin: string | undefined, isWebSocket: boolean): boolean {
  if (config.corsOrigins === '*') return true;
  // Only browsers send Origin; a WebSocket without one is a backend client, not a cross-site page.
  if (origin === undefined) return isWebSocket;
  return config.corsOrigins.includes(origin);
}

/** The CORS fields that depend on the request (an allow-list only); nothing with `*`, see `corsHeaders`. */
export function applyRequestCors(config: Pick<Config, 'corsOrigins'>, req: IncomingMessage, res: ServerResponse): void {
  if (config.corsOrigins === '*') return;
  res.setHeader('Vary', 'Origin');
  const origin = req.headers.origin;
  if (origin !== undefined && isOriginAllowed(config, origin, false)) res.setHeader('Access-Control-Allow-Origin', origin);
}
