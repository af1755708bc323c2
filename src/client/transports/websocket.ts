// [spec] docs/protocol.md "WebSocket — GET /v1/ws": one socket for every channel; subscribe and
// unsubscribe are frames on it, so changing one subscription never touches the others.
import { HeraldError } from '../errors.js';
import type { Link, Transport } from '../transport.js';

const OPEN = 1;

export function webSocketTransport(link: Link): Transport {
  const { settings } = link;
  const ws = new settings.WebSocket!(`${link.url.replace(/^http/, 'ws')}/v1/ws`);
  /** Channels asked for on this socket. */
  const requested = new Set<string>();
  /**
   * Channels the server has confirmed. [spec] "The cursor in each envelope covers every channel of the
   * socket" and "`subscribed` comes before any reset or message of that channel".
   */
  const confirmed = new Set<string>();
  let pinger: ReturnType<typeof setInterval> | undefined;

  const send = (frame: Record<string, unknown>): void => ws.send(JSON.stringify(frame));
  const sync = (): void => {
    const wanted = new Set(link.channels());
    for (const channel of requested) {
      if (wanted.has(channel)) continue;
      requested.delete(channel);
      send({ op: 'unsubscribe', channel });
    }
    for (const channel of wanted) {
      if (requested.has(channel)) continue;
      requested.add(channel);
      send({ op: 'subscribe', channel, ...link.start(channel) });
    }
  };
  const stop = (): void => {
    clearInterval(pinger);
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  };

  ws.onopen = () => {
    // Browsers answer the server's protocol pings but cannot see them: an app-level ping is the only way
    // for this side to notice a dead socket. Any frame counts as an answer.
    pinger = setInterval(() => send({ op: 'ping' }), settings.pingMs);
    link.opened(settings.pingMs * 2 + 1000);
    sync();
  };
  ws.onmessage = (event) => {
    let frame: Record<string, any>;
    try {
      frame = JSON.parse(String(event.data));
    } catch {
      return link.closed('websocket: a frame is not JSON');
    }
    switch (frame.op) {
      case 'message':
      case 'reset':
        return link.receive(frame as any, confirmed);
      case 'subscribed':
        confirmed.add(frame.channel);
        return link.alive();
      case 'unsubscribed':
        confirmed.delete(frame.channel);
        return link.alive();
      case 'error':
        link.alive();
        return link.refused(new HeraldError(frame.code, frame.message), frame.channel);
      default:
        return link.alive(); // pong, and ops of newer servers
    }
  };
  ws.onerror = () => {
    // [spec] WHATWG WebSockets: an error is always followed by close, which reports it.
  };
  ws.onclose = (event) => {
    stop();
    link.closed(`websocket closed (${event.code}${event.reason ? ` ${event.reason}` : ''})`);
  };

  return {
    update: () => {
      if (ws.readyState === OPEN) sync();
    },
    close: () => {
      stop();
      ws.close(1000);
    },
  };
}
