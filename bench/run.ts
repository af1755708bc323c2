// `npm run bench`: Herald's fan-out and publish benchmark, side by side with a raw Node broadcaster
// (bench/raw-broadcaster.ts) measured in the same invocation. Method and figures: docs/benchmarks.md.
//
// Environment (all optional):
//   BENCH_QUICK=1          smoke run in under 2 minutes (small cells, short windows; writes no doc)
//   BENCH_CELLS            subscribers:rate pairs, rate in msg/s or "max" (default "1000:max,10000:5,10000:20")
//   BENCH_DURATION_S       measurement window per cell (default 10)
//   BENCH_WARMUP_S         publishing before the window opens (default 2)
//   BENCH_TARGETS          raw,herald        BENCH_TRANSPORTS  ws,sse,poll
//   BENCH_PROCS            load-generator processes per cell (default 2; at least one per 5,000 conns)
//   BENCH_REPEAT          clean runs wanted per cell and server, alternating raw and Herald; medians are
//                         reported (default 3). A run is clean when other processes used at most
//                         BENCH_QUIET_PCT of one core (default 25) during its window; disturbed runs are
//                         repeated, up to 2 × BENCH_REPEAT attempts. Before each run the benchmark also
//                         waits (up to 60 s) for the machine to be that quiet;
//                         BENCH_QUIET_MAX_S caps the wait (default 60, quick 2; 0 never waits)
//   BENCH_WINDOW           saturation runs: messages published ahead of full delivery (default 32)
//   BENCH_HERALD_STORE     store of the fan-out cells (default memory; the publish run uses sqlite)
//   BENCH_HERALD_ARGS     extra Herald flags for the fan-out cells, space-separated (e.g. "--heartbeat 1h")
//   BENCH_PUBLISH_S        publish benchmark window (default 10; 0 skips it)
//   BENCH_PUBLISHERS       concurrent publishers (default 4), batches of BENCH_BATCH (default 100)
//   BENCH_PROFILE_DIR      write V8 CPU profiles of every server (node --cpu-prof) into DIR/<cell>/;
//                         summarise one with bench/profile-summary.ts
//   BENCH_BUILD           1 (default): compile src/ into .bench-out/herald-build/ first and run that, so
//                         every cell measures the same code even if dist/ is rebuilt meanwhile; 0: run dist/
//   BENCH_OUT              markdown file to write ("" for none; default docs/benchmarks.md, none when quick)
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LoadGeneratorPool } from './clients.js';
import { cpuTimeUs, machineBusyUs, onExit, ownCpuTimeUs, ROOT, ServerProcess, type Target } from './processes.js';
import type { WireTransport } from './protocol.js';
import { HttpClient, messageData, Publisher } from './publisher.js';
import {
  fanoutTables,
  percentile,
  publishTable,
  specTitle,
  targetSummary,
  TRANSPORT_LABEL,
  writeResults,
  type CellSpec,
  type FanoutResult,
  type PublishResult,
} from './report.js';

const env = process.env;
const isQuick = env.BENCH_QUICK === '1';
const CHANNEL = 'bench';

function numberEnv(name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${JSON.stringify(text)}`);
  return n;
}

function listEnv<T extends string>(name: string, allowed: readonly T[]): T[] {
  const text = env[name];
  if (text === undefined || text === '') return [...allowed];
  const items = text.split(',').map((s) => s.trim()) as T[];
  for (const item of items) if (!allowed.includes(item)) throw new Error(`${name}: unknown ${JSON.stringify(item)} (one of ${allowed.join(', ')})`);
  return items;
}

function parseCells(text: string): CellSpec[] {
  return text.split(',').map((pair) => {
    const [subscribers, rate] = pair.split(':');
    const spec: CellSpec = { subscribers: Number(subscribers), rate: rate === 'max' ? 'max' : Number(rate) };
    if (!Number.isInteger(spec.subscribers) || spec.subscribers < 1 || (spec.rate !== 'max' && !(spec.rate > 0))) {
      throw new Error(`BENCH_CELLS: bad cell ${JSON.stringify(pair)} (use e.g. 1000:max,10000:20)`);
    }
    return spec;
  });
}

const config = {
  cells: parseCells(env.BENCH_CELLS ?? (isQuick ? '200:max,1000:20' : '1000:max,10000:5,10000:20')),
  durationS: numberEnv('BENCH_DURATION_S', isQuick ? 2 : 10),
  warmupS: numberEnv('BENCH_WARMUP_S', isQuick ? 0.5 : 2),
  targets: listEnv<Target>('BENCH_TARGETS', ['raw', 'herald']),
  transports: listEnv<WireTransport>('BENCH_TRANSPORTS', ['ws', 'sse', 'poll']),
  processes: numberEnv('BENCH_PROCS', 2),
  repeat: Math.max(1, Math.round(numberEnv('BENCH_REPEAT', isQuick ? 1 : 3))),
  /** Quick runs never repeat a disturbed run: they must stay short. */
  get maxAttempts(): number {
    return isQuick ? this.repeat : this.repeat * 2;
  },
  quietPct: numberEnv('BENCH_QUIET_PCT', 25),
  quietMaxS: numberEnv('BENCH_QUIET_MAX_S', isQuick ? 2 : 60),
  window: numberEnv('BENCH_WINDOW', 32),
  heraldStore: env.BENCH_HERALD_STORE ?? 'memory',
  heraldArgs: (env.BENCH_HERALD_ARGS ?? '').split(' ').filter((a) => a !== ''),
  publishS: numberEnv('BENCH_PUBLISH_S', isQuick ? 2 : 10),
  publishers: numberEnv('BENCH_PUBLISHERS', 4),
  batchSize: numberEnv('BENCH_BATCH', 100),
  profileDir: env.BENCH_PROFILE_DIR === undefined || env.BENCH_PROFILE_DIR === '' ? undefined : resolve(env.BENCH_PROFILE_DIR),
  out: env.BENCH_OUT ?? (isQuick ? '' : 'docs/benchmarks.md'),
  isSnapshotBuild: env.BENCH_BUILD !== '0',
};

/** Herald's CLI script; replaced by a private build (see snapshotHerald). */
let heraldEntry = join(ROOT, 'bin', 'herald.js');

const log = (text: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
};

const STATS_NAME: Record<WireTransport, string> = { ws: 'websocket', sse: 'sse', poll: 'poll' };

/** Waits until the server itself counts `count` subscribers (held polls for long-poll). */
async function waitSubscribed(client: HttpClient, transport: WireTransport, count: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  let seen = 0;
  while (Date.now() < deadline) {
    const stats = (await client.json('/v1/stats')) as { connections: Record<string, number> };
    seen = stats.connections[STATS_NAME[transport]] ?? 0;
    if (seen >= count) return;
    await sleep(100);
  }
  throw new Error(`only ${seen} of ${count} subscribers registered on the server`);
}

/** CPU other processes than ours use, in % of one core, measured over `ms`. */
async function backgroundCpuPct(ms: number): Promise<number> {
  const busy0 = machineBusyUs();
  const own0 = ownCpuTimeUs();
  const t0 = performance.now();
  await sleep(ms);
  const elapsedUs = (performance.now() - t0) * 1000;
  return (((machineBusyUs() - busy0) - (ownCpuTimeUs() - own0)) / elapsedUs) * 100;
}

/** Other work on the machine (other test suites…) would skew whichever server runs meanwhile: wait it out. */
async function waitForQuiet(): Promise<void> {
  const deadline = Date.now() + config.quietMaxS * 1000;
  let pct = await backgroundCpuPct(500);
  if (pct <= config.quietPct || config.quietMaxS === 0) return;
  log(`  machine busy with other processes (${pct.toFixed(0)}% of a core); waiting up to ${config.quietMaxS} s`);
  while (Date.now() < deadline && pct > config.quietPct) pct = await backgroundCpuPct(1000);
  if (pct > config.quietPct) log(`  still ${pct.toFixed(0)}% busy; measuring anyway (see the "other load" column)`);
}

/** Waits until every published message reached every subscriber, or deliveries stop progressing. */
async function drain(pool: LoadGeneratorPool, expected: number): Promise<void> {
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

function failedResult(target: Target, transport: WireTransport, spec: CellSpec, error: string): FanoutResult {
  return {
    target, transport, spec, connected: 0, deliveriesPerS: NaN, cpuUsPerDelivery: NaN, p50Ms: NaN, p99Ms: NaN, messagesPerAnswer: NaN,
    rssPerConnBytes: NaN, heapPerConnBytes: NaN, serverCpuPct: NaN, loadGeneratorCpuPct: NaN, backgroundCpuPct: NaN,
    published: 0, missing: 0, dropped: 0, runs: 0, cleanRuns: 0, error,
  };
}

async function fanoutCell(target: Target, transport: WireTransport, spec: CellSpec): Promise<FanoutResult> {
  const name = `${target}-${transport}-${spec.subscribers}-${spec.rate}`;
  let server: ServerProcess | undefined;
  let pool: LoadGeneratorPool | undefined;
  let client: HttpClient | undefined;
  let publisher: Publisher | undefined;
  try {
    server = await ServerProcess.start(target, {
      heraldEntry,
      args: ['--store', config.heraldStore, ...(config.heraldStore === 'sqlite' ? ['--data-dir', tempDir('fanout')] : []), ...config.heraldArgs],
      ...(config.profileDir === undefined ? {} : { profileDir: join(config.profileDir, name) }),
    });
    client = new HttpClient(server.host, server.port, 8);
    // One message first, so both servers have run their publish path before memory is read.
    const first = await client.call('POST', '/v1/publish', `{"channel":"${CHANNEL}","data":${messageData()}}`);
    if (first.status !== 200) throw new Error(`publish: ${first.status} ${first.body}`);
    await sleep(200);
    const idle = await server.settledMemory();

    const opened = await LoadGeneratorPool.open({
      host: server.host,
      port: server.port,
      transport,
      channel: CHANNEL,
      connections: spec.subscribers,
      processes: config.processes,
    });
    pool = opened.pool;
    const { connected } = opened.ready;
    if (opened.ready.failed > 0) throw new Error(`${opened.ready.failed} connections failed: ${opened.ready.errors.join('; ')}`);
    await waitSubscribed(client, transport, connected);
    await sleep(1000);
    const loaded = await server.settledMemory();
    const rssPerConnBytes = (loaded.rssBytes - idle.rssBytes) / connected;
    const heap = (m: typeof idle.usage): number => m.heapUsed + m.external;
    const heapPerConnBytes = (heap(loaded.usage) - heap(idle.usage)) / connected;

    publisher = new Publisher(client, CHANNEL);
    if (spec.rate === 'max') {
      const activePool = pool;
      const pump = publisher.asFastAsDelivered(() => activePool.progressTotal, connected, config.window);
      pool.onProgress(pump);
    } else publisher.atRate(spec.rate);
    await sleep(config.warmupS * 1000);

    await pool.reset();
    const serverCpu0 = cpuTimeUs(server.pid);
    const loadCpu0 = pool.cpuTimeUs();
    const ownCpu0 = ownCpuTimeUs();
    const busy0 = machineBusyUs();
    const t0 = performance.now();
    await sleep(config.durationS * 1000);
    const serverCpu1 = cpuTimeUs(server.pid);
    const loadCpu1 = pool.cpuTimeUs();
    const ownCpu1 = ownCpuTimeUs();
    const busy1 = machineBusyUs();
    const t1 = performance.now();
    const window = await pool.report();
    await publisher.stop();
    if (!server.isRunning) throw new Error(`server exited: ${server.recentStderr}`);

    const expected = (publisher.published - publisher.failed) * connected;
    await drain(pool, expected);
    const final = await pool.report();
    const elapsedS = (t1 - t0) / 1000;
    const serverCpuUs = serverCpu1 - serverCpu0;
    log(`  publish round trip p50 ${percentile(publisher.roundTrips, 50).toFixed(1)} ms, p99 ${percentile(publisher.roundTrips, 99).toFixed(1)} ms, ${publisher.published} published`);
    if (publisher.failed > 0) log(`  ${publisher.failed} publishes failed: ${publisher.lastError}`);
    if (final.errors.length > 0) log(`  client errors: ${final.errors.join('; ')}`);
    return {
      target,
      transport,
      spec,
      connected,
      deliveriesPerS: window.received / elapsedS,
      cpuUsPerDelivery: serverCpuUs / window.received,
      p50Ms: percentile(window.histogram, 50),
      p99Ms: percentile(window.histogram, 99),
      messagesPerAnswer: window.answers > 0 ? window.received / window.answers : NaN,
      rssPerConnBytes,
      heapPerConnBytes,
      serverCpuPct: (serverCpuUs / 1e6 / elapsedS) * 100,
      loadGeneratorCpuPct: ((loadCpu1 - loadCpu0) / 1e6 / elapsedS) * 100,
      backgroundCpuPct: (((busy1 - busy0) - serverCpuUs - (loadCpu1 - loadCpu0) - (ownCpu1 - ownCpu0)) / 1e6 / elapsedS) * 100,
      runs: 1,
      cleanRuns: 0,
      published: publisher.published,
      missing: expected - final.total,
      dropped: final.dropped,
    };
  } finally {
    await publisher?.stop();
    await pool?.close();
    client?.close();
    await server?.stop();
  }
}

const tempDirs: string[] = [];
onExit(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `herald-bench-${label}-`));
  tempDirs.push(dir);
  return dir;
}

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A run whose window the rest of the machine left (nearly) alone. */
function isClean(result: FanoutResult): boolean {
  return result.error === undefined && result.backgroundCpuPct <= config.quietPct;
}

/**
 * The median of every figure over the clean runs of one cell (over every successful run when none was
 * clean); failures are kept when all failed.
 */
function medianResult(runs: FanoutResult[]): FanoutResult {
  const succeeded = runs.filter((r) => r.error === undefined);
  if (succeeded.length === 0) return runs[runs.length - 1]!;
  const clean = succeeded.filter(isClean);
  const ok = clean.length > 0 ? clean : succeeded;
  const m = (pick: (r: FanoutResult) => number): number => median(ok.map(pick));
  return {
    ...ok[0]!,
    deliveriesPerS: m((r) => r.deliveriesPerS),
    cpuUsPerDelivery: m((r) => r.cpuUsPerDelivery),
    p50Ms: m((r) => r.p50Ms),
    p99Ms: m((r) => r.p99Ms),
    messagesPerAnswer: m((r) => r.messagesPerAnswer),
    rssPerConnBytes: m((r) => r.rssPerConnBytes),
    heapPerConnBytes: m((r) => r.heapPerConnBytes),
    serverCpuPct: m((r) => r.serverCpuPct),
    loadGeneratorCpuPct: m((r) => r.loadGeneratorCpuPct),
    backgroundCpuPct: m((r) => r.backgroundCpuPct),
    published: m((r) => r.published),
    missing: Math.max(...ok.map((r) => r.missing)),
    dropped: Math.max(...ok.map((r) => r.dropped)),
    runs: ok.length,
    cleanRuns: clean.length,
  };
}

async function publishBench(store: 'sqlite' | 'memory'): Promise<PublishResult> {
  const label = store === 'sqlite' ? 'sqlite (durable, WAL)' : 'memory (volatile)';
  let server: ServerProcess | undefined;
  let client: HttpClient | undefined;
  try {
    server = await ServerProcess.start('herald', {
      heraldEntry,
      args: store === 'sqlite' ? ['--store', 'sqlite', '--data-dir', tempDir('publish')] : ['--store', 'memory'],
      ...(config.profileDir === undefined ? {} : { profileDir: join(config.profileDir, `herald-publish-${store}`) }),
    });
    const activeClient = new HttpClient(server.host, server.port, config.publishers);
    client = activeClient;
    // Bodies are encoded once: the publishers should cost the machine as little as possible.
    const bodies = Array.from({ length: config.publishers }, (_, p) =>
      Buffer.from(JSON.stringify({ messages: Array.from({ length: config.batchSize }, () => ({ channel: `publish-${p}`, data: JSON.parse(messageData()) as unknown })) })),
    );
    const check = await activeClient.call('POST', '/v1/publish', bodies[0]!);
    if (check.status !== 200 || (JSON.parse(check.body) as { results: unknown[] }).results.length !== config.batchSize) {
      throw new Error(`publish: ${check.status} ${check.body.slice(0, 200)}`);
    }
    let isRunning = true;
    let isCounting = false;
    let accepted = 0;
    let failed = 0;
    const latencies = new Map<number, number>();
    const loops = bodies.map(async (body) => {
      while (isRunning) {
        const startMs = performance.now();
        const res = await activeClient.call('POST', '/v1/publish', body);
        if (!isCounting) continue;
        if (res.status !== 200) {
          failed++;
          continue;
        }
        accepted += config.batchSize;
        const bucket = Math.round((performance.now() - startMs) * 10);
        latencies.set(bucket, (latencies.get(bucket) ?? 0) + 1);
      }
    });
    await sleep(Math.min(2, config.warmupS + 0.5) * 1000);
    const cpu0 = cpuTimeUs(server.pid);
    const t0 = performance.now();
    isCounting = true;
    await sleep(config.publishS * 1000);
    isCounting = false;
    const cpu1 = cpuTimeUs(server.pid);
    const elapsedS = (performance.now() - t0) / 1000;
    isRunning = false;
    await Promise.all(loops);
    return {
      store: label,
      publishers: config.publishers,
      batchSize: config.batchSize,
      messagesPerS: accepted / elapsedS,
      cpuUsPerMessage: (cpu1 - cpu0) / accepted,
      batchP50Ms: percentile(latencies, 50),
      batchP99Ms: percentile(latencies, 99),
      failed,
    };
  } catch (err) {
    return { store: label, publishers: config.publishers, batchSize: config.batchSize, messagesPerS: NaN, cpuUsPerMessage: NaN, batchP50Ms: NaN, batchP99Ms: NaN, failed: 0, error: (err as Error).message };
  } finally {
    client?.close();
    await server?.stop();
  }
}

/** Which Herald is measured: the commit, and whether src/ had uncommitted changes when it was built. */
function codeNote(): string {
  const built = config.isSnapshotBuild ? 'compiled from src/ at the start of the run' : 'from dist/';
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return `Herald at ${head}${dirty ? ' plus uncommitted changes in src/' : ''}, ${built}`;
  } catch {
    return `Herald ${built}`;
  }
}

/**
 * Compiles src/ into a private folder and returns its CLI script: other work on the repository may
 * rebuild dist/ while the benchmark runs, and every cell must measure the same code.
 */
function snapshotHerald(): string {
  const dir = join(ROOT, '.bench-out', 'herald-build');
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

function machineNote(): string {
  const model = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpus().length} × ${model}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Linux ${release()}, Node ${process.version}`;
}

async function main(): Promise<void> {
  if (config.profileDir !== undefined) mkdirSync(config.profileDir, { recursive: true });
  const started = new Date();
  const code = codeNote();
  if (config.isSnapshotBuild) {
    log('compiling src/ into .bench-out/herald-build/');
    heraldEntry = snapshotHerald();
  }
  log(`${isQuick ? 'quick smoke run' : 'full run'}: cells ${config.cells.map((c) => `${c.subscribers}:${c.rate}`).join(', ')}, ` +
    `${config.durationS}s windows, targets ${config.targets.join('+')}, transports ${config.transports.join('+')}`);
  const results: FanoutResult[] = [];
  for (const spec of config.cells) {
    for (const transport of config.transports) {
      const runs = new Map<Target, FanoutResult[]>(config.targets.map((t) => [t, []]));
      const cleanRuns = (target: Target): number => runs.get(target)!.filter(isClean).length;
      // Each server needs `repeat` clean runs (the rest of the machine quiet during the window); a
      // disturbed run is repeated, up to twice as many attempts in all.
      for (let attempt = 1; attempt <= config.maxAttempts; attempt++) {
        const due = config.targets.filter((t) => cleanRuns(t) < config.repeat);
        if (due.length === 0) break;
        // Alternate which server goes first, so neither always runs on a warmer or calmer machine.
        const order = attempt % 2 === 1 ? due : [...due].reverse();
        for (const target of order) {
          log(`${target} ${TRANSPORT_LABEL[transport]} — ${specTitle(spec)} (attempt ${attempt}, ${cleanRuns(target)}/${config.repeat} clean runs so far)`);
          await waitForQuiet();
          let result: FanoutResult;
          try {
            result = await fanoutCell(target, transport, spec);
          } catch (err) {
            result = failedResult(target, transport, spec, (err as Error).message);
          }
          runs.get(target)!.push(result);
          log(
            result.error !== undefined
              ? `  FAILED: ${result.error}`
              : `  ${Math.round(result.deliveriesPerS)} deliveries/s, ${result.cpuUsPerDelivery.toFixed(2)} µs/delivery, ` +
                  `p50 ${result.p50Ms.toFixed(1)} ms, p99 ${result.p99Ms.toFixed(1)} ms, ${(result.rssPerConnBytes / 1024).toFixed(1)} KiB/conn, ` +
                  `server ${result.serverCpuPct.toFixed(0)}% CPU, load-gen ${result.loadGeneratorCpuPct.toFixed(0)}%, ` +
                  `other ${result.backgroundCpuPct.toFixed(0)}%${isClean(result) ? '' : ' (disturbed)'}, missing ${result.missing}`,
          );
        }
      }
      for (const target of config.targets) results.push(medianResult(runs.get(target)!));
    }
  }
  const publish: PublishResult[] = [];
  if (config.publishS > 0 && config.targets.includes('herald')) {
    for (const store of ['sqlite', 'memory'] as const) {
      log(`publish: herald --store ${store}, ${config.publishers} publishers × batches of ${config.batchSize}`);
      await waitForQuiet();
      const result = await publishBench(store);
      publish.push(result);
      log(result.error !== undefined ? `  FAILED: ${result.error}` : `  ${Math.round(result.messagesPerS)} msgs/s, ${result.cpuUsPerMessage.toFixed(2)} µs/message`);
    }
  }

  const generated = [
    `Run ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC${isQuick ? ' (BENCH_QUICK smoke run)' : ''} on ${machineNote()}; ${code}.`,
    `Cells: ${config.durationS} s measurement window after ${config.warmupS} s of warm-up; median of up to ${config.repeat} clean run(s) ` +
      `per server (other processes ≤ ${config.quietPct}% of a core during the window), alternating raw and Herald; ${config.processes} load-generator processes ` +
      `(at least one per 5,000 connections); Herald fan-out cells on \`--store ${config.heraldStore}${config.heraldArgs.length > 0 ? ` ${config.heraldArgs.join(' ')}` : ''}\`; saturation window ${config.window} messages.`,
    '',
    '### Targets',
    '',
    targetSummary(results, publish, config.cells, config.transports),
    '',
    fanoutTables(results, config.cells, config.transports),
    '### Publish',
    '',
    publish.length > 0 ? publishTable(publish) : '(not run)',
  ].join('\n');
  process.stdout.write(`\n${generated}\n`);
  if (config.out !== '') {
    const path = resolve(ROOT, config.out);
    writeResults(path, generated, DOC_TEMPLATE);
    log(`wrote ${path}`);
  }
}

const DOC_TEMPLATE = `# Benchmarks

\`npm run bench\` measures Herald against a raw Node broadcaster in the same invocation; see bench/run.ts.
`;

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
