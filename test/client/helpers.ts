// Test helpers for the client SDK: real clients (ws, eventsource, fetch) and small real TCP/HTTP proxies
// that misbehave on purpose. Nothing here mocks Herald.
import { once } from 'node:events';
import { createServer as createHttpServer, request, type Server as HttpServer } from 'node:http';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { Herald, type Envelope, type HeraldOptions, type ResetInfo, type StateChange, type TransportName } from '../../src/client/index.js';

export const TRANSPORTS: TransportName[] = ['websocket', 'sse', 'stream', 'longpoll'];

/** The server's metric label of each client transport. */
export const SERVER_NAME = { websocket: 'websocket', sse: 'sse', stream: 'stream', longpoll: 'poll', jsonp: 'poll', iframe: 'iframe' } as const;

/** A client on `transport` only, with Node's stand-ins for the browser APIs and quick reconnects. */
export function client(url: string, transport: TransportName, options: HeraldOptions = {}): Herald {
  return new Herald(url, {
    transports: [transport],
    WebSocket,
    EventSource,
    backoff: { initialMs: 50, maxMs: 300 },
    ...options,
  });
}

/** Everything one subscription receives, with promises that resolve as it arrives (no sleeps). */
export class Inbox {
  readonly messages: Envelope[] = [];
  readonly resets: ResetInfo[] = [];
  readonly #waiters = new Set<() => void>();

  readonly handlers = {
    onMessage: (message: Envelope) => {
      this.messages.push(message);
      this.#wake();
    },
    onReset: (info: ResetInfo) => {
      this.resets.push(info);
      this.#wake();
    },
  };

  get offsets(): number[] {
    return this.messages.map((m) => m.offset);
  }

  /** Resolves once `predicate` holds; rejects with what arrived after `timeoutMs`. */
  until(predicate: (inbox: Inbox) => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
    if (predicate(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate(this)) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; offsets so far: ${JSON.stringify(this.offsets)}`));
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  count(n: number, timeoutMs?: number): Promise<void> {
    return this.until((inbox) => inbox.messages.length >= n, timeoutMs, `${n} messages`);
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

/** Records every state change; `next(state)` resolves at the next change to that state (or now, if current). */
export function stateLog(herald: Herald): { changes: StateChange[]; reach(state: StateChange['state'], timeoutMs?: number): Promise<StateChange> } {
  const changes: StateChange[] = [];
  const waiters = new Set<(change: StateChange) => void>();
  herald.on('state', (change) => {
    changes.push(change);
    for (const waiter of [...waiters]) waiter(change);
  });
  return {
    changes,
    reach(state, timeoutMs = 10_000) {
      if (herald.state.state === state) return Promise.resolve(herald.state);
      return new Promise((resolve, reject) => {
        const waiter = (change: StateChange): void => {
          if (change.state !== state) return;
          waiters.delete(waiter);
          clearTimeout(timer);
          resolve(change);
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`state never became ${state}: ${JSON.stringify(changes)}`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
  };
}

/** Retries `check` every 10 ms until it passes (for server-side counters that settle asynchronously). */
export async function eventually(check: () => void, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

export async function publishOk(url: string, body: unknown): Promise<{ channel: string; offset: number; epoch: string }[]> {
  const response = await fetch(`${url}/v1/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (response.status !== 200) throw new Error(`publish answered ${response.status}: ${await response.text()}`);
  return ((await response.json()) as { results: { channel: string; offset: number; epoch: string }[] }).results;
}

/** A port free right now (for a server that must come back on the same port after a restart). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * A TCP proxy that can turn its current connections into black holes: bytes stop flowing both ways and
 * nothing is closed, like a NAT that forgot the flow or a laptop that changed networks. Connections
 * made after `freeze()` work normally.
 */
export async function blackHoleProxy(targetPort: number): Promise<{ url: string; freeze(): void; close(): Promise<void> }> {
  const pairs = new Set<{ client: Socket; upstream: Socket; isFrozen: boolean }>();
  const server: Server = createServer((clientSocket) => {
    const pair = { client: clientSocket, upstream: connect(targetPort, '127.0.0.1'), isFrozen: false };
    pairs.add(pair);
    const link = (from: Socket, to: Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (!pair.isFrozen) to.write(chunk);
      });
      from.on('close', () => {
        if (!pair.isFrozen) to.destroy();
      });
      from.on('error', () => {});
    };
    link(pair.client, pair.upstream);
    link(pair.upstream, pair.client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    freeze() {
      for (const pair of pairs) pair.isFrozen = true;
    },
    async close() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      server.close();
      await once(server, 'close');
    },
  };
}

/**
 * An HTTP proxy that forwards requests but refuses WebSocket upgrades, as some corporate proxies do:
 * an httpProxy with nothing changed on the way (its request log goes unused).
 */
export async function noUpgradeProxy(targetPort: number): Promise<{ url: string; close(): Promise<void> }> {
  return httpProxy(targetPort);
}

/** One request that went through an httpProxy. */
export interface ProxiedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  /** The client dropped it before its answer ended (an aborted poll, a closed stream). */
  isAborted: boolean;
  /** The server's status, once answered. */
  status?: number;
}

/**
 * An HTTP proxy that records every request and refuses WebSocket upgrades. `isBuffering`: it holds each
 * answer's body until the body ends or 64 KiB have gathered, passing the headers at once, as buffering
 * proxies and antivirus filters do: a stream's bytes never come, whole answers do. `rewrite` changes a
 * request's path on the way (as a balancer sending it to another node would make it unknown there);
 * `delayMs` holds a request that long before passing it on (a slow hop).
 */
export async function httpProxy(
  targetPort: number,
  options: { isBuffering?: boolean; rewrite?: (path: string) => string; delayMs?: (path: string) => number } = {},
): Promise<{ url: string; requests: ProxiedRequest[]; drop(): void; close(): Promise<void> }> {
  const requests: ProxiedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const server: HttpServer = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const record: ProxiedRequest = { method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, isAborted: false };
    requests.push(record);
    const forward = (): void => {
      if (res.destroyed) return;
      const path = options.rewrite?.(req.url ?? '/') ?? req.url;
      const upstream = request({ host: '127.0.0.1', port: targetPort, method: req.method, path, headers: req.headers }, (answer) => {
        record.status = answer.statusCode;
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        if (!options.isBuffering) return void answer.pipe(res);
        res.flushHeaders();
        let held: Buffer[] = [];
        let size = 0;
        answer.on('data', (chunk: Buffer) => {
          held.push(chunk);
          size += chunk.length;
          if (size < 64 * 1024) return;
          res.write(Buffer.concat(held));
          held = [];
          size = 0;
        });
        answer.on('end', () => res.end(Buffer.concat(held)));
      });
      upstream.on('error', () => res.destroy());
      res.on('close', () => upstream.destroy());
      req.pipe(upstream);
    };
    res.on('close', () => {
      if (!res.writableFinished) record.isAborted = true;
    });
    const delayMs = options.delayMs?.(url.pathname) ?? 0;
    if (delayMs === 0) return forward();
    const timer = setTimeout(() => {
      timers.delete(timer);
      forward();
    }, delayMs);
    timers.add(timer);
  });
  server.on('upgrade', (_req, socket) => {
    socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    /** Cuts every connection now, as a network change does; new ones get through. */
    drop() {
      server.closeAllConnections();
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
