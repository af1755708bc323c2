// Presence: who is in a channel right now. Kept behind this interface so that a Redis-backed presence
// (shared by every node) can replace the in-memory one without touching the transports.

/** One user present in a channel, however many connections (tabs) it has there. */
export interface PresenceMember {
  user: string;
  info: Record<string, unknown> | undefined;
  connections: number;
}

/** A user arrived in a channel (its first connection) or left it (its last connection went). */
export interface PresenceChange {
  kind: 'join' | 'leave';
  channel: string;
  user: string;
  info: Record<string, unknown> | undefined;
}

export interface Presence {
  /**
   * Records connection `connectionId` of `user` in `channel`, until `expiresAtMs` (undefined: until
   * `exit`). Calling it again for the same connection refreshes the expiry (a heartbeat). Announces a
   * `join` when this is the user's first connection in the channel, and only then.
   */
  enter(channel: string, connectionId: string, user: string, info: Record<string, unknown> | undefined, expiresAtMs?: number): void;
  /** Removes the connection from the channel; announces a `leave` when it was the user's last. Idempotent. */
  exit(channel: string, connectionId: string): void;
  /** The users present in `channel`, one entry per user. */
  members(channel: string): PresenceMember[];
  /** How many users are present in `channel`. */
  count(channel: string): number;
  /** Removes connections whose expiry has passed (announcing leaves). Called by the shared sweep. */
  sweep(nowMs: number): void;
  /**
   * Registers the one handler of this node; it hears every change, in order per channel and user (a
   * shared presence delivers other nodes' changes here too).
   */
  onChange(handler: (change: PresenceChange) => void): void;
}
