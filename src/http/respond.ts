import type { ServerResponse } from 'node:http';
import { HeraldError } from './errors.js';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}

/** Sends `json`, already encoded. */
export function sendJsonText(res: ServerResponse, status: number, json: string, headers: Record<string, string> = {}): void {
  const bytes = Buffer.from(json);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': bytes.length,
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(bytes);
}

/** The one place an error becomes a response body. */
export function sendError(res: ServerResponse, err: HeraldError): void {
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
  sendJson(res, err.status, err.toJSON(), headers);
}
