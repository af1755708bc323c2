// The IPC between the primary of `--workers` and its workers (process.send / worker.on('message')).
// Every message of ours is an object whose `herald` field names it; prom-client's cluster messages
// use `type` and node:cluster's own use `cmd`, so neither is ever mistaken for one of ours.
import { ERRORS, HeraldError, type ErrorCode } from '../../errors.js';
import { Message } from '../../hub/message.js';
import type { Stats } from '../../metrics.js';
import type { AppendInput, AppendResult } from '../engine.js';

/** A message without its channel and epoch: [offset, event or 0, dataJson, publishedAtMs]. */
type WireMessage = [number, string | 0, string, number];
/** A channel's messages of one batch: [channel, epoch, messages]. */
type WireGroup = [string, string, WireMessage[]];
/** One publish result: [offset, epoch, publishedAtMs], and for a duplicate the original's [event or 0, dataJson]. */
export type WireResult = [number, string, number] | [number, string, number, string | 0, string];

export interface WireError {
  code: ErrorCode;
  message: string;
}

/** What a worker asks of the primary, each with an id its answer carries back. */
export type Request =
  | { herald: 'publish'; id: number; batch: AppendInput[] }
  | { herald: 'read'; id: number; channel: string; after: number }
  | { herald: 'totals'; id: number; what: 'stats' | 'metrics' };

export type ToPrimary =
  | Request
  /** The worker's IPC listener is in place: the primary may send it `hello`. */
  | { herald: 'join' }
  /** The worker listens (on the shared port) and serves. */
  | { herald: 'ready'; url: string }
  /** The worker keeps windows of these channels (the primary keeps them in memory meanwhile). */
  | { herald: 'subscribe'; channels: string[] }
  | { herald: 'unsubscribe'; channels: string[] }
  /** A control-bus notice for every worker (`to` undefined) or for one. */
  | { herald: 'bus'; to: string | undefined; topic: string; payload: string }
  /** The worker is about to exit: serve it no more gathers (everything it sent before is written). */
  | { herald: 'exiting' }
  /** This worker's part of a `gather`. */
  | { herald: 'gathered'; id: number; stats?: Stats; metrics?: unknown[] };

export type ToWorker =
  | { herald: 'hello'; nodeId: string; port: number; demoSecret: string }
  /** The answer to a request: `value` (per request kind) or `error`. */
  | { herald: 'answer'; id: number; value?: unknown; error?: WireError }
  /** Every accepted batch, encoded once for all workers (encodeBatch). */
  | { herald: 'live'; batch: string }
  /** Batches were dropped to this worker while it was far behind: every window must be checked. */
  | { herald: 'lost' }
  | { herald: 'bus'; from: string; topic: string; payload: string }
  /** The primary asks for this worker's stats or metrics (to answer some worker's `totals`). */
  | { herald: 'gather'; id: number; what: 'stats' | 'metrics' }
  /** Close every connection and exit. */
  | { herald: 'stop' };

/** What `read` answers: the channel's epoch (undefined: nothing published), head, and messages after `after`. */
export interface WireRead {
  epoch: string | undefined;
  head: number;
  messages: WireMessage[];
}

export function isOurs<T extends { herald: string }>(message: unknown): message is T {
  return typeof message === 'object' && message !== null && typeof (message as { herald?: unknown }).herald === 'string';
}

const toWire = (m: Message): WireMessage => [m.offset, m.event ?? 0, m.dataJson, m.publishedAtMs];

function fromWire(channel: string, epoch: string, [offset, event, dataJson, publishedAtMs]: WireMessage): Message {
  return new Message({ channel, offset, epoch, event: event === 0 ? undefined : event, dataJson, publishedAtMs });
}

/** A batch of accepted messages as the one string every worker is sent. */
export function encodeBatch(messages: readonly Message[]): string {
  const groups: WireGroup[] = [];
  let last: WireGroup | undefined;
  for (const m of messages) {
    if (last === undefined || last[0] !== m.channel || last[1] !== m.epoch) groups.push((last = [m.channel, m.epoch, []]));
    last[2].push(toWire(m));
  }
  return JSON.stringify(groups);
}

export function decodeBatch(text: string): Message[] {
  return (JSON.parse(text) as WireGroup[]).flatMap(([channel, epoch, list]) => list.map((w) => fromWire(channel, epoch, w)));
}

export function encodeRead(epoch: string | undefined, head: number, messages: readonly Message[]): WireRead {
  return { epoch, head, messages: messages.map(toWire) };
}

export function decodeRead(channel: string, read: WireRead): { epoch: string | undefined; head: number; messages: Message[] } {
  const epoch = read.epoch;
  return { epoch, head: read.head, messages: epoch === undefined ? [] : read.messages.map((w) => fromWire(channel, epoch, w)) };
}

/** Fresh messages are rebuilt from the worker's own input; a duplicate carries the original's content. */
export function encodeResults(results: readonly AppendResult[]): WireResult[] {
  return results.map(({ message: m, isDuplicate }) =>
    isDuplicate ? [m.offset, m.epoch, m.publishedAtMs, m.event ?? 0, m.dataJson] : [m.offset, m.epoch, m.publishedAtMs],
  );
}

export function decodeResults(batch: readonly AppendInput[], results: readonly WireResult[]): AppendResult[] {
  return results.map((r, i) => {
    const input = batch[i]!;
    const isDuplicate = r.length === 5;
    return {
      isDuplicate,
      message: new Message({
        channel: input.channel,
        offset: r[0],
        epoch: r[1],
        publishedAtMs: r[2],
        event: isDuplicate ? (r[3] === 0 ? undefined : r[3]) : input.event,
        dataJson: isDuplicate ? r[4] : input.dataJson,
        idempotencyKey: input.idempotencyKey,
      }),
    };
  });
}

export function toWireError(err: unknown): WireError {
  if (err instanceof HeraldError) return { code: err.code, message: err.message };
  return { code: 'internal', message: ERRORS.internal.message }; // the primary logs what it was
}

export function fromWireError(error: WireError): HeraldError {
  return new HeraldError(error.code, error.message);
}
