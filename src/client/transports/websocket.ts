// [spec] docs/protocol.md "WebSocket — GET /v1/ws": one socket for every channel; subscribe and
// unsubscribe are frames on it, so changing one subscription never touches the others.
import { HeraldError } from '../errors.js';
import type { Link, Transport } from '../transport.js';

const OPEN = 1;

export function webSocketTransport(link: Link): Transport {
  const { settings } = link;
  // [spec] protocol.md "Where the token goes": `?token=` on the WebSocket URL (browsers set no headers).
  const token = link.token();
  const ws = new settings.WebSocket!(`${link.url.replace(/^http/, 'ws')}/v1/ws${token ? `?token=${encodeURIComponent(token)}` : ''}`);
  /** Channels asked for on this socket. */
  const requested = new Set<string>();
  /**
   * Channels the server has confirmed. [spec] "The cursor in each envelope covers every channel of the
   * socket" and "`subscribed` comes before any reset or message of that channel".
   */
  const confirmed = new Set<string>();
  let pinger: ReturnType<typeof setInterval> | undefined;
  /** Requests awaiting their reply, by the `id` the server echoes. */
  const pending = new Map<number, [(frame: Record<string, any>) => void, (error: HeraldError) => void]>();
  let lastId = 0;

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
    for (const [, reject] of pending.values()) reject(new HeraldError('server_gone', 'The WebSocket closed before the server answered.'));
    pending.clear();
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
    const waiter = typeof frame.id === 'number' ? pending.get(frame.id) : undefined;
    if (waiter !== undefined) {
      pending.delete(frame.id);
      link.alive();
      return frame.op === 'error' ? waiter[1](new HeraldError(frame.code, frame.message)) : waiter[0](frame);
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
      case 'join':
      case 'leave':
        link.alive();
        return link.presence(frame.op, frame as any);
      case 'token_expired':
        link.alive();
        return link.expiring();
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
    refresh: (fresh) => {
      if (ws.readyState === OPEN) send({ op: 'refresh', token: fresh });
    },
    request: (frame) =>
      new Promise((resolve, reject) => {
        if (ws.readyState !== OPEN) return reject(new HeraldError('server_gone', 'The WebSocket is not open.'));
        pending.set(++lastId, [resolve, reject]);
        send({ ...frame, id: lastId });
      }),
  };
}
