// [spec] docs/protocol.md "Server-Sent Events — GET /v1/sse", read with EventSource. EventSource's own
// reconnect is not used: the core reconnects with backoff and a cursor merged across channels.
import type { Link, Transport } from '../transport.js';
import type { EventSourceLike } from '../types.js';

export function sseTransport(link: Link): Transport {
  /**
   * [spec] HTML §9.2.6: an event of type X reaches only listeners of X, and there is no wildcard. A
   * message's `event:` is its event name, so each name must be listened for; names seen in any envelope
   * are added, and the core fetches anything missed before a name was known (gap repair).
   */
  const names = new Set(['message', 'reset', 'join', 'leave', 'token_expired']);
  let source: EventSourceLike | undefined;
  let listen: (event: { data: string }) => void = () => {};

  const open = (): void => {
    const channels = link.channels();
    const current = new link.settings.EventSource!(`${link.url}/v1/sse?${link.query(channels)}`);
    source = current;
    listen = (event) => {
      if (source !== current) return;
      // [spec] "A message published with the event name join or leave is told apart by its data".
      const entry = JSON.parse(event.data);
      if (entry.presence !== undefined) link.presence(entry.presence, entry);
      else if (entry.code === 'token_expired') link.expiring();
      else link.receive(entry, channels);
    };
    current.onopen = () => link.opened();
    current.onerror = () => {
      current.close();
      if (source === current) link.closed('sse stream failed');
    };
    for (const name of names) current.addEventListener(name, listen);
  };
  open();

  return {
    // A subscription change reopens the stream with the cursor of every channel: nothing is lost, and
    // anything both streams carry is dropped as a duplicate by the core.
    update: () => {
      source?.close();
      open();
    },
    close: () => {
      source?.close();
      source = undefined;
    },
    learn: (name) => {
      if (names.has(name)) return;
      names.add(name);
      source?.addEventListener(name, listen);
    },
  };
}
