// Turns benchmark results into the markdown tables printed by `npm run bench` and kept in
// docs/benchmarks.md, with Herald ÷ raw ratios checked against the targets of issue 3.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Target } from './processes.js';
import { BUCKET_MS, type WireTransport } from './protocol.js';

export interface CellSpec {
  subscribers: number;
  /** Messages per second, or 'max': as fast as deliveries keep up. */
  rate: number | 'max';
}

export interface FanoutResult {
  target: Target;
  transport: WireTransport;
  spec: CellSpec;
  connected: number;
  deliveriesPerS: number;
  cpuUsPerDelivery: number;
  p50Ms: number;
  p99Ms: number;
  /** Long-poll: messages per answer (answers batch what arrived since the last poll). */
  messagesPerAnswer: number;
  /** Server RSS with every connection idle minus RSS with none, per connection. */
  rssPerConnBytes: number;
  /** The same for V8 heap + external memory (where the RSS goes). */
  heapPerConnBytes: number;
  serverCpuPct: number;
  loadGeneratorCpuPct: number;
  /** CPU used by processes other than the benchmark's during the window, in % of one core. */
  backgroundCpuPct: number;
  /** Runs the figures are the median of. */
  runs: number;
  /** How many of them were clean (the rest of the machine quiet); 0 means every run was disturbed. */
  cleanRuns: number;
  published: number;
  /** Deliveries expected over the whole run (published × connected) minus deliveries received. */
  missing: number;
  dropped: number;
  error?: string;
}

export interface PublishResult {
  store: string;
  publishers: number;
  batchSize: number;
  messagesPerS: number;
  cpuUsPerMessage: number;
  batchP50Ms: number;
  batchP99Ms: number;
  failed: number;
  error?: string;
}

export interface Targets {
  deliveriesRatioMin: number;
  cpuRatioMax: Record<WireTransport, number>;
  idleConnMaxBytes: number;
  publishMinPerS: number;
}

export const TARGETS: Targets = {
  deliveriesRatioMin: 0.9,
  cpuRatioMax: { ws: 1.2, sse: 1.2, poll: 1.0 },
  idleConnMaxBytes: 8 * 1024,
  publishMinPerS: 20_000,
};

export const TRANSPORT_LABEL: Record<WireTransport, string> = { ws: 'WebSocket', sse: 'SSE', poll: 'long-poll' };

export function percentile(histogram: Map<number, number>, p: number): number {
  const buckets = [...histogram].sort((a, b) => a[0] - b[0]);
  const count = buckets.reduce((n, [, c]) => n + c, 0);
  if (count === 0) return NaN;
  const rank = Math.ceil((p / 100) * count);
  let seen = 0;
  for (const [bucket, c] of buckets) {
    seen += c;
    if (seen >= rank) return bucket * BUCKET_MS;
  }
  return buckets[buckets.length - 1]![0] * BUCKET_MS;
}

export const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '—';
const kib = (bytes: number): string => (Number.isFinite(bytes) ? `${fmt(bytes / 1024, 1)} KiB` : '—');
export const mark = (ok: boolean): string => (ok ? '✅' : '❌');

export function specTitle(spec: CellSpec): string {
  return `${fmt(spec.subscribers)} subscribers, ${spec.rate === 'max' ? 'saturation (publish as fast as deliveries keep up)' : `${spec.rate} msg/s`}`;
}

function find(results: readonly FanoutResult[], target: Target, transport: WireTransport, spec: CellSpec): FanoutResult | undefined {
  return results.find((r) => r.target === target && r.transport === transport && r.spec.subscribers === spec.subscribers && r.spec.rate === spec.rate);
}

function row(r: FanoutResult): string {
  if (r.error !== undefined) return `| ${TRANSPORT_LABEL[r.transport]} | ${r.target} | failed: ${r.error.replace(/\|/g, '/').slice(0, 200)} | | | | | | | | |`;
  const loss = r.missing === 0 && r.dropped === 0 ? '0' : `${fmt(r.missing)}${r.dropped > 0 ? ` (${r.dropped} conns dropped)` : ''}`;
  const runs = r.cleanRuns > 0 ? `${r.runs}` : `${r.runs}, all disturbed`;
  return (
    `| ${TRANSPORT_LABEL[r.transport]} | ${r.target} (${runs}) | ${fmt(r.deliveriesPerS)} | ${fmt(r.cpuUsPerDelivery, 2)} | ` +
    `${fmt(r.p50Ms, 1)} / ${fmt(r.p99Ms, 1)}${r.transport === 'poll' ? ` (${fmt(r.messagesPerAnswer, 1)} msgs/answer)` : ''} | ${kib(r.rssPerConnBytes)} (heap ${kib(r.heapPerConnBytes)}) | ` +
    `${fmt(r.serverCpuPct)}% | ${fmt(r.loadGeneratorCpuPct)}% | ${fmt(Math.max(0, r.backgroundCpuPct))}% | ${loss} |`
  );
}

function ratioRow(raw: FanoutResult, herald: FanoutResult): string {
  if (raw.error !== undefined || herald.error !== undefined) return '';
  const deliveries = herald.deliveriesPerS / raw.deliveriesPerS;
  const cpu = herald.cpuUsPerDelivery / raw.cpuUsPerDelivery;
  const cpuMax = TARGETS.cpuRatioMax[herald.transport];
  const latency = `${fmt(herald.p50Ms / raw.p50Ms, 2)}× / ${fmt(herald.p99Ms / raw.p99Ms, 2)}×`;
  const memory = herald.rssPerConnBytes / raw.rssPerConnBytes;
  return (
    `| ${TRANSPORT_LABEL[herald.transport]} | **herald ÷ raw** | **${fmt(deliveries, 2)}×** ${mark(deliveries >= TARGETS.deliveriesRatioMin)} | ` +
    `**${fmt(cpu, 2)}×** ${mark(cpu <= cpuMax)} (≤ ${cpuMax}) | ${latency} | ${fmt(memory, 2)}× | | | | |`
  );
}

export function fanoutTables(results: readonly FanoutResult[], specs: readonly CellSpec[], transports: readonly WireTransport[]): string {
  const parts: string[] = [];
  for (const spec of specs) {
    parts.push(`### ${specTitle(spec)}\n`);
    parts.push('| transport | server (runs) | deliveries/s | server CPU µs/delivery | latency p50 / p99 ms | server memory per idle conn (RSS) | server CPU | load-gen CPU | other load | missing deliveries |');
    parts.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const transport of transports) {
      const raw = find(results, 'raw', transport, spec);
      const herald = find(results, 'herald', transport, spec);
      if (raw !== undefined) parts.push(row(raw));
      if (herald !== undefined) parts.push(row(herald));
      if (raw !== undefined && herald !== undefined) {
        const ratio = ratioRow(raw, herald);
        if (ratio !== '') parts.push(ratio);
      }
    }
    parts.push('');
  }
  return parts.join('\n');
}

export function publishTable(results: readonly PublishResult[]): string {
  const lines = [
    '| store | publishers × batch | messages/s | server CPU µs/message | batch latency p50 / p99 ms | failed requests |',
    '|---|---|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    if (r.error !== undefined) {
      lines.push(`| ${r.store} | failed: ${r.error.replace(/\|/g, '/').slice(0, 200)} | | | | |`);
      continue;
    }
    const target = r.store.startsWith('sqlite') ? ` ${mark(r.messagesPerS >= TARGETS.publishMinPerS)} (≥ ${fmt(TARGETS.publishMinPerS)})` : '';
    lines.push(
      `| ${r.store} | ${r.publishers} × ${r.batchSize} | **${fmt(r.messagesPerS)}**${target} | ${fmt(r.cpuUsPerMessage, 2)} | ` +
        `${fmt(r.batchP50Ms, 1)} / ${fmt(r.batchP99Ms, 1)} | ${r.failed} |`,
    );
  }
  return lines.join('\n');
}

/** One line per target of issue 3, per transport, from the cells that measure it. */
export function targetSummary(results: readonly FanoutResult[], publish: readonly PublishResult[], specs: readonly CellSpec[], transports: readonly WireTransport[]): string {
  const lines = ['| target (issue 3) | ' + transports.map((t) => TRANSPORT_LABEL[t]).join(' | ') + ' |', '|---|' + transports.map(() => '---|').join('')];
  const largest = Math.max(...specs.map((s) => s.subscribers));
  for (const spec of specs) {
    const cells = (f: (raw: FanoutResult, herald: FanoutResult) => string): string =>
      transports
        .map((t) => {
          const raw = find(results, 'raw', t, spec);
          const herald = find(results, 'herald', t, spec);
          if (raw === undefined || herald === undefined || raw.error !== undefined || herald.error !== undefined) return '—';
          return f(raw, herald);
        })
        .join(' | ');
    const label = spec.rate === 'max' ? `${fmt(spec.subscribers)} subs, saturation` : `${fmt(spec.subscribers)} subs, ${spec.rate} msg/s`;
    lines.push(`| deliveries/s ≥ 0.9× raw (${label}) | ${cells((r, h) => `${fmt(h.deliveriesPerS / r.deliveriesPerS, 2)}× ${mark(h.deliveriesPerS / r.deliveriesPerS >= TARGETS.deliveriesRatioMin)}`)} |`);
    lines.push(`| CPU/delivery ≤ 1.2× raw (WS, SSE), ≤ 1.0× (long-poll) (${label}) | ${cells((r, h) => `${fmt(h.cpuUsPerDelivery / r.cpuUsPerDelivery, 2)}× ${mark(h.cpuUsPerDelivery / r.cpuUsPerDelivery <= TARGETS.cpuRatioMax[h.transport])}`)} |`);
    // Per-connection memory is read at every size, but only the largest count makes it precise.
    if (spec.subscribers === largest) lines.push(`| memory per idle connection ≤ 8 KiB (${label}) | ${cells((_r, h) => `${kib(h.rssPerConnBytes)} ${mark(h.rssPerConnBytes <= TARGETS.idleConnMaxBytes)}`)} |`);
  }
  const sqlite = publish.find((p) => p.store.startsWith('sqlite') && p.error === undefined);
  if (sqlite !== undefined) {
    lines.push(`| publish into the durable store ≥ 20,000 msgs/s | ${fmt(sqlite.messagesPerS)} msgs/s ${mark(sqlite.messagesPerS >= TARGETS.publishMinPerS)} |${transports.slice(1).map(() => ' |').join('')}`);
  }
  return lines.join('\n');
}

/**
 * Replaces one generated block of a document (between `<!-- ID:begin … -->` and `<!-- ID:end -->`),
 * keeping everything around it, so several scripts can each keep their own block in one file. When
 * the document has no such block yet, `heading` and the block are appended.
 */
export function writeBlock(path: string, id: string, writtenBy: string, generated: string, template: string, heading = ''): void {
  const beginMarker = `<!-- ${id}:begin (written by \`${writtenBy}\`; text outside these markers is kept) -->`;
  const endMarker = `<!-- ${id}:end -->`;
  const block = `${beginMarker}\n${generated}\n${endMarker}`;
  const existing = existsSync(path) ? readFileSync(path, 'utf8') : template;
  const begin = existing.indexOf(`<!-- ${id}:begin`);
  const end = existing.indexOf(endMarker);
  const next =
    begin !== -1 && end !== -1
      ? existing.slice(0, begin) + block + existing.slice(end + endMarker.length)
      : `${existing.trimEnd()}\n\n${heading === '' ? '' : `${heading}\n\n`}${block}\n`;
  writeFileSync(path, next);
}

/** Replaces the generated part of the document, keeping everything written around it by hand. */
export function writeResults(path: string, generated: string, template: string): void {
  writeBlock(path, 'bench:results', 'npm run bench', generated, template);
}
