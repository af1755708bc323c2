import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { Authenticator } from './auth/authenticator.js';
import { ExpirySchedule } from './auth/expiry.js';
import { RateLimiter } from './auth/rate-limit.js';
import { PresenceFanOut } from './presence/fan-out.js';
import { createPresence } from './presence/shared.js';
import { DEFAULT_CONFIG, type Config } from './config.js';
import { createEdge } from './http/server.js';
import { Hub } from './hub/hub.js';
import { Counters, createRegistry } from './metrics.js';
import { MemoryStore } from './store/memory.js';
import { SqliteStore } from './store/sqlite.js';
import { EmbeddedEngine } from './engine/embedded.js';
import { isRedisStore } from './engine/redis/url.js';
import type { Engine } from './engine/engine.js';
import type { WorkerRole } from './engine/workers/worker.js';
import { HttpStreamTransport } from './transports/http-stream.js';
import { IframeTransport } from './transports/iframe.js';
import { LongPollTransport } from './transports/long-poll.js';
import { SseTransport } from './transports/sse.js';
import { connectSessionRelay } from './transports/session-relay.js';
import { SessionRegistry } from './transports/sessions.js';
import type { Transport, TransportContext } from './transports/transport.js';
import { WebSocketTransport } from './transports/websocket.js';

/** The sweep that drives heartbeats, poll deadlines and retention: one timer for the whole server. */
const SWEEP_MS = 250;
const RETENTION_SWEEP_MS = 60_000;
const PRESENCE_SWEEP_MS = 1000;

export interface RunningHerald {
  readonly url: string;
  readonly port: number;
  readonly hub: Hub;
  readonly counters: Counters;
  close(): Promise<void>;
}

async function createEngine(config: Config, log: Logger): Promise<Engine> {
  const retention = { maxMessages: config.historySize, ttlMs: config.historyTtlMs };
  if (config.store === 'memory') return new EmbeddedEngine(new MemoryStore(retention));
  if (config.store === 'sqlite') return new EmbeddedEngine(new SqliteStore(config.dataDir, retention));
  if (!isRedisStore(config.store)) throw new Error(`unknown store ${JSON.stringify(config.store)}`);
  // Loaded only when used: a single node never opens a Redis client.
  const { connectRedisEngine } = await import('./engine/redis/redis-engine.js');
  return connectRedisEngine(config.store, retention, log);
}

/**
 * Wires store → broker → hub → transports → HTTP edge, and listens. `role`: this process is one worker
 * of `--workers` (src/engine/workers/worker.ts); none when it is alone.
 */
export async function startHerald(overrides: Partial<Config> = {}, logger?: Logger, role?: WorkerRole): Promise<RunningHerald> {
  const config: Config = { ...DEFAULT_CONFIG, ...overrides };
  const log = logger ?? pino({ level: config.logLevel }, pino.destination(2));
  // Bad token configuration (short secret, unreadable key, bad JWKS URL) fails here, at startup.
  const auth = new Authenticator(config);
  const expiry = new ExpirySchedule();
  const counters = new Counters();
  const engine = role?.engine ?? (await createEngine(config, log));
  const hub = new Hub(engine, counters);
  // In memory on a single node; replicated over the engine's bus when nodes share an engine.
  const { presence, close: closePresence } = createPresence(engine, config.presenceTimeoutMs, log);
  const presenceFanOut = new PresenceFanOut(presence);
  const sessions = new SessionRegistry(presenceFanOut, config.sessionIdleMs, counters);
  connectSessionRelay(engine.bus, sessions, hub, log); // sessions of other nodes sharing the engine, over its bus
  const ctx: TransportContext = { hub, config, counters, logger: log, auth, expiry, presence, presenceFanOut, sessions };
  const httpTransports = {
    '/v1/sse': new SseTransport(ctx),
    '/v1/stream': new HttpStreamTransport(ctx),
    '/v1/iframe': new IframeTransport(ctx),
    '/v1/poll': new LongPollTransport(ctx),
  };
  const websocket = new WebSocketTransport(ctx);
  const transports: Transport[] = [...Object.values(httpTransports), websocket];
  const registry = createRegistry(counters, () => hub.subscriptionCount);
  const clientLimiter = new RateLimiter(config.clientPublishRate);
  const totals = role?.totals(hub, counters, registry);
  const server = createEdge({ config, hub, counters, registry, logger: log, httpTransports, websocket, auth, clientLimiter, presence, sessions, totals });

  let lastRetentionSweepMs = Date.now();
  let lastPresenceSweepMs = Date.now();
  const sweep = setInterval(() => {
    const nowMs = Date.now();
    for (const transport of transports) transport.tick(nowMs);
    expiry.tick(nowMs);
    sessions.tick(nowMs);
    if (nowMs - lastPresenceSweepMs >= PRESENCE_SWEEP_MS) {
      lastPresenceSweepMs = nowMs;
      presence.sweep(nowMs);
    }
    if (nowMs - lastRetentionSweepMs >= RETENTION_SWEEP_MS) {
      lastRetentionSweepMs = nowMs;
      hub.sweep(nowMs);
    }
  }, SWEEP_MS);
  sweep.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  log.info({ url, engine: engine.kind, dataDir: config.store === 'sqlite' ? config.dataDir : undefined }, 'herald started');

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    hub,
    counters,
    close() {
      closing ??= (async () => {
        clearInterval(sweep);
        closePresence(); // before the connections close: the other nodes drop this node's users at once
        for (const transport of transports) transport.closeAll();
        sessions.closeAll();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await engine.close();
      })();
      return closing;
    },
  };
}
