import { HeraldError } from '../errors.js';
import type { Message } from '../hub/message.js';
import { ChannelLog, newEpoch } from '../store/channel-log.js';
import type { Retention } from '../store/store.js';
import type { AppendInput, AppendResult, ControlBus, Engine, EngineEvents, EngineHealth } from './engine.js';

/** What a node reads of one channel from where the truth is. */
export interface ChannelRead {
  /** Undefined: the engine holds nothing of the channel (never published to, expired, or lost). */
  epoch: string | undefined;
  /** The engine's head offset (0 when it holds nothing). */
  head: number;
  /** Every retained message with an offset past the one asked for, oldest first. */
  messages: Message[];
}

/** What the node is told by its backend. */
export interface BackendEvents {
  /** A live message of a subscribed channel. At most once: one may be lost, never reordered. */
  onLive(message: Message): void;
  /** The backend's fan-out connection was (re)established: anything may have been lost meanwhile. */
  onResubscribed(): void;
}

/**
 * Where the truth is, seen from one node: Redis, or the primary process of `--workers`. A backend
 * assigns offsets and fans out; it keeps no window (the ReplicaEngine does).
 */
export interface ReplicaBackend {
  readonly kind: string;
  readonly bus: ControlBus;
  listen(events: BackendEvents): void;
  /** Starts the channels' live fan-out to this node; resolves once established. */
  subscribe(channels: readonly string[]): Promise<void>;
  unsubscribe(channels: readonly string[]): void;
  read(channel: string, afterOffset: number): Promise<ChannelRead>;
  publish(batch: readonly AppendInput[], nowMs: number): Promise<AppendResult[]>;
  health(): EngineHealth;
  close(): Promise<void>;
}

export interface ReplicaOptions {
  /** How often each loaded channel's head is compared with the engine's (catches a silent loss). */
  checkIntervalMs: number;
  /** How long an unused window stays loaded (and subscribed) after its last subscriber left. */
  idleMs: number;
}

/** Live messages held for one channel while its window is read or repaired; past this, re-read instead. */
const MAX_HELD = 10_000;
/** Channel head checks started per timer tick at most. */
const MAX_CHECKS_PER_TICK = 200;
const TICK_MS = 1000;

interface Replica {
  log: ChannelLog;
  /** The epoch was made here: the engine had nothing of the channel when it was loaded. */
  isProvisional: boolean;
  /** Live messages held while a repair read is under way; undefined when live. */
  held: Message[] | undefined;
  /** More than MAX_HELD arrived during a repair: read again instead of applying the held ones. */
  didOverflow: boolean;
  isReading: boolean;
  lastUsedMs: number;
  lastCheckedMs: number;
}

/**
 * An Engine whose truth is elsewhere. Each node keeps a bounded window per active channel, fed by the
 * backend's fan-out, and never trusts the fan-out blindly: an offset jump, an epoch change, a
 * reconnect, or a periodic check finding the engine ahead makes it read the missing range before
 * anything newer is delivered (live messages are held meanwhile). So a lost fan-out message delays
 * delivery, never loses or reorders it; history that no longer reaches is told as a reset.
 */
export class ReplicaEngine implements Engine {
  readonly #backend: ReplicaBackend;
  readonly #retention: Retention;
  readonly #options: ReplicaOptions;
  readonly #replicas = new Map<string, Replica>();
  /** Channels being loaded: their live messages until the window exists. */
  readonly #loading = new Map<string, { done: Promise<void>; held: Message[] }>();
  #events: EngineEvents | undefined;
  #nowMs = Date.now();
  readonly #timer: NodeJS.Timeout;
  #isClosed = false;

  constructor(backend: ReplicaBackend, retention: Retention, options: ReplicaOptions) {
    this.#backend = backend;
    this.#retention = retention;
    this.#options = options;
    backend.listen({
      onLive: (message) => this.#onLive(message),
      onResubscribed: () => {
        for (const replica of this.#replicas.values()) replica.lastCheckedMs = 0;
        this.#checkDue();
      },
    });
    this.#timer = setInterval(() => {
      this.#nowMs = Date.now();
      this.#checkDue();
    }, TICK_MS);
    this.#timer.unref();
  }

  get kind(): string {
    return this.#backend.kind;
  }

  get bus(): ControlBus {
    return this.#backend.bus;
  }

  get channelCount(): number {
    return this.#replicas.size;
  }

  connect(events: EngineEvents): void {
    this.#events = events;
  }

  async publish(batch: readonly AppendInput[]): Promise<AppendResult[]> {
    const results = await this.#backend.publish(batch, Date.now());
    // The fan-out brings these too; applying them now lets this node's readers see them at once.
    const fresh = new Map<string, Message[]>();
    for (const { message, isDuplicate } of results) {
      if (isDuplicate) continue;
      let list = fresh.get(message.channel);
      if (list === undefined) fresh.set(message.channel, (list = []));
      list.push(message);
    }
    for (const [channel, messages] of fresh) {
      const replica = this.#replicas.get(channel);
      // Only what continues the window: a reply that overtook another node's fan-out is no gap to
      // repair, the fan-out brings those messages in order.
      const continues = replica?.log.epoch === messages[0]!.epoch && messages[0]!.offset === replica.log.headOffset + 1;
      if (replica !== undefined && replica.held === undefined && continues) this.#apply(replica, messages);
    }
    return results;
  }

  window(channel: string): ChannelLog | undefined {
    const replica = this.#replicas.get(channel);
    if (replica === undefined) return undefined;
    replica.lastUsedMs = this.#nowMs;
    return replica.log;
  }

  load(channels: readonly string[]): Promise<void> {
    const waits: Promise<void>[] = [];
    const fresh: string[] = [];
    for (const channel of new Set(channels)) {
      if (this.#replicas.has(channel)) continue;
      const loading = this.#loading.get(channel);
      if (loading !== undefined) waits.push(loading.done);
      else fresh.push(channel);
    }
    if (fresh.length > 0) {
      const done = this.#backend
        .subscribe(fresh)
        .then(() => Promise.all(fresh.map((channel) => this.#loadOne(channel))))
        .then(
          () => undefined,
          (err: unknown) => {
            for (const channel of fresh) this.#loading.delete(channel);
            this.#backend.unsubscribe(fresh.filter((channel) => !this.#replicas.has(channel)));
            throw toEngineError(err);
          },
        );
      for (const channel of fresh) this.#loading.set(channel, { done, held: [] });
      waits.push(done);
    }
    return Promise.all(waits).then(() => undefined);
  }

  async catchUp(channels: readonly string[]): Promise<void> {
    await Promise.all(
      channels.map(async (channel) => {
        const replica = this.#replicas.get(channel);
        if (replica !== undefined) await this.#refresh(channel, replica);
      }),
    ).catch((err: unknown) => {
      throw toEngineError(err);
    });
  }

  sweep(nowMs: number, isInUse: (channel: string) => boolean): void {
    const minPublishedAtMs = nowMs - this.#retention.ttlMs;
    const idle: string[] = [];
    for (const [channel, replica] of this.#replicas) {
      replica.log.trim(this.#retention.maxMessages, minPublishedAtMs);
      if (isInUse(channel)) replica.lastUsedMs = nowMs;
      else if (nowMs - replica.lastUsedMs >= this.#options.idleMs && !replica.isReading) idle.push(channel);
    }
    for (const channel of idle) this.#replicas.delete(channel);
    if (idle.length > 0) this.#backend.unsubscribe(idle);
  }

  health(): EngineHealth {
    return this.#backend.health();
  }

  async close(): Promise<void> {
    this.#isClosed = true;
    clearInterval(this.#timer);
    this.#events = undefined;
    this.#replicas.clear();
    await this.#backend.close();
  }

  async #loadOne(channel: string): Promise<void> {
    const read = await this.#backend.read(channel, 0);
    const held = this.#loading.get(channel)?.held ?? [];
    this.#loading.delete(channel);
    if (this.#isClosed) return;
    const replica: Replica = {
      log: this.#logFrom(channel, read),
      isProvisional: read.epoch === undefined,
      held: undefined,
      didOverflow: false,
      isReading: false,
      lastUsedMs: this.#nowMs,
      lastCheckedMs: Date.now(),
    };
    this.#replicas.set(channel, replica);
    if (held.length > 0) this.#apply(replica, held);
  }

  /** A window holding `read`'s messages; with none, starting after the engine's head. */
  #logFrom(channel: string, read: ChannelRead): ChannelLog {
    const minPublishedAtMs = Date.now() - this.#retention.ttlMs;
    const kept = read.messages.filter((m) => m.publishedAtMs >= minPublishedAtMs).slice(-this.#retention.maxMessages);
    const log = new ChannelLog(channel, read.epoch ?? newEpoch(), kept.length > 0 ? kept[0]!.offset - 1 : read.head);
    for (const message of kept) log.push(message);
    return log;
  }

  #onLive(message: Message): void {
    const loading = this.#loading.get(message.channel);
    if (loading !== undefined) {
      // Past the bound, dropping is safe: the window's read, or a repair it triggers, brings them.
      if (loading.held.length < MAX_HELD) loading.held.push(message);
      return;
    }
    const replica = this.#replicas.get(message.channel);
    if (replica === undefined) return; // unsubscribed meanwhile
    if (replica.held !== undefined) {
      this.#hold(replica, message);
      return;
    }
    this.#apply(replica, [message]);
  }

  #hold(replica: Replica, message: Message): void {
    if (replica.held!.length < MAX_HELD) replica.held!.push(message);
    else replica.didOverflow = true;
  }

  /**
   * Appends what continues the window and fans it out; anything else (a gap, another epoch) holds
   * the rest and starts a repair. Never delivers out of order.
   */
  #apply(replica: Replica, messages: readonly Message[]): void {
    const fresh: Message[] = [];
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i]!;
      const log = replica.log;
      if (message.epoch !== log.epoch && replica.isProvisional && log.headOffset === 0) {
        // Nothing was published when the window was loaded: the first epoch the engine made is ours.
        replica.log = new ChannelLog(log.channel, message.epoch, 0);
        replica.isProvisional = false;
      }
      if (message.epoch === replica.log.epoch && message.offset <= replica.log.headOffset) continue;
      if (message.epoch === replica.log.epoch && message.offset === replica.log.headOffset + 1) {
        replica.log.push(message);
        fresh.push(message);
        continue;
      }
      replica.held = [];
      for (const rest of messages.slice(i)) this.#hold(replica, rest);
      void this.#refresh(replica.log.channel, replica).catch(() => {}); // retried by the periodic check
      break;
    }
    if (fresh.length === 0) return;
    replica.log.trim(this.#retention.maxMessages, -Infinity);
    this.#events?.onMessages(fresh);
  }

  /** Reads what the engine has past the window's head and reconciles; then applies what was held. */
  async #refresh(channel: string, replica: Replica): Promise<void> {
    replica.isReading = true;
    // The window's head when the read is issued: live messages may move it on while the read is out.
    const after = replica.log.headOffset;
    let read: ChannelRead;
    try {
      read = await this.#backend.read(channel, after);
      // Another epoch, or a head behind ours: the window is rebuilt from all the engine retains.
      const startsOver = read.epoch !== undefined && (read.epoch !== replica.log.epoch || read.head < after);
      if (startsOver && after > 0) read = await this.#backend.read(channel, 0);
    } finally {
      replica.isReading = false;
    }
    replica.lastCheckedMs = Date.now();
    if (this.#replicas.get(channel) !== replica || this.#isClosed) return;
    this.#reconcile(replica, read, after);
    const held = replica.held;
    const didOverflow = replica.didOverflow;
    replica.held = undefined;
    replica.didOverflow = false;
    if (didOverflow) {
      replica.held = [];
      await this.#refresh(channel, replica);
    } else if (held !== undefined && held.length > 0) this.#apply(replica, held);
  }

  /** `readAfter`: the window's head when `read` was issued (what the engine must still hold). */
  #reconcile(replica: Replica, read: ChannelRead, readAfter: number): void {
    const log = replica.log;
    const channel = log.channel;
    // The engine holds nothing (flushed or expired) and nothing came since: the window stays, and
    // the next publish (a new epoch) is heard as a reset.
    if (read.epoch === undefined) return;
    if (read.epoch !== log.epoch) {
      const wasProvisional = replica.isProvisional && log.headOffset === 0;
      replica.log = this.#logFrom(channel, read);
      replica.isProvisional = false;
      if (!wasProvisional) this.#events?.onReset({ channel, epoch: read.epoch, from: replica.log.oldestOffset });
      if (read.messages.length > 0) this.#events?.onMessages(read.messages.filter((m) => m.offset >= replica.log.oldestOffset));
      return;
    }
    // (Behind the head the window reached meanwhile is only an older answer: a loss is behind readAfter.)
    if (read.head < readAfter) {
      // The engine lost acknowledged messages (a Cluster failover, a restore): its offsets past its
      // head will be reused, so subscribers past it must hear that their view no longer holds.
      replica.log = this.#logFrom(channel, read);
      this.#events?.onReset({ channel, epoch: read.epoch, from: read.head + 1 });
      return;
    }
    const next = read.messages.filter((m) => m.offset > log.headOffset);
    const first = next[0]?.offset ?? read.head + 1;
    if (first > log.headOffset + 1) {
      // Retention dropped messages this node never saw: the window starts over where history is.
      const missed = first - log.headOffset - 1;
      replica.log = new ChannelLog(channel, read.epoch, first - 1);
      for (const message of next) replica.log.push(message);
      this.#events?.onReset({ channel, epoch: read.epoch, from: first, missed });
      if (next.length > 0) this.#events?.onMessages(next);
      return;
    }
    if (next.length === 0) return;
    for (const message of next) log.push(message);
    log.trim(this.#retention.maxMessages, -Infinity);
    this.#events?.onMessages(next);
  }

  /** Compares the windows not checked for a period with the engine (a few per tick). */
  #checkDue(): void {
    const dueBefore = Date.now() - this.#options.checkIntervalMs;
    let started = 0;
    for (const [channel, replica] of this.#replicas) {
      if (started >= MAX_CHECKS_PER_TICK) break;
      if (replica.isReading || replica.lastCheckedMs > dueBefore) continue;
      started++;
      void this.#refresh(channel, replica).catch(() => {}); // the engine is down: the next tick retries
    }
  }
}

function toEngineError(err: unknown): HeraldError {
  if (err instanceof HeraldError) return err;
  return new HeraldError('engine_unavailable', `The message engine cannot be reached: ${(err as Error).message}`);
}
