import type { ServerResponse } from 'node:http';
import type { HeaderFields } from '../cors.js';
import { HeraldError } from '../errors.js';

// Every writer takes the server's constant CORS fields (`corsHeaders` in ./cors.ts) so that they go out
// in the one writeHead; a required parameter, so no answer can leave without them.

export function sendJson(res: ServerResponse, status: number, body: unknown, cors: HeaderFields, headers: HeaderFields = {}): void {
  sendJsonText(res, status, JSON.stringify(body), cors, headers);
}

/** Sends `json`, already encoded. */
export function sendJsonText(res: ServerResponse, status: number, json: string, cors: HeaderFields, headers: HeaderFields = {}): void {
  const bytes = Buffer.from(json);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': bytes.length,
    'Cache-Control': 'no-store',
    ...cors,
    ...headers,
  });
  res.end(bytes);
}

/** The one place an error becomes a response body. */
export function sendError(res: ServerResponse, err: HeraldError, cors: HeaderFields): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  if (err.code === 'unauthorized') headers['WWW-Authenticate'] = 'Bearer';
  // RFC 6750 §3.1: a bad or expired token is "invalid_token".
  if (err.code === 'token_invalid' || err.code === 'token_expired') headers['WWW-Authenticate'] = 'Bearer error="invalid_token"';
  if (err.code === 'rate_limited') headers['Retry-After'] = '1';
  // The body of a refused upload may still be arriving; don't read it, don't keep the connection.
  if (err.code === 'payload_too_large') headers.Connection = 'close';
  sendJson(res, err.status, err.toJSON(), cors, headers);
}
