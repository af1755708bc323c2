// The exactly-once / in-order checker of the multi-node end-to-end tests (several Herald processes on one
// Redis or Redis Cluster), the same pattern as test/e2e/property.test.ts but for a service of many nodes
// and for faults:
//
//   - `Nodes`: the service's node URLs; whatever goes round-robin skips the nodes marked dead.
//   - `Publisher`: publishes single messages and batches to the nodes in turn, some with idempotency
//     keys (retried on another node after a 503 or a dropped connection; some re-sent to another node
//     after their 200, which must answer the same offsets as duplicates); every message carries a
//     unique key in its data.
//   - `Ledger`: what was published, what was acknowledged (offset and epoch per key, never two), and
//     what got no 200 and was not retried to one ("unsettled": it may or may not have been stored).
//   - `Subscriber`: a resumable client of one transport that drops its connection after given numbers of
//     deliveries and resumes from its last cursor on the NEXT node; it checks every delivery at once
//     (offset = previous + 1 in the same epoch, an epoch changes only through a reset, no key twice, the
//     data is what was published) and keeps per channel the keys it got, per epoch.
//   - `readTruth`: what Redis itself holds of a channel (epoch, dense stream of offsets 1..head).
//   - `settle`: the end of a scenario: once every subscriber holds what Redis holds, everyone drops and
//     resumes on another node, a fence message per channel must arrive as the next offset, and then each
//     subscriber must hold exactly what Redis holds, every acknowledged message at its acknowledged
//     offset, and nothing unacknowledged that is not stored.
import assert from 'node:assert/strict';
import { Cluster, Redis } from 'ioredis';
import { openSession, type Delivery, type ResetEntry, type Session, type SessionEnd, type TransportKind } from './resume-clients.js';

export const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A small seeded PRNG (the same as the property test's), so that a failing schedule can be replayed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of a run: E2E_SEED when set (to replay one), else a fresh one; tests print it. */
export function runSeed(): number {
  const fromEnv = process.env.E2E_SEED;
  return fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : Math.floor(Math.random() * 2 ** 31);
}

/** Texts that must survive every framing: script breakouts, JS line terminators, SSE field injection. */
const TEXTS = ['', 'plain', '</script><script>parent.cb(1)</script>', '\u2028\u2029', 'ünï©ødé ✓', 'a\nb\r\nevent: x\ndata: y', '&<>"\'\\'];

// --- Cleanup. -----------------------------------------------------------------------------------------

/**
 * `defer(fn)` runs fn in the test's after hook, last deferred first (node:test runs its own after
 * hooks first registered first): clients stop before the nodes, the nodes before Redis. Every one
 * runs even if an earlier one throws.
 */
export function deferrals(t: { after(fn: () => Promise<void>): void }): (fn: () => unknown) => void {
  const stack: (() => unknown)[] = [];
  t.after(async () => {
    const errors: unknown[] = [];
    for (const fn of stack.reverse()) {
      try {
        await fn();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw errors[0];
  });
  return (fn) => void stack.push(fn);
}

// --- Failures. ----------------------------------------------------------------------------------------

/** Collects failures seen anywhere (subscriber callbacks, publisher loops); the first ends any wait. */
export class Failures {
  readonly list: string[] = [];
  #reject!: (err: Error) => void;
  readonly #first = new Promise<never>((_, reject) => (this.#reject = reject));

  constructor() {
    this.#first.catch(() => {});
  }

  fail = (message: string): void => {
    this.list.push(message);
    if (this.list.length === 1) this.#reject(new Error(message));
  };

  /** Waits for `promise` unless a failure is recorded first or `timeoutMs` passes (then says `what()`). */
  async within<T>(promise: Promise<T>, timeoutMs: number, what: () => string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms: ${what()}`)), timeoutMs);
    });
    try {
      return await Promise.race([promise, this.#first, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits until `predicate` holds (checked every 20 ms), unless a failure comes first or time runs out. */
  async until(predicate: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (this.list.length > 0) throw new Error(this.list[0]);
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what()}`);
      await delay(20);
    }
  }

  assertNone(): void {
    assert.deepEqual(this.list.slice(0, 20), [], `${this.list.length} failures`);
  }
}

// --- Nodes. -------------------------------------------------------------------------------------------

export class Nodes {
  readonly urls: string[];
  readonly #isAlive: boolean[];

  constructor(urls: readonly string[]) {
    this.urls = [...urls];
    this.#isAlive = urls.map(() => true);
  }

  get count(): number {
    return this.urls.length;
  }

  /** From now on nothing is sent to node `index` (it is being killed). */
  markDead(index: number): void {
    this.#isAlive[index] = false;
  }

  isAlive(index: number): boolean {
    return this.#isAlive[index]!;
  }

  /** The index of the first live node at or after `index` (mod count). */
  liveFrom(index: number): number {
    for (let k = 0; k < this.count; k++) {
      const i = (((index + k) % this.count) + this.count) % this.count;
      if (this.#isAlive[i]) return i;
    }
    throw new Error('no live node');
  }

  /** The index of the first live node after `index`: a different node whenever two are alive. */
  after(index: number): number {
    return this.liveFrom(index + 1);
  }
}

// --- Publishing. --------------------------------------------------------------------------------------

export interface PublishResult {
  channel: string;
  offset: number;
  epoch: string;
  duplicate?: true;
}

interface Published {
  channel: string;
  dataJson: string;
  event: string | undefined;
}

export class Ledger {
  /** Every message ever sent, by key (the `k` of its data). */
  readonly published = new Map<string, Published>();
  /** Every acknowledged message: where the 200 said it is. */
  readonly acked = new Map<string, { channel: string; offset: number; epoch: string }>();
  /** channel → epoch → offset → key, from 200 answers. */
  readonly #byOffset = new Map<string, Map<string, Map<number, string>>>();
  /** Keys of publishes that got no 200 (503, dropped connection) and were not retried to one. */
  readonly unsettled = new Set<string>();
  /** Bodies of 503 answers (the first few), for the tests' assertions on their shape. */
  readonly unavailableBodies: unknown[] = [];
  readonly stats = {
    requests: 0,
    batches: 0,
    messages: 0,
    engineUnavailable: 0,
    connectionErrors: 0,
    retries: 0,
    duplicatesConfirmed: 0,
  };

  constructor(private readonly fail: (message: string) => void) {}

  ack(key: string, result: PublishResult): void {
    const sent = this.published.get(key);
    if (sent === undefined || sent.channel !== result.channel) {
      this.fail(`ack of ${key} names channel ${result.channel}, not ${sent?.channel}`);
      return;
    }
    const previous = this.acked.get(key);
    if (previous !== undefined && (previous.offset !== result.offset || previous.epoch !== result.epoch)) {
      this.fail(`${key} acknowledged at ${previous.epoch}#${previous.offset} and again at ${result.epoch}#${result.offset}`);
    }
    let epochs = this.#byOffset.get(result.channel);
    if (epochs === undefined) this.#byOffset.set(result.channel, (epochs = new Map()));
    let offsets = epochs.get(result.epoch);
    if (offsets === undefined) epochs.set(result.epoch, (offsets = new Map()));
    const holder = offsets.get(result.offset);
    if (holder !== undefined && holder !== key) this.fail(`${result.channel} ${result.epoch}#${result.offset} acknowledged for ${holder} and for ${key}`);
    offsets.set(result.offset, key);
    this.acked.set(key, { channel: result.channel, offset: result.offset, epoch: result.epoch });
    this.unsettled.delete(key);
  }

  /** The keys acknowledged in one epoch of a channel, by offset. */
  ackedIn(channel: string, epoch: string): Map<number, string> {
    return this.#byOffset.get(channel)?.get(epoch) ?? new Map();
  }

  /** The epochs acknowledged for a channel, in the order first acknowledged. */
  epochsOf(channel: string): string[] {
    return [...(this.#byOffset.get(channel)?.keys() ?? [])];
  }

  summary(): string {
    const s = this.stats;
    return (
      `${s.requests} publish requests (${s.batches} batches, ${s.messages} messages, ${this.acked.size} acknowledged, ` +
      `${this.unsettled.size} unsettled), ${s.engineUnavailable} answered 503, ${s.connectionErrors} lost connections, ` +
      `${s.retries} retries, ${s.duplicatesConfirmed} duplicate re-sends confirmed`
    );
  }
}

interface OutgoingMessage {
  channel: string;
  data: { k: string; text: string };
  event?: string;
  idempotencyKey?: string;
}

type Outcome =
  | { kind: 'ok'; results: PublishResult[] }
  | { kind: 'unavailable'; body: unknown }
  | { kind: 'lost'; error: unknown };

/** One POST /v1/publish; 503 and dropped connections are outcomes, anything else unexpected fails. */
async function postPublish(url: string, body: unknown, ledger: Ledger, fail: (m: string) => void): Promise<Outcome> {
  ledger.stats.requests++;
  let res: Response;
  let text: string;
  try {
    res = await fetch(`${url}/v1/publish`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    text = await res.text();
  } catch (error) {
    ledger.stats.connectionErrors++;
    return { kind: 'lost', error };
  }
  if (res.status === 200) return { kind: 'ok', results: (JSON.parse(text) as { results: PublishResult[] }).results };
  if (res.status === 503) {
    ledger.stats.engineUnavailable++;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      fail(`a 503 to a publish is not JSON: ${text}`);
    }
    if (ledger.unavailableBodies.length < 20) ledger.unavailableBodies.push(parsed);
    return { kind: 'unavailable', body: parsed };
  }
  fail(`publish to ${url} answered ${res.status}: ${text}`);
  return { kind: 'unavailable', body: text };
}

export interface PublisherOptions {
  id: string;
  nodes: Nodes;
  /** Where this publisher's first request goes; then round-robin. */
  firstNode: number;
  channels: readonly string[];
  ledger: Ledger;
  fail: (message: string) => void;
  random: () => number;
  /** Share of bodies whose messages all carry idempotency keys (the others carry none). */
  keyedShare: number;
  /** Retry a keyed body that got a 503 or lost its connection, with the same keys, on the next node. */
  retryKeyed: boolean;
  /** Share of acknowledged keyed bodies sent again to the next node: every message must be a duplicate. */
  resendShare: number;
  /** Pause between two publishes. */
  pauseMs: number;
  /** Largest batch (a body is a single message 40% of the time). */
  maxBatch?: number;
}

/** A publisher loop, from start() until stop(): then it finishes its body (with retries, if keyed). */
export class Publisher {
  #isStopping = false;
  #loop: Promise<void> | undefined;
  #sequence = 0;
  #node: number;

  constructor(private readonly options: PublisherOptions) {
    this.#node = options.firstNode;
  }

  start(): void {
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#isStopping = true;
    await this.#loop;
  }

  #nextNode(): number {
    this.#node = this.options.nodes.after(this.#node);
    return this.#node;
  }

  async #run(): Promise<void> {
    const { random } = this.options;
    while (!this.#isStopping) {
      await this.publishOnce();
      await delay(Math.floor(this.options.pauseMs * (0.5 + random())));
    }
  }

  /** Builds one body, publishes it (retrying if keyed and asked to) and records what was answered. */
  async publishOnce(): Promise<void> {
    const { random, ledger, fail, channels } = this.options;
    const size = random() < 0.4 ? 1 : 2 + Math.floor(random() * ((this.options.maxBatch ?? 10) - 1));
    const isKeyed = random() < this.options.keyedShare;
    const messages: OutgoingMessage[] = Array.from({ length: size }, () => {
      const key = `${this.options.id}-${++this.#sequence}`;
      const channel = channels[Math.floor(random() * channels.length)]!;
      const data = { k: key, text: TEXTS[Math.floor(random() * TEXTS.length)]! };
      const event = random() < 0.3 ? 'tick' : undefined;
      ledger.published.set(key, { channel, dataJson: JSON.stringify(data), event });
      return { channel, data, ...(event === undefined ? {} : { event }), ...(isKeyed ? { idempotencyKey: key } : {}) };
    });
    const body = size === 1 && random() < 0.5 ? messages[0] : { messages };
    ledger.stats.messages += size;
    if (size > 1) ledger.stats.batches++;
    const keys = messages.map((m) => m.data.k);
    const deadline = Date.now() + 20_000;
    for (let attempt = 1; ; attempt++) {
      const node = this.#nextNode();
      const outcome = await postPublish(this.options.nodes.urls[node]!, body, ledger, fail);
      if (outcome.kind === 'ok') {
        if (outcome.results.length !== size) fail(`a body of ${size} got ${outcome.results.length} results`);
        outcome.results.forEach((result, i) => {
          // A first attempt must store anew; a retry may find the first one stored after all.
          if (attempt === 1 && result.duplicate === true) fail(`${keys[i]} answered as a duplicate on its first publish`);
          ledger.ack(keys[i]!, result);
        });
        if (isKeyed && random() < this.options.resendShare) await this.#resend(body, keys, outcome.results);
        return;
      }
      // Partial stores (a Cluster batch where some channels failed) say which messages are stored.
      const partial = (outcome.kind === 'unavailable' ? (outcome.body as { results?: unknown[] } | undefined)?.results : undefined) ?? [];
      partial.forEach((result, i) => {
        const r = result as PublishResult & { stored?: false };
        if (r.stored !== false && typeof r.offset === 'number') ledger.ack(keys[i]!, r);
      });
      if (!isKeyed || !this.options.retryKeyed || Date.now() > deadline) {
        for (const key of keys) if (!ledger.acked.has(key)) ledger.unsettled.add(key);
        return;
      }
      ledger.stats.retries++;
      await delay(outcome.kind === 'lost' ? 20 : 100);
    }
  }

  /** Sends an acknowledged keyed body again to another node: the same offsets, all duplicates. */
  async #resend(body: unknown, keys: string[], original: PublishResult[]): Promise<void> {
    const { ledger, fail, nodes } = this.options;
    const node = this.#nextNode();
    const outcome = await postPublish(nodes.urls[node]!, body, ledger, fail);
    if (outcome.kind !== 'ok') return; // a fault under way: nothing to learn
    outcome.results.forEach((result, i) => {
      const first = original[i]!;
      if (result.duplicate !== true || result.offset !== first.offset || result.epoch !== first.epoch || result.channel !== first.channel) {
        fail(`re-sending ${keys[i]} to node ${node} answered ${JSON.stringify(result)}, not the duplicate of ${JSON.stringify(first)}`);
      }
    });
    ledger.stats.duplicatesConfirmed += outcome.results.length;
  }
}

/**
 * Publishes one message per channel with an idempotency key, retried (on the next node each time)
 * until acknowledged; the keys are recorded in the ledger.
 */
export async function publishFence(nodes: Nodes, channels: readonly string[], ledger: Ledger, fail: (m: string) => void, label: string): Promise<void> {
  const messages: OutgoingMessage[] = channels.map((channel, i) => {
    const key = `${label}-${i}`;
    const data = { k: key, text: label };
    ledger.published.set(key, { channel, dataJson: JSON.stringify(data), event: undefined });
    return { channel, data, idempotencyKey: key };
  });
  let node = nodes.liveFrom(0);
  for (let attempt = 1; attempt <= 200; attempt++) {
    const outcome = await postPublish(nodes.urls[node]!, { messages }, ledger, fail);
    if (outcome.kind === 'ok') {
      outcome.results.forEach((result, i) => ledger.ack(messages[i]!.data.k, result));
      return;
    }
    node = nodes.after(node);
    await delay(100);
  }
  fail(`the fence ${label} was never acknowledged`);
}

// --- Subscribing. -------------------------------------------------------------------------------------

export interface Segment {
  epoch: string;
  /** The key of each offset from `from`, in order. */
  from: number;
  keys: string[];
}

export interface SubscriberOptions {
  name: string;
  kind: TransportKind;
  channels: readonly string[];
  nodes: Nodes;
  firstNode: number;
  /** Cursor-passing style (see resume-clients.ts); varies per session. */
  style: number;
  /** Deliveries between two voluntary drops, in turn (then no more drops); [] never drops. */
  dropAfter: readonly number[];
  ledger: Ledger;
  fail: (message: string) => void;
  /** 'forbidden': any reset fails; 'epoch-change': a reset must start a new epoch from offset 1. */
  resets: 'forbidden' | 'epoch-change';
  /**
   * A session the server ended, or a 503 (engine_unavailable) to a subscription, is expected while a
   * fault is under way: resume on the next node. Otherwise it fails the test.
   */
  tolerateErrors: () => boolean;
  /** Any end of a session this subscriber did not ask for fails (a client a fault must not disconnect). */
  mustStayConnected?: boolean;
  /** Polling kinds: send each request to the next node (one client's long polls across the service). */
  rotatePolls?: boolean;
}

interface ChannelState {
  segments: Segment[];
  /** Every key delivered on this channel, across epochs. */
  seen: Set<string>;
}

export class Subscriber {
  readonly name: string;
  readonly channels: readonly string[];
  readonly #state = new Map<string, ChannelState>();
  cursor: string | undefined;
  deliveries = 0;
  sessions = 0;
  /** Sessions that ended without being asked to (server gone, 503, connection error). */
  failedSessions = 0;
  resets: ResetEntry[] = [];
  /** Which node each session used, for the test's diagnostics (and to prove the round-robin). */
  readonly nodesUsed: number[] = [];
  #node: number;
  #dropIndex = 0;
  #nextDropAt: number;
  #session: Session | undefined;
  #isStopped = false;
  #wakeStop!: () => void;
  readonly #stopSignal = new Promise<void>((resolve) => (this.#wakeStop = resolve));
  #loop: Promise<void> | undefined;
  #waiters: { isDone: () => boolean; resolve: () => void }[] = [];
  #pollNode = 0;

  constructor(private readonly options: SubscriberOptions) {
    this.name = options.name;
    this.channels = options.channels;
    for (const channel of options.channels) this.#state.set(channel, { segments: [], seen: new Set() });
    this.#node = options.nodes.liveFrom(options.firstNode);
    this.#nextDropAt = options.dropAfter[0] ?? Number.POSITIVE_INFINITY;
  }

  start(): void {
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    const { nodes } = this.options;
    let fruitless = 0;
    let isFirst = true;
    while (!this.#isStopped) {
      // Every session after the first goes to another node than the one before.
      this.#node = isFirst ? nodes.liveFrom(this.#node) : nodes.after(this.#node);
      isFirst = false;
      this.#pollNode = this.#node;
      this.nodesUsed.push(this.#node);
      const before = this.deliveries;
      const session = openSession(this.options.kind, {
        baseUrl: nodes.urls[this.#node]!,
        channels: this.channels,
        cursor: this.cursor,
        style: this.options.style + this.sessions,
        sseEvents: ['tick'],
        pollBaseUrl: this.options.rotatePolls
          ? () => {
              const url = nodes.urls[this.#pollNode]!;
              this.#pollNode = nodes.after(this.#pollNode);
              return url;
            }
          : undefined,
        onDelivery: (delivery) => this.#onDelivery(delivery),
      });
      this.#session = session;
      this.sessions++;
      const end = await Promise.race([session.ended, this.#stopSignal.then((): SessionEnd => ({ kind: 'closed' }))]);
      if (this.#isStopped) break;
      if (end.kind === 'closed') {
        fruitless = 0;
        continue;
      }
      this.failedSessions++;
      const detail = end.kind === 'protocol' ? end.detail : String((end.error as Error)?.message ?? end.error);
      const isUnavailable = end.kind === 'error' || /\b503\b|engine_unavailable|1011/.test(detail);
      if (this.options.mustStayConnected) this.options.fail(`${this.name}: disconnected (session ${this.sessions}, node ${this.#node}): ${detail}`);
      else if (!isUnavailable || !this.options.tolerateErrors()) {
        this.options.fail(`${this.name}: session ${this.sessions} on node ${this.#node} ended: ${detail}`);
      }
      fruitless = this.deliveries === before ? fruitless + 1 : 0;
      if (fruitless > 200) {
        this.options.fail(`${this.name}: ${fruitless} sessions in a row failed; last: ${detail}`);
        return;
      }
      await delay(20);
    }
  }

  #onDelivery(delivery: Delivery): void {
    const { fail } = this.options;
    if (delivery.type === 'reset') {
      const reset = delivery.reset;
      this.resets.push(reset);
      this.cursor = reset.cursor;
      const state = this.#state.get(reset.channel);
      if (state === undefined) return fail(`${this.name}: reset of ${reset.channel}, which it did not subscribe to`);
      const current = state.segments.at(-1);
      if (this.options.resets === 'forbidden') return fail(`${this.name}: unexpected reset ${JSON.stringify(reset)}`);
      if (current !== undefined && current.epoch === reset.epoch) {
        return fail(`${this.name}: reset within epoch ${reset.epoch} of ${reset.channel} (from ${reset.from}, after ${current.from + current.keys.length - 1})`);
      }
      if (reset.from !== 1) return fail(`${this.name}: reset of ${reset.channel} to a new epoch from ${reset.from}, not 1 (nothing was trimmed)`);
      state.segments.push({ epoch: reset.epoch, from: reset.from, keys: [] });
      this.#checkWaiters();
      return;
    }
    const envelope = delivery.envelope;
    const state = this.#state.get(envelope.channel);
    if (state === undefined) return fail(`${this.name}: got a message of ${envelope.channel}, which it did not subscribe to`);
    let segment = state.segments.at(-1);
    if (segment === undefined) {
      if (envelope.offset !== 1) return fail(`${this.name}: first message of ${envelope.channel} is #${envelope.offset}, not #1`);
      state.segments.push((segment = { epoch: envelope.epoch, from: 1, keys: [] }));
    }
    if (envelope.epoch !== segment.epoch) {
      return fail(`${this.name}: ${envelope.channel} went from epoch ${segment.epoch} to ${envelope.epoch} (#${envelope.offset}) with no reset`);
    }
    const expected = segment.from + segment.keys.length;
    if (envelope.offset !== expected) {
      return fail(`${this.name}: on ${envelope.channel} got #${envelope.offset} when #${expected} was next (session ${this.sessions}, node ${this.#node})`);
    }
    const key = (envelope.data as { k?: unknown } | null)?.k;
    const sent = typeof key === 'string' ? this.options.ledger.published.get(key) : undefined;
    if (typeof key !== 'string' || sent === undefined || sent.channel !== envelope.channel || JSON.stringify(envelope.data) !== sent.dataJson || envelope.event !== sent.event) {
      return fail(`${this.name}: ${envelope.channel}#${envelope.offset} delivered ${JSON.stringify(envelope)}, not what was published`);
    }
    if (state.seen.has(key)) return fail(`${this.name}: ${key} delivered twice on ${envelope.channel} (again at ${envelope.epoch}#${envelope.offset})`);
    state.seen.add(key);
    segment.keys.push(key);
    this.cursor = envelope.cursor;
    this.deliveries++;
    if (this.deliveries >= this.#nextDropAt) {
      this.#dropIndex++;
      this.#nextDropAt += this.options.dropAfter[this.#dropIndex] ?? Number.POSITIVE_INFINITY;
      this.#session?.close(); // nothing more is delivered by this session; the loop resumes elsewhere
    }
    this.#checkWaiters();
  }

  #checkWaiters(): void {
    this.#waiters = this.#waiters.filter((waiter) => {
      if (!waiter.isDone()) return true;
      waiter.resolve();
      return false;
    });
  }

  /** The segments (per epoch) this subscriber holds of a channel. */
  segments(channel: string): Segment[] {
    return this.#state.get(channel)!.segments;
  }

  /** Resolves once the subscriber's current epoch of every channel is `truth`'s and holds all of it. */
  reached(truths: ReadonlyMap<string, Truth>): Promise<void> {
    const isDone = (): boolean =>
      this.channels.every((channel) => {
        const truth = truths.get(channel)!;
        const last = this.segments(channel).at(-1);
        if (truth.keys.length === 0) return last === undefined || last.epoch === truth.epoch;
        return last !== undefined && last.epoch === truth.epoch && last.from + last.keys.length - 1 >= truth.keys.length;
      });
    return new Promise((resolve) => {
      this.#waiters.push({ isDone, resolve });
      this.#checkWaiters();
    });
  }

  progress(truths: ReadonlyMap<string, Truth>): string {
    const parts = this.channels.map((channel) => {
      const last = this.segments(channel).at(-1);
      const truth = truths.get(channel);
      return `${channel} ${last === undefined ? '-' : `${last.epoch}#${last.from + last.keys.length - 1}`}/${truth?.epoch}#${truth?.keys.length}`;
    });
    return `${this.name} ${parts.join(' ')} (${this.sessions} sessions, ${this.failedSessions} failed)`;
  }

  /** Drops the current connection; the loop resumes from the last cursor on the next node. */
  reconnect(): void {
    this.#session?.close();
  }

  async stop(): Promise<void> {
    this.#isStopped = true;
    this.#session?.close();
    this.#wakeStop();
    await this.#loop;
  }
}

// --- What Redis holds, and the final comparison. -------------------------------------------------------

export interface Truth {
  /** Undefined when Redis holds nothing of the channel. */
  epoch: string | undefined;
  /** The key of offset i + 1 at index i: every offset from 1 to the head. */
  keys: string[];
}

/** A client of the Redis under test, for reading the truth (standalone or Cluster). */
export function truthClient(target: { port: number } | { ports: number[] }): Redis | Cluster {
  const client =
    'port' in target
      ? new Redis({ host: '127.0.0.1', port: target.port, maxRetriesPerRequest: 3 })
      : new Cluster(target.ports.map((port) => ({ host: '127.0.0.1', port })));
  client.on('error', () => {}); // while Redis restarts or is stopped first: the next command says
  return client;
}

/** A channel's epoch, head and stream as Redis holds them; fails unless the stream is offsets 1..head. */
export async function readTruth(redis: Redis | Cluster, channel: string): Promise<Truth> {
  // One transaction (the keys share the slot of {channel}), so the head and the stream agree.
  const replies = await redis.multi().hmget(`herald:{${channel}}:meta`, 'epoch', 'head').xrange(`herald:{${channel}}:log`, '-', '+').exec();
  if (replies === null || replies.some(([error]) => error !== null)) throw new Error(`reading ${channel}: ${JSON.stringify(replies)}`);
  const [epoch, head] = replies[0]![1] as [string | null, string | null];
  const entries = replies[1]![1] as [string, string[]][];
  if (epoch === null) return { epoch: undefined, keys: [] };
  const keys = entries.map(([id, fields], i) => {
    assert.equal(id, `${i + 1}-0`, `${channel}: the stream holds ${id} at position ${i + 1}`);
    const d = fields[fields.indexOf('d') + 1]!;
    return (JSON.parse(d) as { k: string }).k;
  });
  assert.equal(keys.length, Number(head), `${channel}: the stream holds ${keys.length} entries, the head is ${head}`);
  return { epoch, keys };
}

export async function readTruths(redis: Redis | Cluster, channels: readonly string[]): Promise<Map<string, Truth>> {
  return new Map(await Promise.all(channels.map(async (channel) => [channel, await readTruth(redis, channel)] as const)));
}

/**
 * What Redis holds agrees with the ledger: no key stored twice, every stored key was published on that
 * channel and is either acknowledged at exactly that offset and epoch or unsettled (no 200 came back),
 * and every key acknowledged in the current epoch is stored at its offset. Returns how many stored
 * messages were never acknowledged.
 */
export function checkTruthAgainstLedger(ledger: Ledger, truths: ReadonlyMap<string, Truth>): number {
  let storedUnacked = 0;
  for (const [channel, truth] of truths) {
    const seen = new Set<string>();
    truth.keys.forEach((key, i) => {
      assert.ok(!seen.has(key), `${channel}: ${key} stored twice (again at #${i + 1})`);
      seen.add(key);
      const sent = ledger.published.get(key);
      assert.equal(sent?.channel, channel, `${channel}#${i + 1} holds ${key}, which was not published there`);
      const ack = ledger.acked.get(key);
      if (ack === undefined) {
        assert.ok(ledger.unsettled.has(key), `${channel}#${i + 1} holds ${key}: neither acknowledged nor unsettled`);
        storedUnacked++;
      } else {
        assert.deepEqual([ack.epoch, ack.offset], [truth.epoch, i + 1], `${key} acknowledged at ${ack.epoch}#${ack.offset}, stored at ${truth.epoch}#${i + 1}`);
      }
    });
    if (truth.epoch !== undefined) {
      for (const [offset, key] of ledger.ackedIn(channel, truth.epoch)) {
        assert.equal(truth.keys[offset - 1], key, `${channel}: acknowledged ${key} at #${offset} but Redis holds ${truth.keys[offset - 1]}`);
      }
    }
  }
  return storedUnacked;
}

/**
 * Each subscriber holds, of each of its channels, exactly `truths` in the current epoch (from offset
 * 1); earlier epochs (given, oldest first, in `earlier`) only as a prefix each, in order.
 */
export function checkSubscribers(subscribers: readonly Subscriber[], truths: ReadonlyMap<string, Truth>, earlier: ReadonlyMap<string, Truth[]> = new Map()): void {
  for (const subscriber of subscribers) {
    for (const channel of subscriber.channels) {
      const truth = truths.get(channel)!;
      const epochs = [...(earlier.get(channel) ?? []), truth];
      const segments = subscriber.segments(channel);
      let next = 0;
      segments.forEach((segment, s) => {
        const at = epochs.findIndex((e, i) => i >= next && e.epoch === segment.epoch);
        assert.ok(at >= 0, `${subscriber.name}: ${channel} epoch ${segment.epoch} is not one Redis had (or out of order)`);
        next = at + 1;
        assert.equal(segment.from, 1, `${subscriber.name}: ${channel} epoch ${segment.epoch} starts at #${segment.from}`);
        const expected = epochs[at]!.keys;
        if (s === segments.length - 1) {
          assert.equal(at, epochs.length - 1, `${subscriber.name}: ${channel} ends in epoch ${segment.epoch}, not ${truth.epoch}`);
          assert.deepEqual(segment.keys, expected, `${subscriber.name} holds ${channel} exactly as stored`);
        } else {
          assert.deepEqual(segment.keys, expected.slice(0, segment.keys.length), `${subscriber.name}: ${channel} epoch ${segment.epoch} is a prefix of what was stored`);
        }
      });
      if (truth.keys.length > 0) assert.ok(segments.length > 0, `${subscriber.name} got nothing of ${channel}`);
    }
  }
}

export interface SettleOptions {
  nodes: Nodes;
  channels: readonly string[];
  ledger: Ledger;
  failures: Failures;
  subscribers: readonly Subscriber[];
  redis: Redis | Cluster;
  /** Earlier epochs per channel (a flush), for checkSubscribers. */
  earlier?: ReadonlyMap<string, Truth[]>;
  timeoutMs?: number;
  /** Called once every subscriber caught up, before all of them drop and resume for the fence. */
  beforeReconnect?: () => void;
}

/**
 * The end of a scenario, once publishing has stopped: every subscriber catches up with what Redis
 * holds; then all drop and resume on their next node, one more message per channel must arrive as the
 * next offset; then everything is compared. Returns the truths compared with.
 */
export async function settle(options: SettleOptions): Promise<Map<string, Truth>> {
  const { nodes, channels, ledger, failures, subscribers, redis, timeoutMs = 15_000 } = options;
  const allReached = async (truths: Map<string, Truth>, stage: string): Promise<void> => {
    await failures.within(Promise.all(subscribers.map((s) => s.reached(truths))), timeoutMs, () =>
      `${stage}: ${subscribers.map((s) => s.progress(truths)).join('; ')}`,
    );
  };
  let truths = await readTruths(redis, channels);
  await allReached(truths, 'catching up');
  options.beforeReconnect?.();
  for (const subscriber of subscribers) subscriber.reconnect();
  await publishFence(nodes, channels, ledger, failures.fail, `fence${Date.now()}`);
  truths = await readTruths(redis, channels);
  await allReached(truths, 'after the fence');
  failures.assertNone();
  checkTruthAgainstLedger(ledger, truths);
  checkSubscribers(subscribers, truths, options.earlier);
  return truths;
}

/** Per-subscriber channel subsets: every channel is covered, each subscriber has 1..all of them. */
export function pickChannels(channels: readonly string[], random: () => number, index: number): string[] {
  const picked = channels.filter(() => random() < 0.5);
  const must = channels[index % channels.length]!;
  if (!picked.includes(must)) picked.push(must);
  return channels.filter((c) => picked.includes(c));
}

/** Drop schedule: `count` gaps of min..max deliveries. */
export function dropSchedule(random: () => number, count: number, min: number, max: number): number[] {
  return Array.from({ length: count }, () => min + Math.floor(random() * (max - min + 1)));
}
