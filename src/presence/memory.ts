import type { Presence, PresenceChange, PresenceMember } from './presence.js';

interface UserEntry {
  info: Record<string, unknown> | undefined;
  /** connection id → expiry (Infinity: until it exits). */
  connections: Map<string, number>;
}

/** Presence for a single node, in memory. */
export class MemoryPresence implements Presence {
  /** channel → user → entry. */
  readonly #channels = new Map<string, Map<string, UserEntry>>();
  /** channel + connection → user, to find an exiting connection's user. */
  readonly #userOf = new Map<string, string>();
  /** Connections with an expiry, so a sweep looks at those only. */
  readonly #expiring = new Map<string, { channel: string; connectionId: string; expiresAtMs: number }>();
  #handler: (change: PresenceChange) => void = () => {};

  onChange(handler: (change: PresenceChange) => void): void {
    this.#handler = handler;
  }

  enter(channel: string, connectionId: string, user: string, info: Record<string, unknown> | undefined, expiresAtMs?: number): void {
    const key = `${channel}\n${connectionId}`;
    const previousUser = this.#userOf.get(key);
    if (previousUser !== undefined && previousUser !== user) this.exit(channel, connectionId);
    let users = this.#channels.get(channel);
    if (users === undefined) {
      users = new Map();
      this.#channels.set(channel, users);
    }
    let entry = users.get(user);
    const isJoin = entry === undefined;
    if (entry === undefined) {
      entry = { info, connections: new Map() };
      users.set(user, entry);
    }
    entry.info = info;
    entry.connections.set(connectionId, expiresAtMs ?? Infinity);
    this.#userOf.set(key, user);
    if (expiresAtMs === undefined) this.#expiring.delete(key);
    else this.#expiring.set(key, { channel, connectionId, expiresAtMs });
    if (isJoin) this.#handler({ kind: 'join', channel, user, info });
  }

  exit(channel: string, connectionId: string): void {
    const key = `${channel}\n${connectionId}`;
    const user = this.#userOf.get(key);
    if (user === undefined) return;
    this.#userOf.delete(key);
    this.#expiring.delete(key);
    const users = this.#channels.get(channel)!;
    const entry = users.get(user)!;
    entry.connections.delete(connectionId);
    if (entry.connections.size > 0) return;
    users.delete(user);
    if (users.size === 0) this.#channels.delete(channel);
    this.#handler({ kind: 'leave', channel, user, info: entry.info });
  }

  members(channel: string): PresenceMember[] {
    const users = this.#channels.get(channel);
    if (users === undefined) return [];
    return [...users].map(([user, entry]) => ({ user, info: entry.info, connections: entry.connections.size }));
  }

  count(channel: string): number {
    return this.#channels.get(channel)?.size ?? 0;
  }

  sweep(nowMs: number): void {
    for (const { channel, connectionId, expiresAtMs } of [...this.#expiring.values()]) {
      if (expiresAtMs <= nowMs) this.exit(channel, connectionId);
    }
  }
}
