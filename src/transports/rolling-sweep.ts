/**
 * Visits every member of a live set once per period, a slice at each tick of the server's shared sweep.
 * Heartbeats for 10,000 connections spread over the period this way, instead of one burst of writes
 * every period that every delivery queued behind it would wait for (it showed in the benchmarks' p99).
 */
export class RollingSweep<T> {
  readonly #members: ReadonlySet<T>;
  readonly #periodMs: number;
  #lastTickMs: number;
  /** Visits due and not made yet (fractional: a small set gets one visit every few ticks). */
  #owed = 0;
  /**
   * How far into the set this round has come. Each tick iterates afresh and skips that many: a Set
   * iterator kept across ticks would keep every table the set outgrew (and the members deleted from
   * it) alive until it moved on. Deletions shift later members back, which may push one to the next
   * round: a late visit, never an early one.
   */
  #position = 0;

  constructor(members: ReadonlySet<T>, periodMs: number, nowMs = Date.now()) {
    this.#members = members;
    this.#periodMs = periodMs;
    this.#lastTickMs = nowMs;
  }

  /** Visits the members due since the last tick, going round the set in insertion order. */
  tick(nowMs: number, visit: (member: T) => void): void {
    const size = this.#members.size;
    const elapsedMs = Math.min(Math.max(nowMs - this.#lastTickMs, 0), this.#periodMs);
    this.#lastTickMs = nowMs;
    this.#owed = Math.min(this.#owed + (size * elapsedMs) / this.#periodMs, size);
    let due = Math.floor(this.#owed);
    if (due === 0) return;
    this.#owed -= due;
    let index = 0;
    for (const member of this.#members) {
      if (index++ < this.#position) continue;
      this.#position++;
      visit(member);
      if (--due === 0) return;
    }
    // The round is over: the next one starts at the beginning.
    this.#position = 0;
    for (const member of this.#members) {
      if (due-- === 0) return;
      this.#position++;
      visit(member);
    }
  }
}
