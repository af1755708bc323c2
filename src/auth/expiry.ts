/** Something that must hear when a moment it asked for has come (a token expiring, a grace ending). */
export interface Expiring {
  onExpiry(nowMs: number): void;
}

/** Deadlines are kept in buckets this wide; a deadline fires in the sweep after its bucket ends. */
const BUCKET_MS = 1000;

/**
 * Deadlines for many connections, driven by the server's shared sweep: no timer per connection
 * (STYLE hot-path rule 3). Each item has at most one deadline; scheduling again replaces it. A tick
 * visits only the buckets that came due since the last tick, however far ahead others lie.
 */
export class ExpirySchedule {
  readonly #buckets = new Map<number, Set<Expiring>>();
  readonly #bucketOf = new Map<Expiring, number>();
  #lastDueBucket: number;

  constructor(nowMs = Date.now()) {
    this.#lastDueBucket = Math.floor(nowMs / BUCKET_MS) - 1;
  }

  get size(): number {
    return this.#bucketOf.size;
  }

  /** Calls `item.onExpiry` at the first tick at or after `atMs` (replacing an earlier schedule). */
  schedule(item: Expiring, atMs: number): void {
    this.cancel(item);
    // A deadline already past fires at the next tick.
    const id = Math.max(Math.ceil(atMs / BUCKET_MS), this.#lastDueBucket + 1);
    let bucket = this.#buckets.get(id);
    if (bucket === undefined) {
      bucket = new Set();
      this.#buckets.set(id, bucket);
    }
    bucket.add(item);
    this.#bucketOf.set(item, id);
  }

  cancel(item: Expiring): void {
    const id = this.#bucketOf.get(item);
    if (id === undefined) return;
    this.#bucketOf.delete(item);
    const bucket = this.#buckets.get(id)!;
    bucket.delete(item);
    if (bucket.size === 0) this.#buckets.delete(id);
  }

  tick(nowMs: number): void {
    const due = Math.floor(nowMs / BUCKET_MS);
    for (let id = this.#lastDueBucket + 1; id <= due; id++) {
      this.#lastDueBucket = id;
      const bucket = this.#buckets.get(id);
      if (bucket === undefined) continue;
      this.#buckets.delete(id);
      for (const item of bucket) {
        this.#bucketOf.delete(item);
        item.onExpiry(nowMs);
      }
    }
  }
}
