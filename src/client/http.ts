// The few plain HTTP requests the SDK makes besides its wires: anchoring new channels, fetching a gap,
// probing whether the server is alive, publishing and reading presence over HTTP. Errors come back as HeraldError with the server's code.
import { HeraldError } from './errors.js';
import type { Entry } from './transport.js';
import type { PresenceEvent } from './types.js';

/** [spec] GET /v1/poll answer. */
export interface PollAnswer {
  messages: Entry[];
  cursor: string;
  /** Polls made with `session=`: the session to name in the next poll. */
  session?: string;
  /** Polls of a session with `presence=1`: join/leave events since the last answer. */
  presence?: (PresenceEvent & { presence: 'join' | 'leave' })[];
}

/** The server's `{"error":{"code","message"}}` body as a HeraldError (or a generic one for other bodies). */
export async function httpError(response: Response): Promise<HeraldError> {
  let code = `http_${response.status}`;
  let message = `HTTP ${response.status} ${response.statusText}`.trim();
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string } };
    code = body.error?.code ?? code;
    message = body.error?.message ?? message;
  } catch {
    // not JSON: a proxy's page, keep the status
  }
  return new HeraldError(code, message, response.status);
}

/** A request answered with JSON (GET unless `init` says otherwise); refusals and silence as HeraldError. */
export async function getJson<T>(fetchFn: typeof fetch, url: string, timeoutMs: number, init?: RequestInit): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetchFn(url, { ...init, signal: controller.signal });
    if (!response.ok) throw await httpError(response);
    return (await response.json()) as T;
  } catch (error) {
    if (error instanceof HeraldError) throw error;
    throw new HeraldError('server_gone', `No answer from ${url.replace(/\?.*/, '')}: ${(error as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}
