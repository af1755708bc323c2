// Clients for listen sessions (session=, POST /v1/session/{id}): NDJSON and iframe streams read as raw
// JSON objects (session announcements and change markers included), polls answered as plain objects,
// and the POST itself. Every wait is bounded (Inbox).
import assert from 'node:assert/strict';
import { runInNewContext } from 'node:vm';
import { DEFAULT_WAIT_MS, Inbox, runJsonp, withTimeout } from './clients.js';

export type JsonObject = Record<string, unknown>;

/** A GET /v1/stream or /v1/iframe response, every JSON object it carries recorded in order. */
export class RawStream {
  readonly objects = new Inbox<JsonObject>();
  readonly #abort = new AbortController();
  raw = '';

  static async open(baseUrl: string, path: '/v1/stream' | '/v1/iframe', params: URLSearchParams, headers: Record<string, string> = {}): Promise<RawStream> {
    const stream = new RawStream();
    const res = await withTimeout(fetch(`${baseUrl}${path}?${params}`, { signal: stream.#abort.signal, headers }), `${path} headers`);
    assert.equal(res.status, 200, `${path}?${params} answered ${res.status}: ${res.status === 200 ? '' : await res.text()}`);
    const callback = params.get('callback');
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let pending = '';
    void (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          const text = decoder.decode(value, { stream: true });
          stream.raw += text;
          pending += text;
          pending = callback === null ? stream.#takeLines(pending) : stream.#takeScripts(pending, callback);
        }
        stream.objects.fail(new Error('the server ended the stream'));
      } catch (err) {
        stream.objects.fail(err as Error);
      }
    })();
    return stream;
  }

  #takeLines(pending: string): string {
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const value = JSON.parse(pending.slice(0, newline)) as JsonObject;
      pending = pending.slice(newline + 1);
      if (value.heartbeat !== true) this.objects.push(value);
    }
    return pending;
  }

  #takeScripts(pending: string, callback: string): string {
    for (;;) {
      const match = /<script>([\s\S]*?)<\/script>/.exec(pending);
      if (match === null) return pending;
      pending = pending.slice(match.index + match[0].length);
      const calls: unknown[] = [];
      runInNewContext(match[1]!, { parent: { [callback]: (value: unknown) => calls.push(value) } }, { timeout: 1000 });
      assert.equal(calls.length, 1, `one call per script: ${match[1]}`);
      this.objects.push(JSON.parse(JSON.stringify(calls[0])) as JsonObject);
    }
  }

  /** Objects that are message envelopes (they have an offset). */
  messages(): JsonObject[] {
    return this.objects.items.filter((o) => typeof o.offset === 'number');
  }

  close(): void {
    this.#abort.abort();
  }
}

export interface SessionPostAnswer {
  status: number;
  body: JsonObject;
}

/** POST /v1/session/{id} with `body` (an object, or raw text). */
export async function postSession(baseUrl: string, id: string, body: unknown, headers: Record<string, string> = {}): Promise<SessionPostAnswer> {
  const res = await withTimeout(
    fetch(`${baseUrl}/v1/session/${encodeURIComponent(id)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    }),
    `POST /v1/session/${id}`,
  );
  return { status: res.status, body: (await res.json()) as JsonObject };
}

/** POST /v1/session/{id}, asserting a 200. */
export async function postSessionOk(baseUrl: string, id: string, body: unknown, headers: Record<string, string> = {}): Promise<JsonObject> {
  const { status, body: answer } = await postSession(baseUrl, id, body, headers);
  assert.equal(status, 200, `POST /v1/session/${id} answered ${status}: ${JSON.stringify(answer)}`);
  return answer;
}

/** One GET /v1/poll, asserting a 200; the answer as an object (JSONP run as a browser would). */
export async function pollRaw(baseUrl: string, params: URLSearchParams, signal?: AbortSignal): Promise<JsonObject> {
  const boundMs = Number(params.get('timeout') ?? 25) * 1000 + DEFAULT_WAIT_MS;
  const { status, text } = await withTimeout(
    fetch(`${baseUrl}/v1/poll?${params}`, { signal }).then(async (r) => ({ status: r.status, text: await r.text() })),
    `the answer to poll ?${params}`,
    boundMs,
  );
  assert.equal(status, 200, `poll ?${params} answered ${status}: ${text}`);
  const callback = params.get('callback');
  return (callback === null ? JSON.parse(text) : runJsonp(text, callback)) as JsonObject;
}

/** The data of the messages of a poll answer, as [channel, offset] pairs. */
export function offsets(answer: JsonObject): [unknown, unknown][] {
  return (answer.messages as JsonObject[]).filter((m) => m.reset !== true).map((m) => [m.channel, m.offset]);
}

/** The channels a cursor names (its segments are base64url "channel\nepoch\noffset"). */
export function cursorPositions(cursor: string): Record<string, number> {
  const positions: Record<string, number> = {};
  if (cursor === '') return positions;
  for (const segment of cursor.split('.')) {
    const [channel, , offset] = Buffer.from(segment, 'base64url').toString('utf8').split('\n');
    positions[channel!] = Number(offset);
  }
  return positions;
}
