import { randomBytes } from 'node:crypto';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { HeraldError } from '../../errors.js';
import { Message } from '../../hub/message.js';
import { newEpoch } from '../../store/channel-log.js';
import type { Retention } from '../../store/store.js';
import { PartialPublishError, type AppendInput, type AppendResult, type ControlBus, type EngineHealth } from '../engine.js';
import { ReplicaEngine, type BackendEvents, type ChannelRead, type ReplicaBackend } from '../replica.js';
import { PUBLISH_SCRIPT, READ_SCRIPT, channelKeys, fanOutChannel } from './scripts.js';
import { parseRedisUrl, type RedisTarget } from './url.js';

/** A command Redis has not answered in this long fails (and a publish answers 503). */
const COMMAND_TIMEOUT_MS = 2000;
const CONNECT_TIMEOUT_MS = 10_000;
const PING_MS = 1000;
/** Channels per SSUBSCRIBE on standalone Redis (a Cluster takes one per command: slots differ). */
const SUBSCRIBE_BATCH = 500;
const BUS_CHANNEL = 'herald:bus';
const FAN_OUT_PREFIX = 'herald:{';

type Client = Redis | Cluster;
interface ScriptedClient {
  heraldPublish(numberOfKeys: number, ...keysAndArgs: (string | number)[]): Promise<(number | string)[]>;
  heraldRead(numberOfKeys: number, ...keysAndArgs: (string | number)[]): Promise<[string | null, number, [string, string[]][]]>;
}

/**
 * Redis (standalone or Cluster) as the engine: one script per publish assigns offsets, appends to the
 * channel's stream, checks idempotency and fans out, atomically; every node keeps windows as a cache
 * (ReplicaEngine). Any number of nodes on the same Redis are one service.
 */
export async function connectRedisEngine(url: string, retention: Retention, logger: Logger): Promise<ReplicaEngine> {
  const backend = new RedisBackend(parseRedisUrl(url), retention, logger);
  await backend.connect();
  return new ReplicaEngine(backend, retention, { checkIntervalMs: 10_000, idleMs: 30_000 });
}

class RedisBackend implements ReplicaBackend {
  readonly kind: string;
  readonly bus: RedisBus;
  readonly #target: RedisTarget;
  readonly #retention: Retention;
  readonly #logger: Logger;
  /** Commands and scripts. */
  readonly #commands: Client;
  /** Sharded subscriptions of the channels with local subscribers. */
  readonly #subscriber: Client;
  /** The control bus (classic pub/sub: it reaches every node of a Cluster). */
  readonly #busSubscriber: Client;
  #events: BackendEvents | undefined;
  #isReachable = true;
  #pinger: NodeJS.Timeout | undefined;

  constructor(target: RedisTarget, retention: Retention, logger: Logger) {
    this.#target = target;
    this.#retention = retention;
    this.#logger = logger;
    this.kind = target.isCluster ? 'redis-cluster' : 'redis';
    this.#commands = this.#client(false, true);
    this.#subscriber = this.#client(true, false);
    this.#busSubscriber = this.#client(false, false);
    for (const client of [this.#commands, this.#subscriber, this.#busSubscriber]) {
      client.defineCommand('heraldPublish', { lua: PUBLISH_SCRIPT });
      client.defineCommand('heraldRead', { lua: READ_SCRIPT });
      // ioredis reconnects by itself; errors are reported through health and failed commands.
      client.on('error', (err: Error) => this.#logger.debug({ err: err.message }, 'redis connection error'));
    }
    this.bus = new RedisBus(this.#commands, this.#busSubscriber);
  }

  /** `isPipelined`: concurrent commands (publishes, window reads) share one write to the socket. */
  #client(isShardedSubscriber: boolean, isPipelined: boolean): Client {
    const { nodes, username, password, db, tls, isCluster } = this.#target;
    const options: RedisOptions = {
      username,
      password,
      lazyConnect: true,
      commandTimeout: COMMAND_TIMEOUT_MS,
      maxRetriesPerRequest: 0, // a command in flight when the connection drops fails (it may have run): never re-sent, a publish script is not idempotent
      connectTimeout: CONNECT_TIMEOUT_MS,
      ...(tls ? { tls: {} } : {}),
    };
    if (isCluster) {
      return new Cluster(nodes, {
        lazyConnect: true,
        enableAutoPipelining: false, // ioredis would group script calls by their first argument (the key count), not their slot: mixed slots fail
        enableOfflineQueue: false,
        shardedSubscribers: isShardedSubscriber,
        clusterRetryStrategy: (times) => Math.min(100 * times, 1000),
        redisOptions: options,
      });
    }
    return new Redis({
      ...options,
      host: nodes[0]!.host,
      port: nodes[0]!.port,
      db,
      enableAutoPipelining: isPipelined,
      enableOfflineQueue: false,
      retryStrategy: (times) => Math.min(100 * times, 1000),
    });
  }

  async connect(): Promise<void> {
    const where = this.#target.nodes.map((n) => `${n.host}:${n.port}`).join(',');
    const timeout = new Promise<never>((_, reject) => {
      setTimeout(() => reject(new Error(`cannot reach Redis at ${where} within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS).unref();
    });
    try {
      await Promise.race([Promise.all([this.#commands.connect(), this.#subscriber.connect(), this.#busSubscriber.connect()]), timeout]);
      await this.bus.start();
    } catch (err) {
      this.#commands.disconnect();
      this.#subscriber.disconnect();
      this.#busSubscriber.disconnect();
      throw new Error(`the Redis engine at ${where} is unreachable: ${(err as Error).message}`);
    }
    this.#subscriber.on('smessage', (name: string, payload: string) => this.#onFanOut(name, payload));
    // A fan-out connection that came back may have missed messages: the engine re-checks every window.
    // (Registered after the first connect: every later event is a reconnect.)
    this.#subscriber.on(this.#target.isCluster ? 'subscribersReady' : 'ready', () => this.#events?.onResubscribed());
    this.#pinger = setInterval(() => {
      this.#commands.ping().then(
        () => void (this.#isReachable = true),
        () => void (this.#isReachable = false),
      );
    }, PING_MS);
    this.#pinger.unref();
  }

  listen(events: BackendEvents): void {
    this.#events = events;
  }

  async subscribe(channels: readonly string[]): Promise<void> {
    const names = channels.map(fanOutChannel);
    if (this.#target.isCluster) {
      await Promise.all(names.map((name) => this.#subscriber.ssubscribe(name)));
      return;
    }
    for (let i = 0; i < names.length; i += SUBSCRIBE_BATCH) await this.#subscriber.ssubscribe(...names.slice(i, i + SUBSCRIBE_BATCH));
  }

  unsubscribe(channels: readonly string[]): void {
    const names = channels.map(fanOutChannel);
    const ignore = (): void => {}; // a dropped connection has no subscriptions to end
    if (this.#target.isCluster) for (const name of names) this.#subscriber.sunsubscribe(name).catch(ignore);
    else for (let i = 0; i < names.length; i += SUBSCRIBE_BATCH) this.#subscriber.sunsubscribe(...names.slice(i, i + SUBSCRIBE_BATCH)).catch(ignore);
  }

  async read(channel: string, afterOffset: number): Promise<ChannelRead> {
    const [meta, log] = channelKeys(channel);
    const [epoch, head, entries] = await (this.#commands as unknown as ScriptedClient).heraldRead(2, meta, log, afterOffset);
    if (epoch === null) return { epoch: undefined, head: 0, messages: [] };
    const messages = entries.map(([id, fields]) => {
      const values = new Map<string, string>();
      for (let i = 0; i < fields.length; i += 2) values.set(fields[i]!, fields[i + 1]!);
      return new Message({
        channel,
        offset: Number.parseInt(id, 10),
        epoch,
        event: values.get('e'),
        dataJson: values.get('d') ?? 'null',
        publishedAtMs: Number(values.get('t')),
      });
    });
    return { epoch, head: Number(head), messages };
  }

  /**
   * Standalone: one script call for the whole batch (all or nothing). Cluster: one call per channel
   * (atomic per channel); if some fail, a PartialPublishError says which messages were stored.
   */
  async publish(batch: readonly AppendInput[], nowMs: number): Promise<AppendResult[]> {
    const groups = new Map<string, number[]>();
    batch.forEach((input, index) => {
      let group = groups.get(input.channel);
      if (group === undefined) groups.set(input.channel, (group = []));
      group.push(index);
    });
    const calls = this.#target.isCluster ? [...groups].map(([channel, indexes]) => new Map([[channel, indexes]])) : [groups];
    const results: (AppendResult | undefined)[] = new Array(batch.length);
    const outcomes = await Promise.allSettled(calls.map((call) => this.#publishCall(batch, call, nowMs, results)));
    const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failure === undefined) return results as AppendResult[];
    const detail = (failure.reason as Error).message;
    this.#logger.warn({ err: detail }, 'publish to redis failed');
    if (results.every((r) => r === undefined)) throw new HeraldError('engine_unavailable', `Not acknowledged (if Redis was only slow it may still store it: retry with the same idempotencyKey): ${detail}`);
    throw new PartialPublishError(results, batch.map((input) => input.channel), detail);
  }

  async #publishCall(batch: readonly AppendInput[], groups: ReadonlyMap<string, number[]>, nowMs: number, results: (AppendResult | undefined)[]): Promise<void> {
    const channels = [...groups.keys()];
    const keys = channels.flatMap(channelKeys);
    const args: (string | number)[] = [nowMs, Math.max(1, Math.ceil(this.#retention.ttlMs / 1000)), this.#retention.maxMessages];
    for (let c = 0; c < channels.length; c++) args.push(newEpoch());
    const order: number[] = [];
    channels.forEach((channel, c) => {
      for (const index of groups.get(channel)!) {
        const input = batch[index]!;
        args.push(c + 1, input.event ?? '', input.dataJson, input.idempotencyKey ?? '');
        order.push(index);
      }
    });
    const reply = await (this.#commands as unknown as ScriptedClient).heraldPublish(keys.length, ...keys, ...args);
    const epochs = new Map(channels.map((channel, c) => [channel, String(reply[order.length * 2 + c])]));
    order.forEach((index, i) => {
      const input = batch[index]!;
      results[index] = {
        message: new Message({
          channel: input.channel,
          offset: Number(reply[2 * i]),
          epoch: epochs.get(input.channel)!,
          event: input.event,
          dataJson: input.dataJson,
          publishedAtMs: nowMs,
          idempotencyKey: input.idempotencyKey,
        }),
        isDuplicate: reply[2 * i + 1] === 1,
      };
    });
  }

  /** `herald:{channel}` ← "epoch\n" + "offset,publishedAtMs,event,data" lines. */
  #onFanOut(name: string, payload: string): void {
    if (!name.startsWith(FAN_OUT_PREFIX)) return;
    const channel = name.slice(FAN_OUT_PREFIX.length, -1);
    const lines = payload.split('\n');
    const epoch = lines[0]!;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const a = line.indexOf(',');
      const b = line.indexOf(',', a + 1);
      const c = line.indexOf(',', b + 1);
      const event = line.slice(b + 1, c);
      this.#events?.onLive(
        new Message({
          channel,
          offset: Number(line.slice(0, a)),
          epoch,
          event: event === '' ? undefined : event,
          dataJson: line.slice(c + 1),
          publishedAtMs: Number(line.slice(a + 1, b)),
        }),
      );
    }
  }

  health(): EngineHealth {
    if (this.#isReachable && this.#commands.status === 'ready') return { status: 'ok' };
    return { status: 'degraded', reason: 'redis_unreachable' };
  }

  async close(): Promise<void> {
    clearInterval(this.#pinger);
    await Promise.allSettled([this.#commands.quit(), this.#subscriber.quit(), this.#busSubscriber.quit()]);
  }
}

/** The control bus over classic pub/sub: `herald:bus` to all, `herald:node:<id>` to one. */
class RedisBus implements ControlBus {
  readonly nodeId = `n${randomBytes(6).toString('hex')}`;
  readonly #publisher: Client;
  readonly #subscriber: Client;
  readonly #handlers = new Map<string, (payload: string, fromNodeId: string) => void>();

  constructor(publisher: Client, subscriber: Client) {
    this.#publisher = publisher;
    this.#subscriber = subscriber;
  }

  async start(): Promise<void> {
    this.#subscriber.on('message', (_channel: string, message: string) => {
      const first = message.indexOf('\n');
      const second = message.indexOf('\n', first + 1);
      this.#handlers.get(message.slice(0, first))?.(message.slice(second + 1), message.slice(first + 1, second));
    });
    await this.#subscriber.subscribe(BUS_CHANNEL, `herald:node:${this.nodeId}`);
  }

  broadcast(topic: string, payload: string): void {
    this.#send(BUS_CHANNEL, topic, payload);
  }

  sendTo(nodeId: string, topic: string, payload: string): void {
    this.#send(`herald:node:${nodeId}`, topic, payload);
  }

  #send(channel: string, topic: string, payload: string): void {
    this.#publisher.publish(channel, `${topic}\n${this.nodeId}\n${payload}`).catch(() => {}); // best effort
  }

  on(topic: string, handler: (payload: string, fromNodeId: string) => void): void {
    this.#handlers.set(topic, handler);
  }
}
