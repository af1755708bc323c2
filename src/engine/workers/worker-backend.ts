import { HeraldError } from '../../errors.js';
import type { AppendInput, AppendResult, ControlBus, EngineHealth } from '../engine.js';
import type { BackendEvents, ChannelRead, ReplicaBackend } from '../replica.js';
import { decodeBatch, decodeRead, decodeResults, fromWireError, isOurs, type Request, type ToPrimary, type ToWorker, type WireRead, type WireResult } from './protocol.js';

/** A request the primary has not answered in this long fails (a publish answers 503, its outcome unknown). */
const REQUEST_TIMEOUT_MS = 10_000;

type Handler<K extends ToWorker['herald']> = (message: Extract<ToWorker, { herald: K }>) => void;
type Unanswered = Request extends infer R ? (R extends Request ? Omit<R, 'id'> : never) : never;

const ignore = (): void => {};

/**
 * A worker's end of the IPC with its primary: requests with answers (by id, with a timeout), notices
 * both ways, and one handler per kind of notice from the primary.
 */
export class PrimaryLink {
  #nextId = 0;
  readonly #pending = new Map<number, { resolve(value: unknown): void; reject(err: Error): void; timer: NodeJS.Timeout }>();
  readonly #handlers = new Map<string, (message: ToWorker) => void>();

  constructor() {
    process.on('message', (message: unknown) => {
      if (!isOurs<ToWorker>(message)) return; // prom-client's or anyone else's
      if (message.herald === 'answer') this.#answer(message);
      else this.#handlers.get(message.herald)?.(message);
    });
    process.on('disconnect', () => {
      for (const id of [...this.#pending.keys()]) this.#settle(id, new HeraldError('engine_unavailable', 'The primary process is gone.'));
    });
  }

  get isConnected(): boolean {
    return process.connected;
  }

  on<K extends ToWorker['herald']>(kind: K, handler: Handler<K>): void {
    this.#handlers.set(kind, handler as (message: ToWorker) => void);
  }

  /** Best effort: dropped when the primary is gone. */
  send(message: ToPrimary): void {
    if (process.connected) process.send!(message, undefined, undefined, ignore);
  }

  /** Tells the primary this worker exits; resolves once that, and so everything sent before, is written. */
  exiting(): Promise<void> {
    if (!process.connected) return Promise.resolve();
    return new Promise((resolve) => process.send!({ herald: 'exiting' } satisfies ToPrimary, undefined, undefined, () => resolve()));
  }

  request<T>(message: Unanswered): Promise<T> {
    if (!process.connected) return Promise.reject(new HeraldError('engine_unavailable', 'The primary process is gone.'));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => this.#settle(id, new HeraldError('engine_unavailable', `The primary did not answer within ${REQUEST_TIMEOUT_MS / 1000} s.`)), REQUEST_TIMEOUT_MS);
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      process.send!({ ...message, id }, undefined, undefined, (err: Error | null) => {
        if (err) this.#settle(id, new HeraldError('engine_unavailable', `The primary cannot be reached: ${err.message}`));
      });
    });
  }

  #answer(message: Extract<ToWorker, { herald: 'answer' }>): void {
    if (message.error !== undefined) this.#settle(message.id, fromWireError(message.error));
    else this.#settle(message.id, undefined, message.value);
  }

  #settle(id: number, err: Error | undefined, value?: unknown): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return; // timed out already
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (err === undefined) pending.resolve(value);
    else pending.reject(err);
  }

  close(): void {
    for (const id of [...this.#pending.keys()]) this.#settle(id, new HeraldError('shutting_down'));
  }
}

/**
 * The primary's store seen from a worker of `--workers` (the ReplicaBackend under its ReplicaEngine):
 * publishes and reads are requests to the primary, which assigns every offset; every batch it accepts
 * comes to every worker once, as one IPC message. IPC is ordered and lossless while both live; the
 * primary drops batches only to a worker far behind, and then says so (`lost`): its ReplicaEngine
 * checks every window and reads what it missed.
 */
export class WorkerBackend implements ReplicaBackend {
  readonly kind = 'worker';
  readonly bus: WorkerBus;
  readonly #link: PrimaryLink;
  #events: BackendEvents | undefined;

  constructor(link: PrimaryLink, nodeId: string) {
    this.#link = link;
    this.bus = new WorkerBus(link, nodeId);
    link.on('live', ({ batch }) => {
      const events = this.#events;
      if (events === undefined) return;
      for (const message of decodeBatch(batch)) events.onLive(message);
    });
    link.on('lost', () => this.#events?.onResubscribed());
  }

  listen(events: BackendEvents): void {
    this.#events = events;
  }

  /** Every batch comes anyway; this tells the primary to keep the channels' windows in memory. */
  async subscribe(channels: readonly string[]): Promise<void> {
    this.#link.send({ herald: 'subscribe', channels: [...channels] });
  }

  unsubscribe(channels: readonly string[]): void {
    if (channels.length > 0) this.#link.send({ herald: 'unsubscribe', channels: [...channels] });
  }

  async read(channel: string, afterOffset: number): Promise<ChannelRead> {
    return decodeRead(channel, await this.#link.request<WireRead>({ herald: 'read', channel, after: afterOffset }));
  }

  /** The primary's clock stamps the messages (one clock for every offset it assigns). */
  async publish(batch: readonly AppendInput[]): Promise<AppendResult[]> {
    return decodeResults(batch, await this.#link.request<WireResult[]>({ herald: 'publish', batch: [...batch] }));
  }

  health(): EngineHealth {
    return this.#link.isConnected ? { status: 'ok' } : { status: 'degraded', reason: 'primary_unreachable' };
  }

  async close(): Promise<void> {
    this.#events = undefined;
    this.#link.close();
  }
}

/** The control bus of a worker: every notice goes through the primary, to every worker or to one. */
export class WorkerBus implements ControlBus {
  readonly nodeId: string;
  readonly #link: PrimaryLink;
  readonly #handlers = new Map<string, (payload: string, fromNodeId: string) => void>();

  constructor(link: PrimaryLink, nodeId: string) {
    this.#link = link;
    this.nodeId = nodeId;
    link.on('bus', ({ from, topic, payload }) => this.#handlers.get(topic)?.(payload, from));
  }

  broadcast(topic: string, payload: string): void {
    this.#link.send({ herald: 'bus', to: undefined, topic, payload });
  }

  sendTo(nodeId: string, topic: string, payload: string): void {
    this.#link.send({ herald: 'bus', to: nodeId, topic, payload });
  }

  on(topic: string, handler: (payload: string, fromNodeId: string) => void): void {
    this.#handlers.set(topic, handler);
  }
}
