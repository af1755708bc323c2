// The pool of load-generator processes (bench/load-generator.ts) for one benchmark cell: forks them,
// splits the connections between them, and gathers their counts and latency histograms.
import { fork, type ChildProcess } from 'node:child_process';
import type { ChildReply, ConnectCommand, ParentCommand, ReadyReply, ReportReply, WireTransport } from './protocol.js';
import { cpuTimeUs, ROOT, stopChild, track } from './processes.js';

/** The open-files cap is per process; stay well under it. */
export const MAX_CONNECTIONS_PER_PROCESS = 5000;
const ADDRESSES_PER_PROCESS = 10;

export interface PoolOptions {
  host: string;
  port: number;
  /**
   * Several servers (the nodes of one deployment) instead of host:port: the processes are dealt out
   * over them in turn (their number rounded up to a multiple), so each gets an even share of the
   * connections.
   */
  targets?: readonly { host: string; port: number }[];
  transport: WireTransport;
  channel: string;
  connections: number;
  processes: number;
}

export interface PoolReport {
  received: number;
  answers: number;
  total: number;
  histogram: Map<number, number>;
  dropped: number;
  errors: string[];
}

export class LoadGeneratorPool {
  readonly #children: ChildProcess[] = [];
  readonly #totals: number[] = [];
  readonly #listeners = new Set<() => void>();

  /** Forks the processes and opens every connection; resolves once each one is open or failed. */
  static async open(options: PoolOptions): Promise<{ pool: LoadGeneratorPool; ready: ReadyReply }> {
    const pool = new LoadGeneratorPool();
    const targets = options.targets ?? [{ host: options.host, port: options.port }];
    const atLeast = Math.max(options.processes, Math.ceil(options.connections / MAX_CONNECTIONS_PER_PROCESS));
    const processes = Math.ceil(atLeast / targets.length) * targets.length;
    const readies: Promise<ReadyReply>[] = [];
    for (let p = 0; p < processes; p++) {
      const child = track(
        fork(`${ROOT}bench/load-generator.ts`, [], {
          cwd: ROOT,
          execArgv: ['--import', 'tsx'],
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        }),
      );
      const index = pool.#children.length;
      pool.#children.push(child);
      pool.#totals.push(0);
      child.on('message', (reply: ChildReply) => {
        if (reply.type !== 'progress') return;
        pool.#totals[index] = reply.total;
        for (const listener of pool.#listeners) listener();
      });
      const count = Math.floor(options.connections / processes) + (p < options.connections % processes ? 1 : 0);
      // Each process has its own source addresses: 127.0.0.10-19, 127.0.0.20-29, …
      const sourceAddresses = Array.from({ length: ADDRESSES_PER_PROCESS }, (_, i) => `127.0.0.${10 + p * ADDRESSES_PER_PROCESS + i}`);
      const target = targets[p % targets.length]!;
      const command: ConnectCommand = {
        type: 'connect',
        host: target.host,
        port: target.port,
        transport: options.transport,
        channel: options.channel,
        count,
        sourceAddresses,
        concurrency: 100,
      };
      readies.push(pool.#request<ReadyReply>(child, command, 'ready', 120_000));
    }
    const replies = await Promise.all(readies);
    return {
      pool,
      ready: {
        type: 'ready',
        connected: replies.reduce((n, r) => n + r.connected, 0),
        failed: replies.reduce((n, r) => n + r.failed, 0),
        errors: replies.flatMap((r) => r.errors).slice(0, 10),
      },
    };
  }

  get pids(): number[] {
    return this.#children.map((c) => c.pid!);
  }

  /** Messages received by every connection since they opened, as last reported (every ~20 ms). */
  get progressTotal(): number {
    return this.#totals.reduce((a, b) => a + b, 0);
  }

  /** Called on every progress report. */
  onProgress(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  cpuTimeUs(): number {
    return this.pids.reduce((sum, pid) => sum + cpuTimeUs(pid), 0);
  }

  /** Starts a measurement window in every process. */
  async reset(): Promise<void> {
    await Promise.all(this.#children.map((c) => this.#request(c, { type: 'reset' }, 'reset', 10_000)));
  }

  /** Counts and latencies since the last reset, merged over the processes. */
  async report(): Promise<PoolReport> {
    const replies = await Promise.all(this.#children.map((c) => this.#request<ReportReply>(c, { type: 'report' }, 'report', 10_000)));
    const histogram = new Map<number, number>();
    for (const reply of replies) {
      for (const [bucket, count] of reply.histogram) histogram.set(bucket, (histogram.get(bucket) ?? 0) + count);
    }
    return {
      received: replies.reduce((n, r) => n + r.received, 0),
      answers: replies.reduce((n, r) => n + r.answers, 0),
      total: replies.reduce((n, r) => n + r.total, 0),
      histogram,
      dropped: replies.reduce((n, r) => n + r.dropped, 0),
      errors: replies.flatMap((r) => r.errors).slice(0, 10),
    };
  }

  async close(): Promise<void> {
    for (const child of this.#children) {
      if (child.connected) child.send({ type: 'stop' } satisfies ParentCommand);
    }
    await Promise.all(this.#children.map((c) => stopChild(c, 3000)));
  }

  #request<R extends ChildReply>(child: ChildProcess, command: ParentCommand, replyType: R['type'], timeoutMs: number): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const onMessage = (reply: ChildReply): void => {
        if (reply.type !== replyType) return;
        done();
        resolve(reply as R);
      };
      const onExit = (code: number | null): void => {
        done();
        reject(new Error(`load generator exited (${code}) while waiting for "${replyType}"`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`load generator: no "${replyType}" within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
      };
      child.on('message', onMessage);
      child.on('exit', onExit);
      child.send(command);
    });
  }
}
