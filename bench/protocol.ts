// The messages between bench/run.ts and its load-generator processes (over the IPC channel of fork),
// and the clock both sides use for latency.
import { performance } from 'node:perf_hooks';

export type WireTransport = 'ws' | 'sse' | 'poll';

export interface ConnectCommand {
  type: 'connect';
  host: string;
  port: number;
  transport: WireTransport;
  channel: string;
  count: number;
  sourceAddresses: string[];
  /** Handshakes in flight at once, so the server's listen backlog never overflows. */
  concurrency: number;
}

export type ParentCommand = ConnectCommand | { type: 'reset' } | { type: 'report' } | { type: 'stop' };

export interface ReadyReply {
  type: 'ready';
  connected: number;
  failed: number;
  errors: string[];
}

export interface ProgressReply {
  type: 'progress';
  /** Messages received since connect. */
  total: number;
}

export interface ReportReply {
  type: 'report';
  /** Messages received since the last `reset`. */
  received: number;
  /** Long-poll answers carrying at least one message, since the last `reset`. */
  answers: number;
  /** Messages received since connect. */
  total: number;
  /** Latency histogram since the last `reset`: [bucket, count], bucket = latency in units of BUCKET_MS. */
  histogram: [number, number][];
  /** Connections the server closed or that failed after being established. */
  dropped: number;
  errors: string[];
}

export type ChildReply = ReadyReply | ProgressReply | ReportReply | { type: 'reset' };

/** Latency histogram resolution. */
export const BUCKET_MS = 0.1;

/** Epoch milliseconds with sub-millisecond precision, comparable across processes on one machine. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}
