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
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LoadGeneratorPool } from './clients.js';
import {
  codeNote,
  cpuWindow,
  drain,
  listEnv,
  log,
  machineNote,
  median,
  numberEnv,
  parseCells,
  repeatUntilClean,
  snapshotHerald,
  tempDir,
  waitForQuiet,
  waitSubscribed,
  DOC_TEMPLATE,
  runBench,
} from './harness.js';
import { cpuTimeUs, ROOT, ServerProcess, type Target } from './processes.js';
import type { WireTransport } from './protocol.js';
import { HttpClient, messageData, publishBatches, Publisher } from './publisher.js';
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
    await waitSubscribed([client], transport, connected);
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
    const cpu = cpuWindow([server.pid], pool);
    await sleep(config.durationS * 1000);
    const { elapsedS, serverCpuUs, loadGeneratorCpuUs, backgroundCpuPct } = cpu.end();
    const window = await pool.report();
    await publisher.stop();
    if (!server.isRunning) throw new Error(`server exited: ${server.recentStderr}`);

    const expected = (publisher.published - publisher.failed) * connected;
    await drain(pool, expected);
    const final = await pool.report();
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
      loadGeneratorCpuPct: (loadGeneratorCpuUs / 1e6 / elapsedS) * 100,
      backgroundCpuPct,
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
    client = new HttpClient(server.host, server.port, config.publishers);
    const pid = server.pid;
    const result = await publishBatches({
      callers: [client],
      publishers: config.publishers,
      batchSize: config.batchSize,
      warmupS: Math.min(2, config.warmupS + 0.5),
      windowS: config.publishS,
      cpuUs: () => cpuTimeUs(pid),
    });
    return { store: label, publishers: config.publishers, batchSize: config.batchSize, ...result };
  } catch (err) {
    return { store: label, publishers: config.publishers, batchSize: config.batchSize, messagesPerS: NaN, cpuUsPerMessage: NaN, batchP50Ms: NaN, batchP99Ms: NaN, failed: 0, error: (err as Error).message };
  } finally {
    client?.close();
    await server?.stop();
  }
}

async function main(): Promise<void> {
  if (config.profileDir !== undefined) mkdirSync(config.profileDir, { recursive: true });
  const started = new Date();
  const code = codeNote(config.isSnapshotBuild);
  if (config.isSnapshotBuild) {
    log('compiling src/ into .bench-out/herald-build/');
    heraldEntry = snapshotHerald();
  }
  log(`${isQuick ? 'quick smoke run' : 'full run'}: cells ${config.cells.map((c) => `${c.subscribers}:${c.rate}`).join(', ')}, ` +
    `${config.durationS}s windows, targets ${config.targets.join('+')}, transports ${config.transports.join('+')}`);
  const results: FanoutResult[] = [];
  for (const spec of config.cells) {
    for (const transport of config.transports) {
      // Each server needs `repeat` clean runs (the rest of the machine quiet during the window); a
      // disturbed run is repeated, up to twice as many attempts in all, alternating which server goes first.
      const runs = await repeatUntilClean<Target, FanoutResult>({
        keys: config.targets,
        repeat: config.repeat,
        maxAttempts: config.maxAttempts,
        isClean,
        run: async (target, attempt, cleanSoFar) => {
          log(`${target} ${TRANSPORT_LABEL[transport]} — ${specTitle(spec)} (attempt ${attempt}, ${cleanSoFar}/${config.repeat} clean runs so far)`);
          await waitForQuiet(config.quietPct, config.quietMaxS);
          let result: FanoutResult;
          try {
            result = await fanoutCell(target, transport, spec);
          } catch (err) {
            result = failedResult(target, transport, spec, (err as Error).message);
          }
          log(
            result.error !== undefined
              ? `  FAILED: ${result.error}`
              : `  ${Math.round(result.deliveriesPerS)} deliveries/s, ${result.cpuUsPerDelivery.toFixed(2)} µs/delivery, ` +
                  `p50 ${result.p50Ms.toFixed(1)} ms, p99 ${result.p99Ms.toFixed(1)} ms, ${(result.rssPerConnBytes / 1024).toFixed(1)} KiB/conn, ` +
                  `server ${result.serverCpuPct.toFixed(0)}% CPU, load-gen ${result.loadGeneratorCpuPct.toFixed(0)}%, ` +
                  `other ${result.backgroundCpuPct.toFixed(0)}%${isClean(result) ? '' : ' (disturbed)'}, missing ${result.missing}`,
          );
          return result;
        },
      });
      for (const target of config.targets) results.push(medianResult(runs.get(target)!));
    }
  }
  const publish: PublishResult[] = [];
  if (config.publishS > 0 && config.targets.includes('herald')) {
    for (const store of ['sqlite', 'memory'] as const) {
      log(`publish: herald --store ${store}, ${config.publishers} publishers × batches of ${config.batchSize}`);
      await waitForQuiet(config.quietPct, config.quietMaxS);
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

runBench('bench', main);
