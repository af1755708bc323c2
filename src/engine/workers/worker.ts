import cluster from 'node:cluster';
import { pino, type Logger } from 'pino';
import type { Registry } from 'prom-client';
import { DEFAULT_CONFIG, type Config } from '../../config.js';
import type { Hub } from '../../hub/hub.js';
import { nodeStats, type Counters, type ServerTotals, type Stats } from '../../metrics.js';
import type { Engine } from '../engine.js';
import { isRedisStore } from '../redis/url.js';
import { ReplicaEngine } from '../replica.js';
import { PrimaryLink, WorkerBackend } from './worker-backend.js';

/** Past this, a worker told to stop (or orphaned) exits whether or not its connections closed. */
const EXIT_GRACE_MS = 5000;

/** How a worker of `--workers` differs from a lone process; startHerald takes it (src/herald.ts). */
export interface WorkerRole {
  /**
   * The engine to run instead of the configured embedded store: the primary's, over IPC. Undefined
   * with Redis: each worker is then a Redis node like any other.
   */
  readonly engine: Engine | undefined;
  /** /metrics and /v1/stats over every worker; answers the primary's gathers with this worker's own. */
  totals(hub: Hub, counters: Counters, registry: Registry): ServerTotals;
}

export interface JoinedWorker {
  /** The configuration with what the primary decided: the shared port and demo key. */
  readonly config: Partial<Config>;
  readonly logger: Logger;
  readonly role: WorkerRole;
  /** Tells the primary this worker serves, and hands it the server to close when told to stop. */
  serve(herald: { url: string; close(): Promise<void> }): void;
}

/**
 * Runs in a worker process (cluster.isWorker): waits for the primary's hello (port, node id, demo key),
 * then gives what startHerald needs to serve as one of the workers.
 */
export async function joinPrimary(overrides: Partial<Config>): Promise<JoinedWorker> {
  const config: Config = { ...DEFAULT_CONFIG, ...overrides };
  const link = new PrimaryLink();
  const hello = await new Promise<{ nodeId: string; port: number; demoSecret: string }>((resolve) => {
    link.on('hello', resolve);
    link.send({ herald: 'join' });
  });
  const logger = pino({ level: config.logLevel }, pino.destination(2)).child({ worker: cluster.worker?.id });
  const retention = { maxMessages: config.historySize, ttlMs: config.historyTtlMs };
  // IPC loses nothing while both ends live, and the primary tells when it dropped batches to this
  // worker: the periodic check is a last resort.
  const engine = isRedisStore(config.store) ? undefined : new ReplicaEngine(new WorkerBackend(link, hello.nodeId), retention, { checkIntervalMs: 30_000, idleMs: 30_000 });

  let herald: { close(): Promise<void> } | undefined;
  let isExiting = false;
  const exit = (): void => {
    if (isExiting) return;
    isExiting = true;
    setTimeout(() => process.exit(0), EXIT_GRACE_MS).unref();
    // The last notices (presence leaving, say) reach the primary before the exit.
    void (herald?.close() ?? Promise.resolve())
      .then(() => link.exiting())
      .finally(() => process.exit(0));
  };
  link.on('stop', exit);
  // The primary is gone (killed, crashed): nobody would route publishes or replace this worker.
  process.on('disconnect', exit);
  // Ctrl-C reaches the whole process group: the primary stops the workers in order.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', exit);

  return {
    config: { ...overrides, port: hello.port, demoSecret: hello.demoSecret },
    logger,
    role: {
      engine,
      totals(hub, counters, registry) {
        link.on('gather', ({ id, what }) => {
          if (what === 'stats') link.send({ herald: 'gathered', id, stats: nodeStats(hub, counters) });
          else {
            registry.getMetricsAsJSON().then(
              (metrics) => link.send({ herald: 'gathered', id, metrics }),
              () => link.send({ herald: 'gathered', id, metrics: [] }),
            );
          }
        });
        return {
          metrics: () => link.request<string>({ herald: 'totals', what: 'metrics' }),
          stats: () => link.request<Stats>({ herald: 'totals', what: 'stats' }),
        };
      },
    },
    serve(running) {
      herald = running;
      link.send({ herald: 'ready', url: running.url });
    },
  };
}
