import type { IncomingMessage } from 'node:http';
import { HeraldError } from '../errors.js';
import { parseUntrustedJson } from '../json.js';

/** Reads a JSON body of at most `maxBytes`; refuses more without buffering it. */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) throw new HeraldError('payload_too_large');
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > maxBytes) throw new HeraldError('payload_too_large');
    chunks.push(chunk);
  }
  return parseUntrustedJson(Buffer.concat(chunks).toString('utf8'));
}
