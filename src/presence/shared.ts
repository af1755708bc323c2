// Presence shared by every node of one service (nodes on one Redis, workers of one box), replicated
// over the engine's ControlBus so that the Presence interface stays synchronous: transports and the
// HTTP edge read and write this node's copy, never the network.
//
// Each node owns its own entries (channel, connection → user, info) and tells the others:
//   - presence:delta  {e,s,d}       the node's changes, batched per turn of the event loop; the ops carry
//                                   the sequence numbers s, s+1, … (one per change, per node incarnation e)
//   - presence:beat   {e,s,n,h,q?}  every timeout/4: the node's sequence number, entry count and an
//                                   order-free hash of its entries (a digest); `q` asks for everyone's state
//                                   (a node that starts)
//   - presence:sync   {}            "send me your state", to one node
//   - presence:state  {e,s,p,m,d}   the node's whole state at s, in m parts of bounded size, to one node
//   - presence:bye    {e}           a node closing: drop its entries now
// Every node keeps a view of every other node's entries and merges them by user: a user with
// connections on two nodes is one member. A join fires on every node when a user's first connection
// anywhere appears, a leave when its last anywhere goes, once per node per transition, so each node's
// PresenceFanOut tells its own listeners as before.
//
// The bus is at most once (pub/sub): a delta may be lost. A view notices a gap in the sequence numbers,
// or a digest that does not match its copy, and asks the owner for its state, which replaces the copy
// (as a diff: only real changes fire events). A big state goes out in parts over several turns; the
// deltas that arrive meanwhile are applied and also replayed on the state once complete. A node not
// heard from for the timeout (less one beat) is dropped, its users leave. Memory is bounded: at most
// `maxEntriesPerNode` entries per node (a node refuses local entries past it), `maxNodes` views, and
// what a state in flight holds.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ControlBus, Engine } from '../engine/engine.js';
import { MemoryPresence } from './memory.js';
import type { Presence, PresenceChange, PresenceMember } from './presence.js';

export const DEFAULT_MAX_ENTRIES_PER_NODE = 500_000;
export const DEFAULT_MAX_NODES = 256;
/** Bytes of entries per delta or state message, about (a single bigger entry goes alone). */
const MAX_MESSAGE_BYTES = 64 * 1024;
/** Parts of one state message at most (bounds what a receiver assembles, with the entry cap). */
const MAX_STATE_PARTS = 10_000;
/** State parts sent per turn of the event loop (about 1 MiB): a big state goes out over several turns. */
const PARTS_PER_TURN = 16;
/** Deltas a receiver keeps while it assembles a state, to replay on it; past this, it asks again later. */
const MAX_REPLAYED_OPS = 50_000;
/**
 * Long polling shows a user's polling tabs as one connection named `poll:<user>` on every node: the
 * same id on two nodes (a user whose polls alternate between them) is still one connection. Other ids
 * (`c1`, `c2`, … per process) are per node.
 */
const SHARED_CONNECTION_PREFIX = 'poll:';

const TOPIC_DELTA = 'presence:delta';
const TOPIC_BEAT = 'presence:beat';
const TOPIC_SYNC = 'presence:sync';
const TOPIC_STATE = 'presence:state';
const TOPIC_BYE = 'presence:bye';

export interface SharedPresenceOptions {
  /** `--presence-timeout`: a node not heard from for this long has its users leave. */
  timeoutMs: number;
  maxEntriesPerNode?: number;
  maxNodes?: number;
  /** Run the beat timer (default true); unit tests call `tick` themselves. */
  autoTick?: boolean;
  now?: () => number;
  logger?: Logger;
}

interface Entry {
  readonly channel: string;
  readonly connectionId: string;
  readonly user: string;
  readonly info: Record<string, unknown> | undefined;
  /** JSON of `info`; '' when undefined. */
  readonly infoJson: string;
  /** Its share of the node's digest. */
  readonly hash: number;
}

/** One user in one channel, over every node. */
interface Member {
  info: Record<string, unknown> | undefined;
  /** Connections with per-node ids. */
  connections: number;
  /** Shared connection ids (SHARED_CONNECTION_PREFIX) → on how many nodes; each counts once. */
  shared: Map<string, number> | undefined;
}

/** A change of one entry, from a delta. */
type Op = { kind: '+'; key: string; entry: Entry } | { kind: '-'; key: string };

/** A state arriving in parts, and the deltas past it that arrived meanwhile. */
interface Assembly {
  seq: number;
  startedMs: number;
  parts: (Entry[] | undefined)[];
  received: number;
  entries: number;
  /** Deltas past `seq` (applied to the view as they came), replayed on the state once complete. */
  later: Op[];
  /** The last sequence number in `later` (`seq` when none). */
  lastSeq: number;
  /** `later` has every change from seq + 1 to lastSeq. */
  isGapFree: boolean;
}

/** A state being sent to one node, a part at a time. */
interface Outgoing {
  parts: string[];
  next: number;
}

/** The entries of one node: this node's own, or this node's copy of another's. */
class NodeState {
  readonly nodeId: string;
  epoch: string;
  /** The last change applied (the owner: the last made). */
  seq = 0;
  readonly entries = new Map<string, Entry>();
  /** Sum of the entries' hashes, mod 2^32. */
  hash = 0;
  lastHeardMs: number;
  /** When a state was last asked for; one request per beat period until answered. */
  lastRequestMs = -Infinity;
  /** The copy may differ from the owner's: a state is wanted. */
  isStale = false;
  assembly: Assembly | undefined;

  constructor(nodeId: string, epoch: string, nowMs: number) {
    this.nodeId = nodeId;
    this.epoch = epoch;
    this.lastHeardMs = nowMs;
  }
}

const keyOf = (channel: string, connectionId: string): string => `${channel}\n${connectionId}`;

/** FNV-1a over the UTF-16 code units. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function makeEntry(channel: string, connectionId: string, user: string, info: Record<string, unknown> | undefined, infoJson?: string): Entry {
  const json = infoJson ?? (info === undefined ? '' : JSON.stringify(info));
  return { channel, connectionId, user, info, infoJson: json, hash: hashString(`${channel}\n${connectionId}\n${user}\n${json}`) };
}

/** `[channel, connectionId, user, info?]`, as deltas and states carry an entry. */
function entryWire(entry: Entry): string {
  const head = `[${JSON.stringify(entry.channel)},${JSON.stringify(entry.connectionId)},${JSON.stringify(entry.user)}`;
  return entry.infoJson === '' ? `${head}]` : `${head},${entry.infoJson}]`;
}

const isString = (value: unknown): value is string => typeof value === 'string';
const isSeq = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const isInfo = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** An entry from the wire, or undefined when malformed. */
function parseEntry(value: unknown, offset = 0): Entry | undefined {
  if (!Array.isArray(value)) return undefined;
  const [channel, connectionId, user, info] = [value[offset], value[offset + 1], value[offset + 2], value[offset + 3]];
  if (!isString(channel) || !isString(connectionId) || !isString(user)) return undefined;
  if (info !== undefined && !isInfo(info)) return undefined;
  return makeEntry(channel, connectionId, user, info);
}

function parseOp(value: unknown): Op | undefined {
  if (!Array.isArray(value)) return undefined;
  if (value[0] === '-' && isString(value[1]) && isString(value[2])) return { kind: '-', key: keyOf(value[1], value[2]) };
  if (value[0] !== '+') return undefined;
  const entry = parseEntry(value, 1);
  return entry === undefined ? undefined : { kind: '+', key: keyOf(entry.channel, entry.connectionId), entry };
}

function parseObject(payload: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(payload);
    return isInfo(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Presence that is the same on every node sharing `bus`. */
export class SharedPresence implements Presence {
  readonly #bus: ControlBus;
  readonly #timeoutMs: number;
  /** Beat period: a quarter of the timeout. */
  readonly #beatMs: number;
  readonly #maxEntries: number;
  readonly #maxNodes: number;
  readonly #now: () => number;
  readonly #logger: Logger | undefined;
  readonly #local: NodeState;
  /** Other nodes, by node id. */
  readonly #views = new Map<string, NodeState>();
  /** channel → user → member, over this node and every view. */
  readonly #channels = new Map<string, Map<string, Member>>();
  /** This node's entries with an expiry: key → expiresAtMs. */
  readonly #expiring = new Map<string, number>();
  /** Ops not yet sent, the first with sequence number #pendingSeq. */
  #pending: string[] = [];
  #pendingSeq = 0;
  #pendingBytes = 0;
  /** This node's state as wire parts, shared by the sends under way while this node's seq stays. */
  #snapshot: { seq: number; parts: string[] } | undefined;
  /** States being sent, by recipient. */
  readonly #outgoing = new Map<string, Outgoing>();
  #isDrainScheduled = false;
  #timer: NodeJS.Timeout | undefined;
  #isClosed = false;
  #hasWarnedFull = false;
  #handler: (change: PresenceChange) => void = () => {};

  constructor(bus: ControlBus, options: SharedPresenceOptions) {
    this.#bus = bus;
    this.#timeoutMs = options.timeoutMs;
    this.#beatMs = Math.max(50, Math.floor(options.timeoutMs / 4));
    this.#maxEntries = options.maxEntriesPerNode ?? DEFAULT_MAX_ENTRIES_PER_NODE;
    this.#maxNodes = options.maxNodes ?? DEFAULT_MAX_NODES;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger;
    this.#local = new NodeState(bus.nodeId, randomBytes(6).toString('hex'), this.#now());
    const guard = (handle: (message: Record<string, unknown>, from: string) => void) => (payload: string, from: string) => {
      if (this.#isClosed || from === this.#bus.nodeId) return;
      const message = parseObject(payload);
      if (message === undefined) return;
      try {
        handle(message, from);
      } catch (err) {
        // A listener's fault must not stop the bus; the next state heals whatever was half applied.
        this.#logger?.warn({ err, from }, 'presence message failed');
      }
    };
    bus.on(TOPIC_DELTA, guard((m, from) => this.#onDelta(m, from)));
    bus.on(TOPIC_BEAT, guard((m, from) => this.#onBeat(m, from)));
    bus.on(TOPIC_SYNC, guard((_m, from) => this.#sendState(from)));
    bus.on(TOPIC_STATE, guard((m, from) => this.#onState(m, from)));
    bus.on(TOPIC_BYE, guard((m, from) => this.#onBye(m, from)));
    // A node that starts asks everyone for their state (and says it exists).
    this.#beat(true);
    if (options.autoTick ?? true) {
      this.#timer = setInterval(() => this.tick(this.#now()), this.#beatMs);
      this.#timer.unref();
    }
  }

  // --- Presence ---------------------------------------------------------------------------------------

  onChange(handler: (change: PresenceChange) => void): void {
    this.#handler = handler;
  }

  enter(channel: string, connectionId: string, user: string, info: Record<string, unknown> | undefined, expiresAtMs?: number): void {
    const key = keyOf(channel, connectionId);
    const old = this.#local.entries.get(key);
    let entry: Entry | undefined;
    if (old !== undefined && old.user === user) {
      // A refresh (a poll, a token refresh): replicated only when the info changed.
      if (old.info !== info) {
        const infoJson = info === undefined ? '' : JSON.stringify(info);
        if (infoJson !== old.infoJson) entry = makeEntry(channel, connectionId, user, info, infoJson);
      }
    } else if (old === undefined && this.#local.entries.size >= this.#maxEntries) {
      if (!this.#hasWarnedFull) this.#logger?.warn({ max: this.#maxEntries }, 'presence is full on this node: new connections are not shown');
      this.#hasWarnedFull = true;
      return;
    } else {
      entry = makeEntry(channel, connectionId, user, info);
    }
    if (expiresAtMs === undefined) this.#expiring.delete(key);
    else this.#expiring.set(key, expiresAtMs);
    if (entry === undefined) return;
    this.#add(this.#local, key, entry);
    this.#queue(`["+",${entryWire(entry).slice(1)}`);
  }

  exit(channel: string, connectionId: string): void {
    const key = keyOf(channel, connectionId);
    this.#expiring.delete(key);
    if (this.#remove(this.#local, key)) this.#queue(`["-",${JSON.stringify(channel)},${JSON.stringify(connectionId)}]`);
  }

  members(channel: string): PresenceMember[] {
    const users = this.#channels.get(channel);
    if (users === undefined) return [];
    return [...users].map(([user, member]) => ({ user, info: member.info, connections: member.connections + (member.shared?.size ?? 0) }));
  }

  count(channel: string): number {
    return this.#channels.get(channel)?.size ?? 0;
  }

  /** Expires this node's own connections; other nodes expire theirs (and tell). */
  sweep(nowMs: number): void {
    for (const [key, expiresAtMs] of [...this.#expiring]) {
      if (expiresAtMs > nowMs) continue;
      const entry = this.#local.entries.get(key);
      if (entry === undefined) this.#expiring.delete(key);
      else this.exit(entry.channel, entry.connectionId);
    }
  }

  // --- Between nodes ----------------------------------------------------------------------------------

  /** Every beat period: sends pending deltas and the beat, drops silent nodes, asks stale ones for their state. */
  tick(nowMs: number): void {
    if (this.#isClosed) return;
    this.#beat(false);
    for (const view of [...this.#views.values()]) {
      if (nowMs - view.lastHeardMs >= this.#timeoutMs - this.#beatMs) {
        this.#logger?.info({ node: view.nodeId, silentMs: nowMs - view.lastHeardMs }, 'presence: node not heard from, its users leave');
        this.#drop(view);
        continue;
      }
      if (view.assembly !== undefined && nowMs - view.assembly.startedMs >= 2 * this.#beatMs) {
        view.assembly = undefined; // a part was lost
        view.isStale = true;
      }
      if (view.isStale) this.#requestState(view, nowMs);
    }
  }

  /** Sends the deltas made so far now (they are otherwise sent at the end of the current turn). */
  flush(): void {
    if (this.#pending.length === 0) return;
    const payload = `{"e":"${this.#local.epoch}","s":${this.#pendingSeq},"d":[${this.#pending.join(',')}]}`;
    this.#pending = [];
    this.#pendingBytes = 0;
    if (!this.#isClosed) this.#bus.broadcast(TOPIC_DELTA, payload);
  }

  /** Stops the beat and tells the other nodes that this node's users leave. Local changes after it stay local. */
  close(): void {
    if (this.#isClosed) return;
    clearInterval(this.#timer);
    this.flush();
    this.#bus.broadcast(TOPIC_BYE, `{"e":"${this.#local.epoch}"}`);
    this.#isClosed = true;
    this.#outgoing.clear();
    this.#snapshot = undefined;
  }

  /** For tests and metrics: the nodes this node hears (itself excluded). */
  get nodeIds(): string[] {
    return [...this.#views.keys()];
  }

  #queue(op: string): void {
    this.#local.seq++;
    if (this.#isClosed) return;
    if (this.#pending.length === 0) {
      this.#pendingSeq = this.#local.seq;
      queueMicrotask(() => this.flush());
    }
    this.#pending.push(op);
    this.#pendingBytes += op.length;
    if (this.#pendingBytes >= MAX_MESSAGE_BYTES) this.flush();
  }

  #beat(isAsking: boolean): void {
    this.flush();
    const { epoch, seq, entries, hash } = this.#local;
    this.#bus.broadcast(TOPIC_BEAT, `{"e":"${epoch}","s":${seq},"n":${entries.size},"h":${hash}${isAsking ? ',"q":1' : ''}}`);
  }

  /**
   * Sends this node's state to `to`: its first parts now, before any later delta (so that the receiver
   * knows which deltas come after it), the rest over the next turns. A send under way to the same node
   * starts over.
   */
  #sendState(to: string): void {
    this.flush();
    if (this.#snapshot?.seq !== this.#local.seq) this.#snapshot = { seq: this.#local.seq, parts: this.#stateParts() };
    const outgoing: Outgoing = { parts: this.#snapshot.parts, next: 0 };
    this.#outgoing.delete(to);
    this.#sendParts(to, outgoing, PARTS_PER_TURN);
    if (outgoing.next < outgoing.parts.length) this.#outgoing.set(to, outgoing);
    this.#drainLater();
  }

  #stateParts(): string[] {
    const { epoch, seq } = this.#local;
    const groups: string[][] = [[]];
    let bytes = 0;
    for (const entry of this.#local.entries.values()) {
      const wire = entryWire(entry);
      if (bytes > 0 && bytes + wire.length > MAX_MESSAGE_BYTES) {
        groups.push([]);
        bytes = 0;
      }
      groups[groups.length - 1]!.push(wire);
      bytes += wire.length + 1;
    }
    return groups.map((group, p) => `{"e":"${epoch}","s":${seq},"p":${p},"m":${groups.length},"d":[${group.join(',')}]}`);
  }

  /** Sends up to `budget` parts; returns what is left of the budget. */
  #sendParts(to: string, outgoing: Outgoing, budget: number): number {
    while (budget > 0 && outgoing.next < outgoing.parts.length) {
      this.#bus.sendTo(to, TOPIC_STATE, outgoing.parts[outgoing.next++]!);
      budget--;
    }
    return budget;
  }

  #drainLater(): void {
    if (this.#outgoing.size === 0) {
      this.#snapshot = undefined;
      return;
    }
    if (this.#isDrainScheduled) return;
    this.#isDrainScheduled = true;
    setImmediate(() => {
      this.#isDrainScheduled = false;
      let budget = PARTS_PER_TURN;
      for (const [to, outgoing] of this.#outgoing) {
        budget = this.#sendParts(to, outgoing, budget);
        if (outgoing.next === outgoing.parts.length) this.#outgoing.delete(to);
        if (budget === 0) break;
      }
      this.#drainLater();
    });
  }

  #requestState(view: NodeState, nowMs: number): void {
    // A state under way answers it (or is abandoned by the tick).
    if (view.assembly !== undefined || nowMs - view.lastRequestMs < this.#beatMs) return;
    view.lastRequestMs = nowMs;
    this.#bus.sendTo(view.nodeId, TOPIC_SYNC, '{}');
  }

  /** The view of `nodeId` in incarnation `epoch`; undefined when there are too many nodes. */
  #viewOf(nodeId: string, epoch: unknown): NodeState | undefined {
    if (!isString(epoch)) return undefined;
    const nowMs = this.#now();
    let view = this.#views.get(nodeId);
    if (view === undefined) {
      if (this.#views.size >= this.#maxNodes) return undefined;
      view = new NodeState(nodeId, epoch, nowMs);
      this.#views.set(nodeId, view);
    } else if (view.epoch !== epoch) {
      // The node restarted under the same id: its old entries stay until its new state replaces them
      // (a quick restart does not make its users flap).
      view.epoch = epoch;
      view.seq = 0;
      view.isStale = true;
      view.assembly = undefined;
    }
    view.lastHeardMs = nowMs;
    return view;
  }

  #onDelta(message: Record<string, unknown>, from: string): void {
    const { s: first, d: ops } = message;
    if (!isSeq(first) || first === 0 || !Array.isArray(ops)) return;
    const view = this.#viewOf(from, message.e);
    if (view === undefined) return;
    const assembly = view.assembly;
    if (assembly !== undefined) {
      // Past the state being assembled: kept to replay on it.
      if (first > Math.max(view.seq, assembly.lastSeq) + 1) assembly.isGapFree = false;
    } else if (first > view.seq + 1) {
      view.isStale = true; // some were lost
    }
    for (let i = 0; i < ops.length; i++) {
      const seq = first + i;
      if (seq <= view.seq) continue; // seen already (or older than the state applied)
      const op = parseOp(ops[i]);
      if (op !== undefined) this.#apply(view, op);
      if (assembly !== undefined && seq > assembly.seq && view.assembly === assembly) {
        if (op !== undefined) assembly.later.push(op);
        assembly.lastSeq = seq;
        if (assembly.later.length > MAX_REPLAYED_OPS) {
          view.assembly = undefined;
          view.isStale = true;
        }
      }
    }
    view.seq = Math.max(view.seq, first + ops.length - 1);
    if (view.isStale) this.#requestState(view, this.#now());
  }

  #apply(view: NodeState, op: Op): void {
    if (op.kind === '-') this.#remove(view, op.key);
    else if (view.entries.has(op.key) || view.entries.size < this.#maxEntries) this.#add(view, op.key, op.entry);
  }

  #onBeat(message: Record<string, unknown>, from: string): void {
    const { s: seq, n: count, h: hash } = message;
    if (!isSeq(seq) || !isSeq(count) || !isSeq(hash)) return;
    const view = this.#viewOf(from, message.e);
    if (message.q === 1) this.#sendState(from);
    if (view === undefined || seq < view.seq) return;
    if (count === view.entries.size && hash === view.hash) {
      // The copy is the owner's state at `seq`, whatever was lost on the way.
      view.seq = seq;
      view.isStale = false;
      view.assembly = undefined;
    } else {
      view.isStale = true;
      this.#requestState(view, this.#now());
    }
  }

  #onState(message: Record<string, unknown>, from: string): void {
    const { s: seq, p: part, m: parts, d: wire } = message;
    if (!isSeq(seq) || !isSeq(part) || !isSeq(parts) || part >= parts || parts > MAX_STATE_PARTS || !Array.isArray(wire)) return;
    const view = this.#viewOf(from, message.e);
    if (view === undefined) return;
    let assembly = view.assembly;
    if (assembly === undefined || assembly.seq !== seq || assembly.parts.length !== parts) {
      // A state older than what the view applied cannot be brought forward: the deltas between are gone.
      if (seq < view.seq || (assembly !== undefined && seq < assembly.seq)) return;
      assembly = view.assembly = {
        seq,
        startedMs: this.#now(),
        parts: new Array<Entry[] | undefined>(parts).fill(undefined),
        received: 0,
        entries: 0,
        later: [],
        lastSeq: seq,
        isGapFree: true,
      };
    }
    if (assembly.parts[part] !== undefined) return;
    const entries = wire.map((value) => parseEntry(value)).filter((entry): entry is Entry => entry !== undefined);
    assembly.entries += entries.length;
    if (assembly.entries > this.#maxEntries) {
      view.assembly = undefined;
      return;
    }
    assembly.parts[part] = entries;
    if (++assembly.received < parts) return;
    view.assembly = undefined;
    // The owner's state at `seq`, brought forward by the deltas that came after it, then diffed.
    const next = new Map<string, Entry>();
    for (const p of assembly.parts) for (const entry of p!) next.set(keyOf(entry.channel, entry.connectionId), entry);
    for (const op of assembly.later) {
      if (op.kind === '-') next.delete(op.key);
      else if (next.has(op.key) || next.size < this.#maxEntries) next.set(op.key, op.entry);
    }
    this.#replace(view, next);
    view.seq = Math.max(view.seq, seq);
    view.isStale = !assembly.isGapFree;
    view.lastRequestMs = -Infinity; // answered: the next gap may ask at once
    if (view.isStale) this.#requestState(view, this.#now());
  }

  #onBye(message: Record<string, unknown>, from: string): void {
    const view = this.#views.get(from);
    if (view !== undefined && view.epoch === message.e) this.#drop(view);
  }

  /** Makes the view's entries `next`: additions first, so that a user whose connection changed stays. */
  #replace(view: NodeState, next: ReadonlyMap<string, Entry>): void {
    for (const [key, entry] of next) this.#add(view, key, entry);
    for (const key of [...view.entries.keys()]) if (!next.has(key)) this.#remove(view, key);
  }

  #drop(view: NodeState): void {
    this.#views.delete(view.nodeId);
    for (const key of [...view.entries.keys()]) this.#remove(view, key);
  }

  // --- The merged view --------------------------------------------------------------------------------

  /** Sets `key` of `state` to `entry`, announcing a join when its user was nowhere in the channel. */
  #add(state: NodeState, key: string, entry: Entry): void {
    const old = state.entries.get(key);
    if (old !== undefined) {
      if (old.user !== entry.user) {
        this.#remove(state, key);
      } else {
        if (old.infoJson === entry.infoJson) return;
        state.entries.set(key, entry);
        state.hash = (state.hash - old.hash + entry.hash) >>> 0;
        const member = this.#channels.get(entry.channel)?.get(entry.user);
        if (member !== undefined) member.info = entry.info;
        return;
      }
    }
    state.entries.set(key, entry);
    state.hash = (state.hash + entry.hash) >>> 0;
    let users = this.#channels.get(entry.channel);
    if (users === undefined) {
      users = new Map();
      this.#channels.set(entry.channel, users);
    }
    let member = users.get(entry.user);
    const isJoin = member === undefined;
    if (member === undefined) {
      member = { info: entry.info, connections: 0, shared: undefined };
      users.set(entry.user, member);
    }
    member.info = entry.info;
    if (entry.connectionId.startsWith(SHARED_CONNECTION_PREFIX)) {
      member.shared ??= new Map();
      member.shared.set(entry.connectionId, (member.shared.get(entry.connectionId) ?? 0) + 1);
    } else {
      member.connections++;
    }
    if (isJoin) this.#handler({ kind: 'join', channel: entry.channel, user: entry.user, info: entry.info });
  }

  /** Removes `key` of `state`, announcing a leave when it was its user's last connection anywhere. */
  #remove(state: NodeState, key: string): boolean {
    const entry = state.entries.get(key);
    if (entry === undefined) return false;
    state.entries.delete(key);
    state.hash = (state.hash - entry.hash) >>> 0;
    const users = this.#channels.get(entry.channel)!;
    const member = users.get(entry.user)!;
    if (entry.connectionId.startsWith(SHARED_CONNECTION_PREFIX)) {
      const nodes = member.shared!.get(entry.connectionId)! - 1;
      if (nodes > 0) member.shared!.set(entry.connectionId, nodes);
      else member.shared!.delete(entry.connectionId);
    } else {
      member.connections--;
    }
    if (member.connections > 0 || (member.shared?.size ?? 0) > 0) return true;
    users.delete(entry.user);
    if (users.size === 0) this.#channels.delete(entry.channel);
    this.#handler({ kind: 'leave', channel: entry.channel, user: entry.user, info: member.info });
    return true;
  }
}

/**
 * The presence of a node: in memory when this node alone is the service (SQLite, memory), shared over
 * the engine's bus otherwise (Redis, workers). `close` stops the shared one's beat and says goodbye.
 */
export function createPresence(engine: Pick<Engine, 'kind' | 'bus'>, timeoutMs: number, logger?: Logger): { presence: Presence; close(): void } {
  if (engine.kind === 'sqlite' || engine.kind === 'memory') return { presence: new MemoryPresence(), close: () => {} };
  const presence = new SharedPresence(engine.bus, { timeoutMs, logger });
  return { presence, close: () => presence.close() };
}
