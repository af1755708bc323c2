import { Message } from '../hub/message.js';
import { ChannelLog, newEpoch } from './channel-log.js';
import type { AppendInput, AppendResult, Retention, Store } from './store.js';

/**
 * A volatile store: the in-memory windows alone. Its epochs are new on every start, so clients that
 * resume across a restart are told their history is gone instead of being silently skipped.
 * SqliteStore extends it with durability through the two hooks below.
 */
export class MemoryStore implements Store {
  readonly kind: string = 'memory';
  protected readonly logs = new Map<string, ChannelLog>();
  protected readonly retention: Retention;

  constructor(retention: Retention) {
    this.retention = retention;
  }

  get channelCount(): number {
    return this.logs.size;
  }

  log(channel: string): ChannelLog {
    let log = this.logs.get(channel);
    if (log === undefined) {
      log = this.loadLog(channel);
      this.logs.set(channel, log);
    }
    return log;
  }

  async append(batch: readonly AppendInput[]): Promise<AppendResult[]> {
    return this.appendNow(batch, Date.now());
  }

  protected appendNow(batch: readonly AppendInput[], nowMs: number): AppendResult[] {
    // Plan every offset first, so a failure while persisting leaves the windows untouched.
    const planned = new Map<string, number>();
    const pending = new Map<string, Message>();
    const results: AppendResult[] = [];
    const fresh: Message[] = [];
    for (const input of batch) {
      const log = this.log(input.channel);
      const key = input.idempotencyKey;
      if (key !== undefined) {
        const original = log.offsetForIdempotencyKey(key);
        if (original !== undefined) {
          results.push({ message: log.after(original - 1, 1)[0]!, isDuplicate: true });
          continue;
        }
        const inBatch = pending.get(`${input.channel}\n${key}`);
        if (inBatch !== undefined) {
          results.push({ message: inBatch, isDuplicate: true });
          continue;
        }
      }
      const offset = (planned.get(input.channel) ?? log.headOffset) + 1;
      planned.set(input.channel, offset);
      const message = new Message({
        channel: input.channel,
        offset,
        epoch: log.epoch,
        event: input.event,
        dataJson: input.dataJson,
        publishedAtMs: nowMs,
        idempotencyKey: key,
      });
      if (key !== undefined) pending.set(`${input.channel}\n${key}`, message);
      results.push({ message, isDuplicate: false });
      fresh.push(message);
    }
    if (fresh.length > 0) this.persist(fresh, planned);
    for (const message of fresh) this.log(message.channel).push(message);
    for (const channel of planned.keys()) this.log(channel).trim(this.retention.maxMessages, -Infinity);
    return results;
  }

  sweep(nowMs: number, isInUse: (channel: string) => boolean): void {
    const minPublishedAtMs = nowMs - this.retention.ttlMs;
    for (const log of this.logs.values()) {
      this.trimExpired(log, minPublishedAtMs);
      if (!isInUse(log.channel) && this.isEvictable(log)) this.logs.delete(log.channel);
    }
  }

  protected trimExpired(log: ChannelLog, minPublishedAtMs: number): void {
    log.trim(this.retention.maxMessages, minPublishedAtMs);
  }

  /**
   * Whether an unused window may leave memory. Here only if nothing was ever published to it (it
   * holds no history, only an epoch that "saw nothing" positions ignore), so subscribing to random
   * names cannot grow memory.
   */
  protected isEvictable(log: ChannelLog): boolean {
    return log.headOffset === 0;
  }

  close(): void {
    this.logs.clear();
  }

  /** Builds the window of a channel not in memory yet. */
  protected loadLog(channel: string): ChannelLog {
    return new ChannelLog(channel, newEpoch());
  }

  /** Makes `messages` durable before they become visible; throwing aborts the whole batch. */
  protected persist(_messages: readonly Message[], _headOffsets: ReadonlyMap<string, number>): void {}
}
