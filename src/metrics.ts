import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Hub } from './hub/hub.js';

export const TRANSPORTS = ['websocket', 'sse', 'stream', 'iframe', 'poll'] as const;
export type TransportName = (typeof TRANSPORTS)[number];

const perTransport = (): Record<TransportName, number> => ({ websocket: 0, sse: 0, stream: 0, iframe: 0, poll: 0 });

/**
 * Plain numbers bumped on the hot path; prom-client reads them only when /metrics is scraped, so a
 * delivery costs an integer increment, not a label lookup.
 */
export class Counters {
  /** Open connections (held requests for polling). */
  connections = perTransport();
  delivered = perTransport();
  slowConsumerCuts = perTransport();
  published = 0;
  resets = 0;
  /** Live soft sessions of the HTTP listen transports (src/transports/sessions.ts). */
  sessions = 0;
}

/** What GET /v1/stats answers. */
export interface Stats {
  connections: Record<TransportName, number>;
  channels: number;
  subscriptions: number;
  /** The busiest channels, with their subscriber counts. */
  subscribers: Record<string, number>;
  published: number;
  delivered: Record<TransportName, number>;
}

/** A server with a million channels should not answer with a million rows. */
export const MAX_STATS_CHANNELS = 1000;

/** This process's stats. */
export function nodeStats(hub: Hub, counters: Counters): Stats {
  const subscribers = [...hub.subscriberCounts()].sort((a, b) => b[1] - a[1]);
  return {
    connections: counters.connections,
    channels: hub.engine.channelCount,
    subscriptions: hub.subscriptionCount,
    subscribers: Object.fromEntries(subscribers.slice(0, MAX_STATS_CHANNELS)),
    published: counters.published,
    delivered: counters.delivered,
  };
}

/**
 * /metrics and /v1/stats of a server made of several processes (`--workers`): a worker asks the
 * primary, which gathers every worker's (src/engine/workers/). A lone process has none.
 */
export interface ServerTotals {
  /** Prometheus text over every process. */
  metrics(): Promise<string>;
  stats(): Promise<Stats>;
}

export function createRegistry(counters: Counters, subscriptions: () => number): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'herald_process_' });
  new Gauge({
    name: 'herald_connections',
    help: 'Open client connections (held requests for polling), by transport.',
    labelNames: ['transport'],
    registers: [registry],
    collect() {
      for (const t of TRANSPORTS) this.set({ transport: t }, counters.connections[t]);
    },
  });
  new Gauge({
    name: 'herald_subscriptions',
    help: 'Channel subscriptions held by live connections on this node.',
    registers: [registry],
    collect() {
      this.set(subscriptions());
    },
  });
  new Gauge({
    name: 'herald_sessions',
    help: 'Live sessions of the HTTP listen transports on this node.',
    registers: [registry],
    collect() {
      this.set(counters.sessions);
    },
  });
  monotonic(registry, 'herald_messages_published_total', 'Messages accepted into the store.', () => counters.published);
  monotonic(registry, 'herald_resets_total', 'Reset notices sent (a cursor older than history).', () => counters.resets);
  perTransportCounter(registry, 'herald_messages_delivered_total', 'Messages written to clients.', counters.delivered);
  perTransportCounter(
    registry,
    'herald_slow_consumer_disconnects_total',
    'Connections cut because they read too slowly.',
    counters.slowConsumerCuts,
  );
  return registry;
}

function monotonic(registry: Registry, name: string, help: string, read: () => number): void {
  let reported = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read();
      this.inc(now - reported);
      reported = now;
    },
  });
}

function perTransportCounter(registry: Registry, name: string, help: string, values: Record<TransportName, number>): void {
  const reported = perTransport();
  new Counter({
    name,
    help,
    labelNames: ['transport'],
    registers: [registry],
    collect() {
      for (const t of TRANSPORTS) {
        this.inc({ transport: t }, values[t] - reported[t]);
        reported[t] = values[t];
      }
    },
  });
}
