/**
 * A token bucket: `ratePerS` tokens a second, holding at most `burst`. A publish takes one token per
 * message or is refused at once: nothing waits in a queue, so a flooding client costs no memory.
 */
export class TokenBucket {
  readonly #ratePerMs: number;
  readonly #burst: number;
  #tokens: number;
  #lastMs: number;

  constructor(ratePerS: number, burst = Math.max(1, ratePerS), nowMs = Date.now()) {
    this.#ratePerMs = ratePerS / 1000;
    this.#burst = burst;
    this.#tokens = burst;
    this.#lastMs = nowMs;
  }

  /** Takes `count` tokens if all are there (true), else takes none (false). */
  take(count = 1, nowMs = Date.now()): boolean {
    this.#refill(nowMs);
    if (this.#tokens < count) return false;
    this.#tokens -= count;
    return true;
  }

  /** Whether the bucket is full again, i.e. forgetting it would change nothing. */
  isFull(nowMs = Date.now()): boolean {
    this.#refill(nowMs);
    return this.#tokens >= this.#burst;
  }

  #refill(nowMs: number): void {
    if (nowMs > this.#lastMs) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (nowMs - this.#lastMs) * this.#ratePerMs);
      this.#lastMs = nowMs;
    }
  }
}

/**
 * Token buckets by key (the token's `sub` for HTTP client publishes, which have no connection to hang a
 * bucket on). Bounded: when full, buckets that refilled are forgotten, then the oldest.
 */
export class RateLimiter {
  readonly #ratePerS: number;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(ratePerS: number, maxKeys = 10_000) {
    this.#ratePerS = ratePerS;
    this.#maxKeys = maxKeys;
  }

  take(key: string, count = 1, nowMs = Date.now()): boolean {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxKeys) this.#evict(nowMs);
      bucket = new TokenBucket(this.#ratePerS, undefined, nowMs);
      this.#buckets.set(key, bucket);
    }
    return bucket.take(count, nowMs);
  }

  #evict(nowMs: number): void {
    for (const [key, bucket] of this.#buckets) if (bucket.isFull(nowMs)) this.#buckets.delete(key);
    if (this.#buckets.size >= this.#maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
  }
}
