// What bench/run.ts and bench/scale-out.ts share: options from the environment, the log, the
// quiet-machine checks, clean-run repetition, medians, the CPU reading of a measurement window, the
// private build of Herald and the notes saying what was measured on which machine.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LoadGeneratorPool } from './clients.js';
import { cpuTimeUs, machineBusyUs, onExit, ownCpuTimeUs, ROOT } from './processes.js';
import type { WireTransport } from './protocol.js';
import type { HttpClient } from './publisher.js';
import type { CellSpec } from './report.js';

const env = process.env;

export function numberEnv(name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${JSON.stringify(text)}`);
  return n;
}

export function listEnv<T extends string>(name: string, allowed: readonly T[], fallback: readonly T[] = allowed): T[] {
  const text = env[name];
  if (text === undefined || text === '') return [...fallback];
  const items = text.split(',').map((s) => s.trim()) as T[];
  for (const item of items) if (!allowed.includes(item)) throw new Error(`${name}: unknown ${JSON.stringify(item)} (one of ${allowed.join(', ')})`);
  return items;
}

/** "1000:max,10000:20": subscribers:rate pairs, rate in msg/s or "max". */
export function parseCells(text: string, name = 'BENCH_CELLS'): CellSpec[] {
  return text.split(',').map((pair) => {
    const [subscribers, rate] = pair.split(':');
    const spec: CellSpec = { subscribers: Number(subscribers), rate: rate === 'max' ? 'max' : Number(rate) };
    if (!Number.isInteger(spec.subscribers) || spec.subscribers < 1 || (spec.rate !== 'max' && !(spec.rate > 0))) {
      throw new Error(`${name}: bad cell ${JSON.stringify(pair)} (use e.g. 1000:max,10000:20)`);
    }
    return spec;
  });
}

export function log(text: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
}

const STATS_NAME: Record<WireTransport, string> = { ws: 'websocket', sse: 'sse', poll: 'poll' };

/**
 * Waits until the servers themselves count `count` subscribers between them (held polls for
 * long-poll); each server's /v1/stats counts its own connections.
 */
export async function waitSubscribed(clients: readonly HttpClient[], transport: WireTransport, count: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  let seen = 0;
  while (Date.now() < deadline) {
    const all = (await Promise.all(clients.map((c) => c.json('/v1/stats')))) as { connections: Record<string, number> }[];
    seen = all.reduce((n, stats) => n + (stats.connections[STATS_NAME[transport]] ?? 0), 0);
    if (seen >= count) return;
    await sleep(100);
  }
  throw new Error(`only ${seen} of ${count} subscribers registered on the server${clients.length > 1 ? 's' : ''}`);
}

/** CPU other processes than ours use, in % of one core, measured over `ms`. */
export async function backgroundCpuPct(ms: number): Promise<number> {
  const busy0 = machineBusyUs();
  const own0 = ownCpuTimeUs();
  const t0 = performance.now();
  await sleep(ms);
  const elapsedUs = (performance.now() - t0) * 1000;
  return (((machineBusyUs() - busy0) - (ownCpuTimeUs() - own0)) / elapsedUs) * 100;
}

/**
 * Other work on the machine (other test suites…) would skew whichever server runs meanwhile: waits
 * (up to `maxS`) until the rest of the machine uses at most `quietPct` of a core.
 */
export async function waitForQuiet(quietPct: number, maxS: number): Promise<void> {
  const deadline = Date.now() + maxS * 1000;
  let pct = await backgroundCpuPct(500);
  if (pct <= quietPct || maxS === 0) return;
  log(`  machine busy with other processes (${pct.toFixed(0)}% of a core); waiting up to ${maxS} s`);
  while (Date.now() < deadline && pct > quietPct) pct = await backgroundCpuPct(1000);
  if (pct > quietPct) log(`  still ${pct.toFixed(0)}% busy; measuring anyway (see the "other load" column)`);
}

/** Waits until every published message reached every subscriber, or deliveries stop progressing. */
export async function drain(pool: LoadGeneratorPool, expected: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  let last = -1;
  let lastChangeMs = Date.now();
  while (Date.now() < deadline && pool.progressTotal < expected) {
    if (pool.progressTotal !== last) {
      last = pool.progressTotal;
      lastChangeMs = Date.now();
    } else if (Date.now() - lastChangeMs > 2000) return;
    await sleep(20);
  }
}

/** What a measurement window cost: the servers', the load generators' and everyone else's CPU. */
export interface CpuReading {
  elapsedS: number;
  /** All server processes together. */
  serverCpuUs: number;
  /** Per server process, in the order given. */
  perServerCpuUs: number[];
  loadGeneratorCpuUs: number;
  /** CPU used by processes other than the benchmark's during the window, in % of one core. */
  backgroundCpuPct: number;
}

/** Starts reading CPU time of `serverPids` (from /proc, all threads), the pool and the machine. */
export function cpuWindow(serverPids: readonly number[], pool: LoadGeneratorPool): { end(): CpuReading } {
  const servers0 = serverPids.map(cpuTimeUs);
  const load0 = pool.cpuTimeUs();
  const own0 = ownCpuTimeUs();
  const busy0 = machineBusyUs();
  const t0 = performance.now();
  return {
    end(): CpuReading {
      const perServerCpuUs = serverPids.map((pid, i) => cpuTimeUs(pid) - servers0[i]!);
      const loadGeneratorCpuUs = pool.cpuTimeUs() - load0;
      const ownUs = ownCpuTimeUs() - own0;
      const busyUs = machineBusyUs() - busy0;
      const elapsedS = (performance.now() - t0) / 1000;
      const serverCpuUs = perServerCpuUs.reduce((a, b) => a + b, 0);
      return { elapsedS, serverCpuUs, perServerCpuUs, loadGeneratorCpuUs, backgroundCpuPct: ((busyUs - serverCpuUs - loadGeneratorCpuUs - ownUs) / 1e6 / elapsedS) * 100 };
    },
  };
}

/**
 * Runs every key until it has `repeat` clean runs, at most `maxAttempts` rounds; each round runs the
 * keys still due, alternating the order (so none always runs first, on a warmer or calmer machine).
 */
export async function repeatUntilClean<K, R>(options: {
  keys: readonly K[];
  repeat: number;
  maxAttempts: number;
  isClean: (result: R) => boolean;
  run: (key: K, attempt: number, cleanSoFar: number) => Promise<R>;
}): Promise<Map<K, R[]>> {
  const runs = new Map<K, R[]>(options.keys.map((k) => [k, []]));
  const cleanRuns = (key: K): number => runs.get(key)!.filter(options.isClean).length;
  for (let attempt = 1; attempt <= options.maxAttempts; attempt++) {
    const due = options.keys.filter((k) => cleanRuns(k) < options.repeat);
    if (due.length === 0) break;
    const order = attempt % 2 === 1 ? due : [...due].reverse();
    for (const key of order) runs.get(key)!.push(await options.run(key, attempt, cleanRuns(key)));
  }
  return runs;
}

export function median(values: readonly number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const tempDirs: string[] = [];
onExit(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A temp folder removed when the benchmark exits. */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `herald-bench-${label}-`));
  tempDirs.push(dir);
  return dir;
}

/** Which Herald is measured: the commit, and whether src/ had uncommitted changes when it was built. */
export function codeNote(isSnapshotBuild: boolean): string {
  const built = isSnapshotBuild ? 'compiled from src/ at the start of the run' : 'from dist/';
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return `Herald at ${head}${dirty ? ' plus uncommitted changes in src/' : ''}, ${built}`;
  } catch {
    return `Herald ${built}`;
  }
}

/**
 * Compiles src/ into a private folder (.bench-out/<name>/) and returns its CLI script: other work on
 * the repository may rebuild dist/ while the benchmark runs, and every cell must measure the same code.
 */
export function snapshotHerald(name = 'herald-build'): string {
  const dir = join(ROOT, '.bench-out', name);
  rmSync(dir, { recursive: true, force: true });
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', join(dir, 'dist')], { cwd: ROOT, stdio: 'inherit' });
  } catch (err) {
    // tsc still emits on type errors (someone may be mid-edit); measure that, but say so.
    if (!existsSync(join(dir, 'dist', 'cli', 'main.js'))) throw err;
    log('warning: src/ has type errors; measuring what tsc emitted');
  }
  mkdirSync(join(dir, 'bin'), { recursive: true });
  // bin/herald.js imports ../dist/cli/main.js: a copy here runs the snapshot; packages resolve from
  // the repository's node_modules above.
  copyFileSync(join(ROOT, 'bin', 'herald.js'), join(dir, 'bin', 'herald.js'));
  return join(dir, 'bin', 'herald.js');
}

export function machineNote(): string {
  const model = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpus().length} × ${model}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Linux ${release()}, Node ${process.version}`;
}

/** How docs/benchmarks.md starts when a run writes it afresh. */
export const DOC_TEMPLATE = `# Benchmarks

\`npm run bench\` measures Herald against a raw Node broadcaster in the same invocation; see bench/run.ts.
`;

/** Runs a benchmark script's main and exits with its outcome (load generators would keep it alive). */
export function runBench(name: string, main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${name} failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
