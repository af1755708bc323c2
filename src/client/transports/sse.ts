// [spec] docs/protocol.md "Server-Sent Events — GET /v1/sse", read with EventSource. EventSource's own
// reconnect is not used: the core reconnects with backoff and a cursor merged across channels.
// Subscription changes go on `POST /v1/session/{id}` (session.ts), in place on the open stream.
import { session } from '../session.js';
import type { Link, Transport } from '../transport.js';
import type { EventSourceLike } from '../types.js';

export function sseTransport(link: Link): Transport {
  /**
   * [spec] HTML §9.2.6: an event of type X reaches only listeners of X, and there is no wildcard. A
   * message's `event:` is its event name, so each name must be listened for; names seen in any envelope
   * are added, and the core fetches anything missed before a name was known (gap repair).
   */
  const names = new Set(['message', 'reset', 'join', 'leave', 'token_expired', 'session', 'subscribed']);
  let source: EventSourceLike | undefined;
  let listen: (event: { data: string }) => void = () => {};
  const wire = session(link, () => open());

  const open = (): void => {
    source?.close();
    const current = new link.settings.EventSource!(`${link.url}/v1/sse?${link.query(wire.start())}&session=new`);
    source = current;
    listen = (event) => {
      if (source !== current) return;
      // Open once bytes arrive, not at the headers: a proxy that buffers streams passes headers and holds
      // the body. The server's first event, `session`, is such bytes.
      link.opened();
      wire.read(JSON.parse(event.data));
    };
    current.onerror = () => {
      current.close();
      if (source === current) link.closed('sse stream failed');
    };
    for (const name of names) current.addEventListener(name, listen);
  };
  open();

  return {
    update: wire.update,
    // Only a new request carries a new token (`?token=`); the cursors make it lossless.
    refresh: open,
    close: () => {
      source?.close();
      source = undefined;
    },
    learn: (name) => {
      if (names.has(name)) return;
      names.add(name);
      source?.addEventListener(name, listen);
    },
    isStream: true,
  };
}
