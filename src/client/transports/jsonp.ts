// [spec] docs/protocol.md "Long polling, short polling, JSONP — GET /v1/poll": `callback=fn` answers
// `/**/fn({"messages":[…],"cursor":"…"});`. The loop is long-poll.ts's, with a <script> for the request:
// browser only, opt-in (`transports: ['jsonp']`).
import { getJson, type PollAnswer } from '../http.js';
import type { Link, Transport } from '../transport.js';

let callbacks = 0;

/** A fresh global function for a script to call (a JSONP answer, the iframe stream's frames). */
export function globalCallback(fn: (value: any) => void): [name: string, remove: () => void] {
  const g = globalThis as any;
  const name = `_herald${callbacks++}_${Date.now().toString(36)}`;
  g[name] = fn;
  return [name, () => delete g[name]];
}

/**
 * A <script> or <iframe> shows no status: a refused request (400/401/403 answer JSON) only looks like an
 * error or an early end. A short poll of the same channels and cursor learns why, so the core can
 * refresh a token or stop on a refusal (closed, with the error) instead of retrying it forever.
 */
export function diagnose(link: Link, query: string, reason: string): void {
  getJson(link.settings.fetch!, `${link.url}/v1/poll?${query}&timeout=0`, 10_000).then(
    () => link.closed(reason),
    (error: unknown) => link.closed(reason, error), // the core adds the error's message
  );
}

export function jsonpTransport(link: Link): Transport {
  const { settings } = link;
  let isFirst = true;
  /** Ignores the current script's answer (update, close); bumped for every new poll. */
  let current = 0;

  const poll = (): void => {
    const id = ++current;
    const channels = link.channels();
    const query = link.query(channels);
    const script = document.createElement('script');
    const [name, remove] = globalCallback((answer: PollAnswer) => {
      if (id !== current) return; // abandoned: its channels or cursor are stale
      current++;
      isFirst = false;
      // A poll is held up to pollTimeoutS; a longer silence means the answer is never coming.
      link.opened(settings.pollTimeoutS * 1000 + settings.heartbeatMs);
      link.alive();
      for (const entry of answer.messages) link.receive(entry, channels);
      link.cover(answer.cursor, channels);
      poll();
    });
    // The callback stays (a no-op once abandoned) until the script has run: only then is it removed.
    script.onload = script.onerror = () => {
      script.remove();
      remove();
      if (id === current) diagnose(link, query, 'jsonp poll failed');
    };
    // The first poll is answered at once, so `connected` means the server answered.
    script.src = `${link.url}/v1/poll?${query}&timeout=${isFirst ? 0 : settings.pollTimeoutS}&callback=${name}`;
    document.documentElement.appendChild(script);
  };
  poll();

  return {
    // A script cannot be aborted: the held one is abandoned and a new poll sent, from the same cursor.
    update: poll,
    close: () => void current++,
  };
}
