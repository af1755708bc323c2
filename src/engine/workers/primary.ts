import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { pino, type Logger } from 'pino';
import { AggregatorRegistry, Registry, collectDefaultMetrics } from 'prom-client';
import { DEFAULT_CONFIG, type Config } from '../../config.js';
import type { Message } from '../../hub/message.js';
import { MAX_STATS_CHANNELS, TRANSPORTS, type Stats } from '../../metrics.js';
import { MemoryStore } from '../../store/memory.js';
import { SqliteStore } from '../../store/sqlite.js';
import { EmbeddedEngine } from '../embedded.js';
import { isRedisStore } from '../redis/url.js';
import { encodeBatch, encodeRead, encodeResults, isOurs, toWireError, type ToPrimary, type ToWorker } from './protocol.js';

/** Every worker must listen within this long at startup. */
const START_TIMEOUT_MS = 30_000;
/** Workers told to stop that have not exited after this long are killed. */
const STOP_TIMEOUT_MS = 10_000;
/** How long the primary waits for the workers' parts of /metrics or /v1/stats; the late are left out. */
const GATHER_TIMEOUT_MS = 3000;
/**
 * Batch bytes queued to one worker (not yet written to its pipe) past which its batches are dropped
 * until it drains: a stalled worker must not grow the primary without bound. Its ReplicaEngine finds
 * the gap (the next batch's offset, or its periodic check) and reads what it missed.
 */
const MAX_QUEUED_BYTES = 64 * 1024 * 1024;
/** A worker that dies within this long of its fork is replaced only after this long (no fork storm). */
const CRASH_LOOP_MS = 1000;
const RETENTION_SWEEP_MS = 60_000;

export interface RunningPrimary {
  /** Where every worker listens: one port, shared through node:cluster. */
  readonly url: string;
  /** Stops every worker (each closes its connections), then the store. */
  close(): Promise<void>;
}

interface Slot {
  readonly worker: Worker;
  readonly nodeId: string;
  readonly forkedAtMs: number;
  /** Its IPC listener is in place: it was sent the hello and gets every batch and bus notice. */
  isJoined: boolean;
  /** It listens and serves. */
  isReady: boolean;
  /** The channels it keeps windows of. */
  readonly channels: Set<string>;
  /** Batch bytes handed to its IPC channel and not yet written. */
  queuedBytes: number;
  isDropping: boolean;
}

interface Gather {
  readonly id: number;
  readonly requester: Slot;
  readonly requestId: number;
  readonly what: 'stats' | 'metrics';
  readonly waiting: Set<Slot>;
  readonly stats: Stats[];
  readonly metrics: unknown[][];
  readonly timer: NodeJS.Timeout;
}

/**
 * The primary process of `--workers N`: forks N workers that share one listening port (node:cluster),
 * replaces any that dies, and never serves HTTP itself. With the embedded store (sqlite, memory) it
 * owns the store: it alone assigns offsets, answers the workers' publishes and reads, and sends every
 * accepted batch to every worker once (encoded once, one IPC message per worker). It relays the
 * workers' control bus and gathers their stats and metrics. With Redis it only forks and gathers.
 */
export async function startPrimary(overrides: Partial<Config>, logger?: Logger): Promise<RunningPrimary> {
  const config: Config = { ...DEFAULT_CONFIG, ...overrides };
  const log = logger ?? pino({ level: config.logLevel }, pino.destination(2));
  const port = config.port === 0 ? await freePort(config.host) : config.port;
  const primary = new Primary(config, port, log);
  try {
    const url = await primary.start();
    log.info({ url, workers: config.workers, engine: primary.engineKind, dataDir: config.store === 'sqlite' ? config.dataDir : undefined }, 'herald started');
    return { url, close: () => primary.close() };
  } catch (err) {
    await primary.close();
    throw err;
  }
}

/** A port free on `host` now, for every worker to listen on (`--port 0`). */
async function freePort(host: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

class Primary {
  readonly #config: Config;
  readonly #port: number;
  readonly #log: Logger;
  readonly #engine: EmbeddedEngine | undefined;
  /** Shared by every worker, so a demo token one signs the others accept. */
  readonly #demoSecret = randomBytes(32).toString('base64url');
  readonly #slots = new Map<number, Slot>();
  readonly #byNodeId = new Map<string, Slot>();
  /** Channel → how many workers keep its window: those stay in the store's memory. */
  readonly #interest = new Map<string, number>();
  readonly #gathers = new Map<number, Gather>();
  /** This process's own metrics (its memory and CPU are the store's), summed with the workers'. */
  readonly #registry = new Registry();
  #nextGatherId = 0;
  #url: string | undefined;
  #isStopping = false;
  #sweep: NodeJS.Timeout | undefined;
  #onStartFailed: ((err: Error) => void) | undefined;
  #onReady: (() => void) | undefined;

  constructor(config: Config, port: number, log: Logger) {
    this.#config = config;
    this.#port = port;
    this.#log = log;
    collectDefaultMetrics({ register: this.#registry, prefix: 'herald_process_' });
    if (!isRedisStore(config.store)) {
      const retention = { maxMessages: config.historySize, ttlMs: config.historyTtlMs };
      const store = config.store === 'sqlite' ? new SqliteStore(config.dataDir, retention) : new MemoryStore(retention);
      this.#engine = new EmbeddedEngine(store);
      this.#engine.connect({ onMessages: (messages) => this.#fanOut(messages), onReset: () => {} });
      this.#sweep = setInterval(() => this.#engine!.sweep(Date.now(), (channel) => this.#interest.has(channel)), RETENTION_SWEEP_MS);
      this.#sweep.unref();
    }
  }

  get engineKind(): string {
    return this.#engine?.kind ?? (this.#config.store.startsWith('redis-cluster') ? 'redis-cluster' : 'redis');
  }

  /** Forks the workers; resolves with the URL once every one listens, rejects if one fails first. */
  start(): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`the workers did not all listen within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        this.#onStartFailed = this.#onReady = undefined;
        reject(err);
      };
      this.#onStartFailed = fail;
      this.#onReady = () => {
        const slots = [...this.#slots.values()];
        if (slots.length < this.#config.workers || !slots.every((s) => s.isReady)) return;
        clearTimeout(timer);
        this.#onStartFailed = this.#onReady = undefined;
        resolve(this.#url!);
      };
      for (let i = 0; i < this.#config.workers; i++) this.#fork();
    });
  }

  #fork(): void {
    const worker = cluster.fork();
    const slot: Slot = {
      worker,
      nodeId: `w${worker.id}`,
      forkedAtMs: Date.now(),
      isJoined: false,
      isReady: false,
      channels: new Set(),
      queuedBytes: 0,
      isDropping: false,
    };
    this.#slots.set(worker.id, slot);
    this.#byNodeId.set(slot.nodeId, slot);
    worker.on('message', (message: unknown) => {
      if (isOurs<ToPrimary>(message)) this.#onMessage(slot, message);
    });
    worker.on('exit', (code, signal) => this.#onExit(slot, code, signal));
    // An IPC write to a worker that just died; its exit follows.
    worker.on('error', (err) => this.#log.debug({ err: err.message, worker: worker.id }, 'worker ipc error'));
  }

  #send(slot: Slot, message: ToWorker): void {
    if (slot.worker.isConnected()) slot.worker.send(message, undefined, ignore);
  }

  #onMessage(slot: Slot, message: ToPrimary): void {
    switch (message.herald) {
      case 'join':
        slot.isJoined = true;
        return this.#send(slot, { herald: 'hello', nodeId: slot.nodeId, port: this.#port, demoSecret: this.#demoSecret });
      case 'ready':
        slot.isReady = true;
        this.#url ??= message.url;
        if (this.#onReady !== undefined) return this.#onReady();
        this.#log.info({ worker: slot.worker.id, pid: slot.worker.process.pid }, 'replacement worker serving');
        return;
      case 'exiting':
        slot.isReady = false;
        return;
      case 'publish':
        return void this.#publish(slot, message.id, message.batch);
      case 'read':
        return this.#read(slot, message.id, message.channel, message.after);
      case 'subscribe':
        for (const channel of message.channels) {
          if (slot.channels.has(channel)) continue;
          slot.channels.add(channel);
          this.#interest.set(channel, (this.#interest.get(channel) ?? 0) + 1);
        }
        return;
      case 'unsubscribe':
        for (const channel of message.channels) if (slot.channels.delete(channel)) this.#loseInterest(channel);
        return;
      case 'bus': {
        const notice: ToWorker = { herald: 'bus', from: slot.nodeId, topic: message.topic, payload: message.payload };
        if (message.to === undefined) for (const other of this.#slots.values()) if (other.isJoined) this.#send(other, notice);
        const target = message.to === undefined ? undefined : this.#byNodeId.get(message.to);
        if (target?.isJoined) this.#send(target, notice);
        return;
      }
      case 'totals':
        return this.#gather(slot, message.id, message.what);
      case 'gathered': {
        const gather = this.#gathers.get(message.id);
        if (gather === undefined || !gather.waiting.delete(slot)) return;
        if (message.stats !== undefined) gather.stats.push(message.stats);
        if (message.metrics !== undefined) gather.metrics.push(message.metrics);
        if (gather.waiting.size === 0) void this.#finishGather(gather);
        return;
      }
    }
  }

  async #publish(slot: Slot, id: number, batch: Parameters<EmbeddedEngine['publish']>[0]): Promise<void> {
    if (this.#engine === undefined) return this.#send(slot, { herald: 'answer', id, error: { code: 'internal', message: 'No embedded store here.' } });
    try {
      // The engine announces the fresh messages (#fanOut) before this resolves.
      const results = await this.#engine.publish(batch);
      this.#send(slot, { herald: 'answer', id, value: encodeResults(results) });
    } catch (err) {
      this.#log.error({ err }, 'publish failed');
      this.#send(slot, { herald: 'answer', id, error: toWireError(err) });
    }
  }

  #read(slot: Slot, id: number, channel: string, after: number): void {
    if (this.#engine === undefined) return this.#send(slot, { herald: 'answer', id, error: { code: 'internal', message: 'No embedded store here.' } });
    const log = this.#engine.store.log(channel);
    // Head 0: nothing was ever published (the log's epoch is a placeholder the store may forget).
    const epoch = log.headOffset === 0 ? undefined : log.epoch;
    this.#send(slot, { herald: 'answer', id, value: encodeRead(epoch, log.headOffset, log.after(after, Infinity)) });
  }

  /** One accepted batch to every worker: encoded once, the same string in each worker's one message. */
  #fanOut(messages: readonly Message[]): void {
    const batch = encodeBatch(messages);
    const notice: ToWorker = { herald: 'live', batch };
    const bytes = batch.length;
    for (const slot of this.#slots.values()) {
      if (!slot.isJoined || slot.isDropping || !slot.worker.isConnected()) continue;
      if (slot.queuedBytes > MAX_QUEUED_BYTES) {
        slot.isDropping = true;
        this.#log.warn({ worker: slot.worker.id, queuedBytes: slot.queuedBytes }, 'worker far behind: dropping batches to it until it drains');
        continue;
      }
      slot.queuedBytes += bytes;
      slot.worker.send(notice, undefined, () => this.#drained(slot, bytes));
    }
  }

  #drained(slot: Slot, bytes: number): void {
    slot.queuedBytes -= bytes;
    if (!slot.isDropping || slot.queuedBytes > MAX_QUEUED_BYTES / 2) return;
    slot.isDropping = false;
    this.#log.info({ worker: slot.worker.id }, 'worker caught up: it reads the batches it missed');
    this.#send(slot, { herald: 'lost' });
  }

  #loseInterest(channel: string): void {
    const count = (this.#interest.get(channel) ?? 1) - 1;
    if (count > 0) this.#interest.set(channel, count);
    else this.#interest.delete(channel);
  }

  /** Asks every serving worker for its part, then answers `requester` with the sum. */
  #gather(requester: Slot, requestId: number, what: 'stats' | 'metrics'): void {
    const id = this.#nextGatherId++;
    const waiting = new Set([...this.#slots.values()].filter((s) => s.isReady && s.worker.isConnected()));
    const gather: Gather = {
      id,
      requester,
      requestId,
      what,
      waiting,
      stats: [],
      metrics: [],
      timer: setTimeout(() => void this.#finishGather(gather), GATHER_TIMEOUT_MS),
    };
    this.#gathers.set(id, gather);
    for (const slot of waiting) this.#send(slot, { herald: 'gather', id, what });
    if (waiting.size === 0) void this.#finishGather(gather);
  }

  async #finishGather(gather: Gather): Promise<void> {
    if (!this.#gathers.delete(gather.id)) return; // finished already
    clearTimeout(gather.timer);
    const answer = (value: unknown): void => this.#send(gather.requester, { herald: 'answer', id: gather.requestId, value });
    try {
      if (gather.what === 'stats') return answer(this.#sumStats(gather.stats));
      const own = await this.#registry.getMetricsAsJSON();
      answer(await AggregatorRegistry.aggregate([...gather.metrics, own] as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics());
    } catch (err) {
      this.#log.error({ err }, 'gathering metrics failed');
      this.#send(gather.requester, { herald: 'answer', id: gather.requestId, error: toWireError(err) });
    }
  }

  /** Counts summed over the workers; channels are the store's (or, with Redis, the most any worker holds). */
  #sumStats(parts: readonly Stats[]): Stats {
    const perTransport = (): Stats['connections'] => Object.fromEntries(TRANSPORTS.map((t) => [t, 0])) as Stats['connections'];
    const total: Stats = { connections: perTransport(), channels: 0, subscriptions: 0, subscribers: {}, published: 0, delivered: perTransport() };
    const subscribers = new Map<string, number>();
    for (const part of parts) {
      for (const t of TRANSPORTS) {
        total.connections[t] += part.connections[t] ?? 0;
        total.delivered[t] += part.delivered[t] ?? 0;
      }
      total.channels = Math.max(total.channels, part.channels);
      total.subscriptions += part.subscriptions;
      total.published += part.published;
      for (const [channel, n] of Object.entries(part.subscribers)) subscribers.set(channel, (subscribers.get(channel) ?? 0) + n);
    }
    if (this.#engine !== undefined) total.channels = this.#engine.channelCount;
    total.subscribers = Object.fromEntries([...subscribers].sort((a, b) => b[1] - a[1]).slice(0, MAX_STATS_CHANNELS));
    return total;
  }

  #onExit(slot: Slot, code: number | null, signal: string | null): void {
    this.#slots.delete(slot.worker.id);
    this.#byNodeId.delete(slot.nodeId);
    for (const channel of slot.channels) this.#loseInterest(channel);
    for (const gather of this.#gathers.values()) {
      if (gather.waiting.delete(slot) && gather.waiting.size === 0) void this.#finishGather(gather);
    }
    if (this.#isStopping) return;
    if (this.#onStartFailed !== undefined) {
      this.#onStartFailed(new Error(`worker ${slot.worker.id} exited (${signal ?? `code ${code}`}) before it listened`));
      return;
    }
    const livedMs = Date.now() - slot.forkedAtMs;
    const delayMs = livedMs < CRASH_LOOP_MS ? CRASH_LOOP_MS : 0;
    this.#log.warn({ worker: slot.worker.id, pid: slot.worker.process.pid, code, signal, delayMs }, 'worker died: forking a replacement');
    setTimeout(() => {
      if (!this.#isStopping) this.#fork();
    }, delayMs);
  }

  async close(): Promise<void> {
    this.#isStopping = true;
    clearInterval(this.#sweep);
    const exits = [...this.#slots.values()].map(
      (slot) =>
        new Promise<void>((resolve) => {
          if (slot.worker.process.exitCode !== null || slot.worker.process.signalCode !== null) return resolve();
          slot.worker.process.once('exit', () => resolve());
          if (slot.isJoined) this.#send(slot, { herald: 'stop' });
          else slot.worker.process.kill('SIGTERM');
        }),
    );
    const timer = setTimeout(() => {
      for (const slot of this.#slots.values()) slot.worker.process.kill('SIGKILL');
    }, STOP_TIMEOUT_MS);
    await Promise.all(exits);
    clearTimeout(timer);
    for (const gather of this.#gathers.values()) clearTimeout(gather.timer);
    await this.#engine?.close();
  }
}

const ignore = (): void => {};
