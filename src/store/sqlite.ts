import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Message } from '../hub/message.js';
import { ChannelLog, newEpoch } from './channel-log.js';
import { MemoryStore } from './memory.js';
import type { Retention } from './store.js';

/**
 * The default, durable store: the in-memory windows of MemoryStore, written through to SQLite in WAL
 * mode. A publish is answered only after its transaction commits, so an accepted message survives a
 * SIGKILL of the server. With synchronous=NORMAL the commit is not fsynced: a power loss or kernel
 * crash can lose the last transactions (SQLite stays consistent); the channel's head then moves back
 * and resuming clients get a reset notice (docs/protocol.md).
 */
export class SqliteStore extends MemoryStore {
  override readonly kind = 'sqlite';
  readonly #db: Database.Database;
  readonly #insertMessage: Database.Statement;
  readonly #upsertChannel: Database.Statement;
  readonly #deleteThrough: Database.Statement;
  readonly #selectChannel: Database.Statement;
  readonly #selectMessages: Database.Statement;
  readonly #persistBatch: (messages: readonly Message[], heads: ReadonlyMap<string, number>) => void;

  constructor(dataDir: string, retention: Retention) {
    super(retention);
    mkdirSync(dataDir, { recursive: true });
    this.#db = new Database(join(dataDir, 'herald.db'));
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS channels (
        name TEXT PRIMARY KEY, epoch TEXT NOT NULL, head INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS messages (
        channel TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT, data TEXT NOT NULL,
        idempotency_key TEXT, published_at_ms INTEGER NOT NULL,
        PRIMARY KEY (channel, seq)
      ) WITHOUT ROWID;
    `);
    this.#insertMessage = this.#db.prepare(
      'INSERT INTO messages (channel, seq, event, data, idempotency_key, published_at_ms) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.#upsertChannel = this.#db.prepare(
      'INSERT INTO channels (name, epoch, head) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET head = excluded.head',
    );
    this.#deleteThrough = this.#db.prepare('DELETE FROM messages WHERE channel = ? AND seq <= ?');
    this.#selectChannel = this.#db.prepare('SELECT epoch, head FROM channels WHERE name = ?');
    this.#selectMessages = this.#db.prepare(
      `SELECT seq, event, data, idempotency_key, published_at_ms FROM messages
       WHERE channel = ? AND seq > ? ORDER BY seq`,
    );
    this.#persistBatch = this.#db.transaction((messages: readonly Message[], heads: ReadonlyMap<string, number>) => {
      for (const m of messages) {
        this.#insertMessage.run(m.channel, m.offset, m.event ?? null, m.dataJson, m.idempotencyKey ?? null, m.publishedAtMs);
      }
      for (const [channel, head] of heads) {
        this.#upsertChannel.run(channel, this.log(channel).epoch, head);
        this.#deleteThrough.run(channel, head - this.retention.maxMessages);
      }
    });
  }

  protected override loadLog(channel: string): ChannelLog {
    const row = this.#selectChannel.get(channel) as { epoch: string; head: number } | undefined;
    if (row === undefined) return new ChannelLog(channel, newEpoch());
    const rows = this.#selectMessages.all(channel, row.head - this.retention.maxMessages) as { seq: number; event: string | null; data: string; idempotency_key: string | null; published_at_ms: number }[];
    const log = new ChannelLog(channel, row.epoch, rows.length > 0 ? rows[0]!.seq - 1 : row.head);
    for (const r of rows) {
      log.push(
        new Message({
          channel,
          offset: r.seq,
          epoch: row.epoch,
          event: r.event ?? undefined,
          dataJson: r.data,
          publishedAtMs: r.published_at_ms,
          idempotencyKey: r.idempotency_key ?? undefined,
        }),
      );
    }
    log.trim(this.retention.maxMessages, Date.now() - this.retention.ttlMs);
    return log;
  }

  protected override persist(messages: readonly Message[], headOffsets: ReadonlyMap<string, number>): void {
    this.#persistBatch(messages, headOffsets);
  }

  protected override trimExpired(log: ChannelLog, minPublishedAtMs: number): void {
    if (log.trim(this.retention.maxMessages, minPublishedAtMs) > 0) {
      this.#deleteThrough.run(log.channel, log.oldestOffset - 1);
    }
  }

  /** Everything here can be loaded again from disk: an unused window only costs memory. */
  protected override isEvictable(): boolean {
    return true;
  }

  override close(): void {
    super.close();
    this.#db.close();
  }
}
