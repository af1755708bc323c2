// `node --import tsx bench/scale-out.ts` (the last step of `npm run bench`): what scaling out costs.
// The same fan-out cells as bench/run.ts, on several deployments of Herald measured in one invocation:
//   - embedded: 1 node, `--store memory` (the baseline of bench/run.ts);
//   - redis: 2 nodes on one redis-server (`--store redis://…`, started here: `--save '' --appendonly no`),
//     subscribers split evenly over the nodes, publishes going to the nodes in turn;
//   - workers: `--workers N` against `--workers 1` (run only when `herald --help` lists `--workers`).
// CPU per delivery sums every server process of a deployment: each Herald process with all its
// descendants (a primary and its workers) and redis-server. Then the publish throughput in batches into
// Redis (1 and 2 nodes) and, for context, into the embedded sqlite store. Method: docs/benchmarks.md.
//
// Environment (all optional; the rest as in bench/run.ts: BENCH_DURATION_S, BENCH_WARMUP_S, BENCH_PROCS,
// BENCH_REPEAT, BENCH_QUIET_PCT, BENCH_QUIET_MAX_S, BENCH_WINDOW, BENCH_HERALD_ARGS, BENCH_PUBLISH_S,
// BENCH_PUBLISHERS, BENCH_BATCH, BENCH_PROFILE_DIR, BENCH_BUILD, BENCH_OUT):
//   BENCH_QUICK=1          smoke run in under 3 minutes (small cells, short windows; writes no doc)
//   BENCH_CELLS            subscribers:rate pairs, rate in msg/s or "max" (default "1000:max,2000:20")
//   BENCH_TRANSPORTS       ws,sse,poll (default ws,sse)
//   BENCH_SETUPS           embedded,redis,redis-1,workers,workers-1 (default embedded,redis,workers):
//                          redis-1 is one node on Redis (where the engine's cost is told from the
//                          split's); workers-1 runs `--workers 1` apart (it is the default, the embedded
//                          node itself, which is otherwise the baseline of the workers setup)
//   BENCH_NODES            Herald nodes of the redis setup (default 2)
//   BENCH_WORKERS          workers of the workers setup, measured against 1 (default 2); the setup is
//                          skipped when the build's --help has no --workers
//   BENCH_WORKERS_STORE    --store of the workers setups (default memory)
//   BENCH_PUBLISH_SETUPS   redis-1,redis,sqlite (default all three)
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startRedis, type RedisServer } from '../test/helpers/redis.js';
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
import { cpuTimeUs, machineBusyUs, ownCpuTimeUs, processStartTicks, processTree, ROOT, ServerProcess, writeSyscalls } from './processes.js';
import type { WireTransport } from './protocol.js';
import { HttpClient, messageData, publishBatches, Publisher, roundRobin, type HttpCaller } from './publisher.js';
import { fmt, mark, percentile, specTitle, TRANSPORT_LABEL, writeBlock, type CellSpec } from './report.js';

const env = process.env;
const isQuick = env.BENCH_QUICK === '1';
const CHANNEL = 'bench';

type SetupName = 'embedded' | 'redis' | 'redis-1' | 'workers' | 'workers-1';
type PublishSetupName = 'redis-1' | 'redis' | 'sqlite';

const config = {
  cells: parseCells(env.BENCH_CELLS ?? (isQuick ? '200:max,500:20' : '1000:max,2000:20')),
  durationS: numberEnv('BENCH_DURATION_S', isQuick ? 2 : 10),
  warmupS: numberEnv('BENCH_WARMUP_S', isQuick ? 0.5 : 2),
  transports: listEnv<WireTransport>('BENCH_TRANSPORTS', ['ws', 'sse', 'poll'], ['ws', 'sse']),
  setups: listEnv<SetupName>('BENCH_SETUPS', ['embedded', 'redis', 'redis-1', 'workers', 'workers-1'], ['embedded', 'redis', 'workers']),
  nodes: Math.max(1, Math.round(numberEnv('BENCH_NODES', 2))),
  workers: Math.max(2, Math.round(numberEnv('BENCH_WORKERS', 2))),
  workersStore: env.BENCH_WORKERS_STORE ?? 'memory',
  processes: numberEnv('BENCH_PROCS', 2),
  repeat: Math.max(1, Math.round(numberEnv('BENCH_REPEAT', isQuick ? 1 : 3))),
  /** Quick runs never repeat a disturbed run: they must stay short. */
  get maxAttempts(): number {
    return isQuick ? this.repeat : this.repeat * 2;
  },
  quietPct: numberEnv('BENCH_QUIET_PCT', 25),
  quietMaxS: numberEnv('BENCH_QUIET_MAX_S', isQuick ? 2 : 60),
  window: numberEnv('BENCH_WINDOW', 32),
  heraldArgs: (env.BENCH_HERALD_ARGS ?? '').split(' ').filter((a) => a !== ''),
  publishS: numberEnv('BENCH_PUBLISH_S', isQuick ? 2 : 10),
  publishSetups: listEnv<PublishSetupName>('BENCH_PUBLISH_SETUPS', ['redis-1', 'redis', 'sqlite']),
  publishers: numberEnv('BENCH_PUBLISHERS', 4),
  batchSize: numberEnv('BENCH_BATCH', 100),
  profileDir: env.BENCH_PROFILE_DIR === undefined || env.BENCH_PROFILE_DIR === '' ? undefined : resolve(env.BENCH_PROFILE_DIR),
  out: env.BENCH_OUT ?? (isQuick ? '' : 'docs/benchmarks.md'),
  isSnapshotBuild: env.BENCH_BUILD !== '0',
};

/** The aims of the scale-out issue: CPU per delivery of the scaled-out deployment ÷ its baseline. */
const AIMS = { redisCpuRatioMax: 1.1, workersCpuRatioMax: 1.15, redisPublishMinPerS: 50_000 };

/** Herald's CLI script; replaced by a private build (see snapshotHerald). */
let heraldEntry = join(ROOT, 'bin', 'herald.js');

// ---- deployments ------------------------------------------------------------------------------

/** One way of running Herald: how many processes, on which store. */
interface Setup {
  key: string;
  label: string;
  /** Herald processes started (each its own port). */
  nodes: number;
  store: 'memory' | 'sqlite' | 'redis' | string;
  /** `--workers N`; undefined: the flag is not given. */
  workers?: number;
}

const SETUPS = {
  embedded: { key: 'embedded', label: '1 node, embedded (`--store memory`)', nodes: 1, store: 'memory' },
  redis: { key: 'redis', label: `${config.nodes} nodes + Redis`, nodes: config.nodes, store: 'redis' },
  'redis-1': { key: 'redis-1', label: '1 node + Redis', nodes: 1, store: 'redis' },
  'workers-1': { key: 'workers-1', label: `\`--workers 1\` (\`--store ${config.workersStore}\`)`, nodes: 1, store: config.workersStore, workers: 1 },
  'workers-n': { key: `workers-${config.workers}`, label: `\`--workers ${config.workers}\` (\`--store ${config.workersStore}\`)`, nodes: 1, store: config.workersStore, workers: config.workers },
  sqlite: { key: 'sqlite', label: '1 node, embedded (`--store sqlite`, WAL)', nodes: 1, store: 'sqlite' },
} satisfies Record<string, Setup>;

/** The scaled-out deployment ÷ its baseline, and the aim for CPU per delivery. */
interface Comparison {
  of: Setup;
  base: Setup;
  cpuRatioMax: number;
}

/** A group of processes whose CPU is reported together (a node with its workers; redis-server). */
interface ProcessGroup {
  label: string;
  pids: number[];
}

/** A deployment running: its Herald processes, its redis-server, an HTTP client per node. */
class Deployed {
  readonly setup: Setup;
  readonly heralds: ServerProcess[];
  readonly redis: RedisServer | undefined;
  readonly redisPid: number | undefined;
  readonly clients: HttpClient[];
  /** The workers seen in the deployment's trees (pid → start time), killed at stop() if still there. */
  readonly #seen = new Map<number, number | undefined>();

  private constructor(setup: Setup, heralds: ServerProcess[], redis: RedisServer | undefined, redisPid: number | undefined) {
    this.setup = setup;
    this.heralds = heralds;
    this.redis = redis;
    this.redisPid = redisPid;
    this.clients = heralds.map((h) => new HttpClient(h.host, h.port, 8));
  }

  static async start(setup: Setup, profileDir: string | undefined): Promise<Deployed> {
    let redis: RedisServer | undefined;
    const heralds: ServerProcess[] = [];
    try {
      let store: string[];
      if (setup.store === 'redis') {
        redis = await startRedis(); // --save '' --appendonly no: the fan-out cells measure no disk
        store = ['--store', redis.url];
      } else store = ['--store', setup.store, ...(setup.store === 'sqlite' ? ['--data-dir', tempDir(setup.key)] : [])];
      const redisPid = redis === undefined ? undefined : Number(/process_id:(\d+)/.exec(await redis.cli('INFO', 'server'))?.[1]);
      const started = await Promise.allSettled(
        Array.from({ length: setup.nodes }, (_, i) =>
          ServerProcess.start('herald', {
            heraldEntry,
            args: [...store, ...(setup.workers === undefined ? [] : ['--workers', String(setup.workers)]), ...config.heraldArgs],
            ...(profileDir === undefined ? {} : { profileDir: setup.nodes > 1 ? join(profileDir, `node-${i + 1}`) : profileDir }),
          }),
        ),
      );
      for (const s of started) if (s.status === 'fulfilled') heralds.push(s.value);
      const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
      if (redisPid !== undefined && !Number.isInteger(redisPid)) throw new Error('redis-server did not tell its process_id');
      if (setup.workers !== undefined && setup.workers > 1) {
        // `--workers N` forks N processes (node:cluster) under the primary: all of them are measured.
        const deadline = Date.now() + 30_000;
        for (const herald of heralds) {
          while (processTree(herald.pid).length - 1 < setup.workers) {
            if (Date.now() > deadline) throw new Error(`--workers ${setup.workers}: found ${processTree(herald.pid).length - 1} worker processes under the primary`);
            await sleep(50);
          }
        }
      }
      return new Deployed(setup, heralds, redis, redisPid);
    } catch (err) {
      await Promise.all(heralds.map((h) => h.stop()));
      await redis?.stop();
      throw err;
    }
  }

  /** Each node with its descendants (a primary's workers), and redis-server, as they are now. */
  processGroups(): ProcessGroup[] {
    const groups: ProcessGroup[] = [];
    this.heralds.forEach((herald, i) => {
      const tree = processTree(herald.pid);
      for (const pid of tree.slice(1)) if (!this.#seen.has(pid)) this.#seen.set(pid, processStartTicks(pid));
      const name = this.heralds.length > 1 ? `node ${i + 1}` : 'herald';
      if (this.setup.workers === undefined) groups.push({ label: name, pids: tree });
      else {
        groups.push({ label: 'primary', pids: [herald.pid] });
        groups.push({ label: `${tree.length - 1} worker${tree.length === 2 ? '' : 's'}`, pids: tree.slice(1) });
      }
    });
    if (this.redisPid !== undefined) groups.push({ label: 'redis-server', pids: [this.redisPid] });
    return groups;
  }

  /** Redis's own time per call of its busiest commands so far: "evalsha 512 µs/call, xadd 1.9 µs/call, …". */
  async redisTimes(): Promise<string> {
    if (this.redis === undefined) return '';
    const rows = [...(await this.redis.cli('INFO', 'commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/gm)];
    return rows
      .map((m) => ({ name: m[1]!, usec: Number(m[3]), perCall: Number(m[4]) }))
      .filter((r) => r.name !== 'info')
      .sort((a, b) => b.usec - a.usec)
      .slice(0, 6)
      .map((r) => `${r.name} ${r.perCall.toFixed(1)} µs/call (${(r.usec / 1e6).toFixed(2)} s)`)
      .join(', ');
  }

  /** Calls per Redis command so far (INFO commandstats; commands run by scripts included). */
  async redisCalls(): Promise<Map<string, number>> {
    const calls = new Map<string, number>();
    if (this.redis === undefined) return calls;
    for (const match of (await this.redis.cli('INFO', 'commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(match[1]!, Number(match[2]));
    return calls;
  }

  /** Throws when a Herald process has exited. */
  checkRunning(): void {
    for (const herald of this.heralds) if (!herald.isRunning) throw new Error(`herald exited: ${herald.recentStderr}`);
  }

  async stop(): Promise<void> {
    for (const client of this.clients) client.close();
    await Promise.all(this.heralds.map((h) => h.stop()));
    // Workers left behind by a primary that was killed: only processes of this deployment's trees.
    for (const [pid, startTicks] of this.#seen) {
      if (startTicks === undefined || processStartTicks(pid) !== startTicks) continue; // gone (the pid may be another's now)
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
    }
    await this.redis?.stop();
  }
}

// ---- fan-out ----------------------------------------------------------------------------------

interface ScaleResult {
  setup: string;
  transport: WireTransport;
  spec: CellSpec;
  connected: number;
  deliveriesPerS: number;
  /** CPU of every server process of the deployment (Herald processes and redis-server) per delivery. */
  cpuUsPerDelivery: number;
  p50Ms: number;
  p99Ms: number;
  /** % of one core, per process group, in the window. */
  cpuPct: Record<string, number>;
  /** Redis calls per message published in the window, per command (INFO commandstats). */
  redisPerMessage: Record<string, number>;
  /** Deliveries per write system call of the Herald processes: how much the kernel writes coalesce. */
  deliveriesPerWrite: number;
  serverCpuPct: number;
  loadGeneratorCpuPct: number;
  backgroundCpuPct: number;
  published: number;
  missing: number;
  dropped: number;
  runs: number;
  cleanRuns: number;
  error?: string;
}

function failedResult(setup: Setup, transport: WireTransport, spec: CellSpec, error: string): ScaleResult {
  return {
    setup: setup.key, transport, spec, connected: 0, deliveriesPerS: NaN, cpuUsPerDelivery: NaN, p50Ms: NaN, p99Ms: NaN, cpuPct: {}, redisPerMessage: {}, deliveriesPerWrite: NaN,
    serverCpuPct: NaN, loadGeneratorCpuPct: NaN, backgroundCpuPct: NaN, published: 0, missing: 0, dropped: 0, runs: 0, cleanRuns: 0, error,
  };
}

/** One message, published once every subscriber is connected: resolves when all of them have it. */
async function probe(caller: HttpCaller, pool: LoadGeneratorPool, connected: number): Promise<void> {
  const before = pool.progressTotal;
  const res = await caller.call('POST', '/v1/publish', `{"channel":"${CHANNEL}","data":${messageData()}}`);
  if (res.status !== 200) throw new Error(`probe publish: ${res.status} ${res.body}`);
  const deadline = Date.now() + 20_000;
  while (pool.progressTotal < before + connected) {
    if (Date.now() > deadline) throw new Error(`the probe message reached ${pool.progressTotal - before} of ${connected} subscribers`);
    await sleep(20);
  }
}

async function fanoutRun(setup: Setup, transport: WireTransport, spec: CellSpec): Promise<ScaleResult> {
  const name = `${setup.key}-${transport}-${spec.subscribers}-${spec.rate}`;
  let deployed: Deployed | undefined;
  let pool: LoadGeneratorPool | undefined;
  let publisher: Publisher | undefined;
  try {
    deployed = await Deployed.start(setup, config.profileDir === undefined ? undefined : join(config.profileDir, name));
    const { clients, heralds } = deployed;
    const caller = roundRobin(clients);
    // One message through every node first (before anyone subscribes), so each has run its publish path.
    for (const client of clients) {
      const first = await client.call('POST', '/v1/publish', `{"channel":"${CHANNEL}","data":${messageData()}}`);
      if (first.status !== 200) throw new Error(`publish: ${first.status} ${first.body}`);
    }
    const opened = await LoadGeneratorPool.open({
      host: heralds[0]!.host,
      port: heralds[0]!.port,
      targets: heralds.map((h) => ({ host: h.host, port: h.port })),
      transport,
      channel: CHANNEL,
      connections: spec.subscribers,
      processes: config.processes,
    });
    pool = opened.pool;
    const { connected } = opened.ready;
    if (opened.ready.failed > 0) throw new Error(`${opened.ready.failed} connections failed: ${opened.ready.errors.join('; ')}`);
    // With --workers, /v1/stats is one worker's view (or whatever the primary makes of it): the probe
    // message, which must reach every subscriber, tells that all are attached.
    if (setup.workers === undefined) await waitSubscribed(clients, transport, connected);
    await probe(caller, pool, connected);
    await sleep(500);

    publisher = new Publisher(caller, CHANNEL);
    if (spec.rate === 'max') {
      const activePool = pool;
      const pump = publisher.asFastAsDelivered(() => activePool.progressTotal, connected, config.window);
      pool.onProgress(pump);
    } else publisher.atRate(spec.rate);
    await sleep(config.warmupS * 1000);

    const redisCalls0 = await deployed.redisCalls();
    const published0 = publisher.published;
    await pool.reset();
    const groups = deployed.processGroups();
    const heraldPids = groups.filter((g) => g.label !== 'redis-server').flatMap((g) => g.pids);
    const writes = (): number => heraldPids.reduce((n, pid) => n + writeSyscalls(pid), 0);
    const cpu = cpuWindow(groups.flatMap((g) => g.pids), pool);
    const writes0 = writes();
    await sleep(config.durationS * 1000);
    const reading = cpu.end();
    const writesInWindow = writes() - writes0;
    const publishedInWindow = publisher.published - published0;
    const window = await pool.report();
    const redisCalls1 = await deployed.redisCalls();
    await publisher.stop();
    deployed.checkRunning();

    // The probe reached everyone too; the first messages were published before anyone subscribed.
    const expected = (publisher.published - publisher.failed + 1) * connected;
    await drain(pool, expected);
    const final = await pool.report();
    const cpuPct: Record<string, number> = {};
    let at = 0;
    for (const group of groups) {
      const us = reading.perServerCpuUs.slice(at, at + group.pids.length).reduce((a, b) => a + b, 0);
      at += group.pids.length;
      cpuPct[group.label] = (us / 1e6 / reading.elapsedS) * 100;
    }
    log(`  publish round trip p50 ${percentile(publisher.roundTrips, 50).toFixed(1)} ms, p99 ${percentile(publisher.roundTrips, 99).toFixed(1)} ms, ${publisher.published} published`);
    if (publisher.failed > 0) log(`  ${publisher.failed} publishes failed: ${publisher.lastError}`);
    if (final.errors.length > 0) log(`  client errors: ${final.errors.join('; ')}`);
    const redisPerMessage = perMessage(redisCalls0, redisCalls1, publishedInWindow);
    if (Object.keys(redisPerMessage).length > 0) log(`  redis commands per published message: ${commandsNote(redisPerMessage)}`);
    return {
      setup: setup.key,
      transport,
      spec,
      connected,
      deliveriesPerS: window.received / reading.elapsedS,
      cpuUsPerDelivery: reading.serverCpuUs / window.received,
      p50Ms: percentile(window.histogram, 50),
      p99Ms: percentile(window.histogram, 99),
      cpuPct,
      redisPerMessage,
      deliveriesPerWrite: window.received / writesInWindow,
      serverCpuPct: (reading.serverCpuUs / 1e6 / reading.elapsedS) * 100,
      loadGeneratorCpuPct: (reading.loadGeneratorCpuUs / 1e6 / reading.elapsedS) * 100,
      backgroundCpuPct: reading.backgroundCpuPct,
      published: publisher.published,
      missing: expected - final.total,
      dropped: final.dropped,
      runs: 1,
      cleanRuns: 0,
    };
  } finally {
    await publisher?.stop();
    await pool?.close();
    await deployed?.stop();
  }
}

/** Redis calls in a window per message published in it, per command (the benchmark's own INFO left out). */
function perMessage(before: Map<string, number>, after: Map<string, number>, messages: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const [name, calls] of [...after].sort((a, b) => b[1] - a[1])) {
    const n = (calls - (before.get(name) ?? 0)) / messages;
    if (n > 0 && name !== 'info') counts[name] = n;
  }
  return counts;
}

/** "evalsha 1.00, xrange 0.12, …" */
const commandsNote = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .map(([name, n]) => `${name} ${n.toFixed(2)}`)
    .join(', ');

function isClean(result: { error?: string; backgroundCpuPct: number }): boolean {
  return result.error === undefined && result.backgroundCpuPct <= config.quietPct;
}

/** Medians over the clean runs (over every successful run when none was clean; the last failure when all failed). */
function medianResult(runs: ScaleResult[]): ScaleResult {
  const succeeded = runs.filter((r) => r.error === undefined);
  if (succeeded.length === 0) return runs[runs.length - 1]!;
  const clean = succeeded.filter(isClean);
  const ok = clean.length > 0 ? clean : succeeded;
  const m = (pick: (r: ScaleResult) => number): number => median(ok.map(pick));
  const cpuPct: Record<string, number> = {};
  for (const label of Object.keys(ok[0]!.cpuPct)) cpuPct[label] = m((r) => r.cpuPct[label] ?? NaN);
  const redisPerMessage: Record<string, number> = {};
  for (const name of Object.keys(ok[0]!.redisPerMessage)) redisPerMessage[name] = m((r) => r.redisPerMessage[name] ?? 0);
  return {
    ...ok[0]!,
    redisPerMessage,
    deliveriesPerWrite: m((r) => r.deliveriesPerWrite),
    deliveriesPerS: m((r) => r.deliveriesPerS),
    cpuUsPerDelivery: m((r) => r.cpuUsPerDelivery),
    p50Ms: m((r) => r.p50Ms),
    p99Ms: m((r) => r.p99Ms),
    cpuPct,
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

// ---- publish ----------------------------------------------------------------------------------

interface PublishScaleResult {
  setup: string;
  messagesPerS: number;
  /** CPU of every server process (Herald nodes and redis-server) per accepted message. */
  cpuUsPerMessage: number;
  batchP50Ms: number;
  batchP99Ms: number;
  cpuPct: Record<string, number>;
  backgroundCpuPct: number;
  failed: number;
  runs: number;
  cleanRuns: number;
  error?: string;
}

async function publishRun(setup: Setup): Promise<PublishScaleResult> {
  let deployed: Deployed | undefined;
  try {
    deployed = await Deployed.start(setup, config.profileDir === undefined ? undefined : join(config.profileDir, `publish-${setup.key}`));
    const groups = deployed.processGroups();
    const pids = groups.flatMap((g) => g.pids);
    // publishBatches reads `cpuUs` at the start and the end of its window: the machine is read then too.
    const marks: { perPid: number[]; busyUs: number; ownUs: number; atMs: number }[] = [];
    const result = await publishBatches({
      callers: deployed.clients,
      publishers: config.publishers,
      batchSize: config.batchSize,
      warmupS: Math.min(2, config.warmupS + 0.5),
      windowS: config.publishS,
      cpuUs: () => {
        const perPid = pids.map(cpuTimeUs);
        marks.push({ perPid, busyUs: machineBusyUs(), ownUs: ownCpuTimeUs(), atMs: performance.now() });
        return perPid.reduce((a, b) => a + b, 0);
      },
    });
    deployed.checkRunning();
    const times = await deployed.redisTimes();
    if (times !== '') log(`  redis time per command (whole run): ${times}`);
    const [m0, m1] = marks as [(typeof marks)[0], (typeof marks)[0]];
    const elapsedS = (m1.atMs - m0.atMs) / 1000;
    const perPidUs = m1.perPid.map((us, i) => us - m0.perPid[i]!);
    const cpuPct: Record<string, number> = {};
    let at = 0;
    for (const group of groups) {
      cpuPct[group.label] = (perPidUs.slice(at, at + group.pids.length).reduce((a, b) => a + b, 0) / 1e6 / elapsedS) * 100;
      at += group.pids.length;
    }
    const serverUs = perPidUs.reduce((a, b) => a + b, 0);
    const backgroundCpuPct = ((m1.busyUs - m0.busyUs - serverUs - (m1.ownUs - m0.ownUs)) / 1e6 / elapsedS) * 100;
    return { setup: setup.key, ...result, cpuPct, backgroundCpuPct, runs: 1, cleanRuns: 0 };
  } catch (err) {
    return { setup: setup.key, messagesPerS: NaN, cpuUsPerMessage: NaN, batchP50Ms: NaN, batchP99Ms: NaN, cpuPct: {}, backgroundCpuPct: NaN, failed: 0, runs: 0, cleanRuns: 0, error: (err as Error).message };
  } finally {
    await deployed?.stop();
  }
}

function medianPublish(runs: PublishScaleResult[]): PublishScaleResult {
  const succeeded = runs.filter((r) => r.error === undefined);
  if (succeeded.length === 0) return runs[runs.length - 1]!;
  const clean = succeeded.filter(isClean);
  const ok = clean.length > 0 ? clean : succeeded;
  const m = (pick: (r: PublishScaleResult) => number): number => median(ok.map(pick));
  const cpuPct: Record<string, number> = {};
  for (const label of Object.keys(ok[0]!.cpuPct)) cpuPct[label] = m((r) => r.cpuPct[label] ?? NaN);
  return {
    ...ok[0]!,
    messagesPerS: m((r) => r.messagesPerS),
    cpuUsPerMessage: m((r) => r.cpuUsPerMessage),
    batchP50Ms: m((r) => r.batchP50Ms),
    batchP99Ms: m((r) => r.batchP99Ms),
    cpuPct,
    backgroundCpuPct: m((r) => r.backgroundCpuPct),
    failed: Math.max(...ok.map((r) => r.failed)),
    runs: ok.length,
    cleanRuns: clean.length,
  };
}

// ---- report -----------------------------------------------------------------------------------

const runsNote = (r: { runs: number; cleanRuns: number }): string => (r.cleanRuns > 0 ? `${r.runs}` : `${r.runs}, all disturbed`);
const cpuBreakdown = (cpuPct: Record<string, number>): string =>
  Object.entries(cpuPct)
    .map(([label, pct]) => `${label} ${fmt(pct)}%`)
    .join(', ');
const cell = (text: string): string => text.replace(/\|/g, '/').slice(0, 200);

function find(results: readonly ScaleResult[], setup: Setup, transport: WireTransport, spec: CellSpec): ScaleResult | undefined {
  return results.find((r) => r.setup === setup.key && r.transport === transport && r.spec.subscribers === spec.subscribers && r.spec.rate === spec.rate);
}

function fanoutRow(setup: Setup, r: ScaleResult): string {
  if (r.error !== undefined) return `| ${TRANSPORT_LABEL[r.transport]} | ${setup.label} | failed: ${cell(r.error)} | | | | | | | |`;
  const loss = r.missing === 0 && r.dropped === 0 ? '0' : `${fmt(r.missing)}${r.dropped > 0 ? ` (${r.dropped} conns dropped)` : ''}`;
  return (
    `| ${TRANSPORT_LABEL[r.transport]} | ${setup.label} (${runsNote(r)}) | ${fmt(r.deliveriesPerS)} | ${fmt(r.cpuUsPerDelivery, 2)} | ${fmt(r.deliveriesPerWrite, 2)} | ` +
    `${fmt(r.p50Ms, 1)} / ${fmt(r.p99Ms, 1)} | ${fmt(r.serverCpuPct)}% (${cpuBreakdown(r.cpuPct)}) | ${fmt(r.loadGeneratorCpuPct)}% | ` +
    `${fmt(Math.max(0, r.backgroundCpuPct))}% | ${loss} |`
  );
}

function ratioRow(comparison: Comparison, of: ScaleResult, base: ScaleResult): string {
  const deliveries = of.deliveriesPerS / base.deliveriesPerS;
  const cpu = of.cpuUsPerDelivery / base.cpuUsPerDelivery;
  return (
    `| ${TRANSPORT_LABEL[of.transport]} | **${comparison.of.key} ÷ ${comparison.base.key}** | ${fmt(deliveries, 2)}× | ` +
    `**${fmt(cpu, 2)}×** ${mark(cpu <= comparison.cpuRatioMax)} (≤ ${comparison.cpuRatioMax}) | | ${fmt(of.p50Ms / base.p50Ms, 2)}× / ${fmt(of.p99Ms / base.p99Ms, 2)}× | | | | |`
  );
}

function fanoutTables(results: readonly ScaleResult[], setups: readonly Setup[], comparisons: readonly Comparison[]): string {
  const parts: string[] = [];
  for (const spec of config.cells) {
    parts.push(`#### ${specTitle(spec)}\n`);
    parts.push('| transport | deployment (runs) | deliveries/s | CPU µs/delivery, all server processes | deliveries per write syscall | latency p50 / p99 ms | server CPU (per process, % of a core) | load-gen CPU | other load | missing deliveries |');
    parts.push('|---|---|---:|---:|---:|---:|---|---:|---:|---:|');
    for (const transport of config.transports) {
      for (const setup of setups) {
        const r = find(results, setup, transport, spec);
        if (r !== undefined) parts.push(fanoutRow(setup, r));
      }
      for (const comparison of comparisons) {
        const of = find(results, comparison.of, transport, spec);
        const base = find(results, comparison.base, transport, spec);
        if (of !== undefined && base !== undefined && of.error === undefined && base.error === undefined) parts.push(ratioRow(comparison, of, base));
      }
    }
    parts.push('');
  }
  return parts.join('\n');
}

function summaryTable(results: readonly ScaleResult[], comparisons: readonly Comparison[], publish: readonly PublishScaleResult[]): string {
  const lines = ['| aim | ' + config.transports.map((t) => TRANSPORT_LABEL[t]).join(' | ') + ' |', '|---|' + config.transports.map(() => '---|').join('')];
  for (const comparison of comparisons) {
    for (const spec of config.cells) {
      const label = spec.rate === 'max' ? `${fmt(spec.subscribers)} subs, saturation` : `${fmt(spec.subscribers)} subs, ${spec.rate} msg/s`;
      const cells = config.transports.map((t) => {
        const of = find(results, comparison.of, t, spec);
        const base = find(results, comparison.base, t, spec);
        if (of === undefined || base === undefined || of.error !== undefined || base.error !== undefined) return '—';
        const ratio = of.cpuUsPerDelivery / base.cpuUsPerDelivery;
        const disturbed = of.cleanRuns === 0 || base.cleanRuns === 0 ? ' (from disturbed runs)' : '';
        return `${fmt(ratio, 2)}× ${mark(ratio <= comparison.cpuRatioMax)}${disturbed}`;
      });
      lines.push(`| CPU/delivery, ${comparison.of.label} ≤ ${comparison.cpuRatioMax}× ${comparison.base.label} (${label}) | ${cells.join(' | ')} |`);
    }
  }
  for (const r of publish) {
    if (!r.setup.startsWith('redis') || r.error !== undefined) continue;
    const setup = r.setup === 'redis' ? SETUPS.redis : SETUPS['redis-1'];
    lines.push(`| publish into Redis ≥ 50,000 msgs/s (${setup.label}) | ${fmt(r.messagesPerS)} msgs/s ${mark(r.messagesPerS >= AIMS.redisPublishMinPerS)} |${config.transports.slice(1).map(() => ' |').join('')}`);
  }
  return lines.join('\n');
}

/** What Redis ran per published message in the fan-out cells (the script's commands included). */
function redisCommandsTable(results: readonly ScaleResult[]): string {
  const rows = results.filter((r) => r.error === undefined && Object.keys(r.redisPerMessage).length > 0);
  if (rows.length === 0) return '';
  const lines = ['| cell | transport | deployment | Redis commands per published message (median over the runs) |', '|---|---|---|---|'];
  for (const r of rows) {
    const setup = [SETUPS.redis, SETUPS['redis-1']].find((s) => s.key === r.setup)!;
    lines.push(`| ${specTitle(r.spec).replace(/ \(.*\)$/, '')} | ${TRANSPORT_LABEL[r.transport]} | ${setup.label} | ${commandsNote(r.redisPerMessage)} |`);
  }
  return lines.join('\n');
}

function publishTable(results: readonly PublishScaleResult[]): string {
  const lines = [
    '| deployment (runs) | publishers × batch | messages/s | CPU µs/message, all server processes | batch latency p50 / p99 ms | server CPU (per process, % of a core) | other load | failed requests |',
    '|---|---|---:|---:|---:|---|---:|---:|',
  ];
  for (const r of results) {
    const setup = publishSetup(r.setup as PublishSetupName);
    if (r.error !== undefined) {
      lines.push(`| ${setup.label} | failed: ${cell(r.error)} | | | | | | |`);
      continue;
    }
    const aim = setup.store === 'redis' ? ` ${mark(r.messagesPerS >= AIMS.redisPublishMinPerS)} (≥ ${fmt(AIMS.redisPublishMinPerS)})` : '';
    lines.push(
      `| ${setup.label} (${runsNote(r)}) | ${config.publishers} × ${config.batchSize} | **${fmt(r.messagesPerS)}**${aim} | ${fmt(r.cpuUsPerMessage, 2)} | ` +
        `${fmt(r.batchP50Ms, 1)} / ${fmt(r.batchP99Ms, 1)} | ${cpuBreakdown(r.cpuPct)} | ${fmt(Math.max(0, r.backgroundCpuPct))}% | ${r.failed} |`,
    );
  }
  return lines.join('\n');
}

function publishSetup(name: PublishSetupName): Setup {
  return name === 'sqlite' ? SETUPS.sqlite : name === 'redis' ? SETUPS.redis : SETUPS['redis-1'];
}

// ---- main -------------------------------------------------------------------------------------

/** Whether this build of Herald has `--workers` (it is being built while this benchmark exists). */
function hasWorkersFlag(): boolean {
  try {
    const help = execFileSync(process.execPath, [heraldEntry, '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
    return /--workers\b/.test(help);
  } catch {
    return false;
  }
}

const loadNote = (): string => loadavg().map((l) => l.toFixed(2)).join(' / ');

async function main(): Promise<void> {
  if (config.profileDir !== undefined) mkdirSync(config.profileDir, { recursive: true });
  const started = new Date();
  const loadAtStart = loadNote();
  const code = codeNote(config.isSnapshotBuild);
  if (config.isSnapshotBuild) {
    log('compiling src/ into .bench-out/herald-build-scale-out/');
    heraldEntry = snapshotHerald('herald-build-scale-out');
  }
  const setups: Setup[] = [];
  const comparisons: Comparison[] = [];
  let workersNote = '';
  if (config.setups.includes('embedded')) setups.push(SETUPS.embedded);
  if (config.setups.includes('redis')) setups.push(SETUPS.redis);
  if (config.setups.includes('redis-1')) setups.push(SETUPS['redis-1']);
  if (config.setups.includes('workers-1')) setups.push(SETUPS['workers-1']);
  if (config.setups.includes('workers')) {
    // `--workers 1` is the default: one process, the embedded node itself, which is the baseline then
    // (BENCH_SETUPS=workers-1 measures it apart anyway).
    if (hasWorkersFlag()) setups.push(SETUPS['workers-n']);
    else {
      workersNote = '`--workers` is not in this build\'s `herald --help` yet: the workers cells were not run (they run as soon as the flag exists).';
      log(workersNote);
    }
  }
  for (const of of [SETUPS.redis, SETUPS['redis-1']]) {
    if (setups.includes(of) && setups.includes(SETUPS.embedded)) comparisons.push({ of, base: SETUPS.embedded, cpuRatioMax: AIMS.redisCpuRatioMax });
  }
  if (setups.includes(SETUPS['workers-n'])) {
    const base = setups.includes(SETUPS['workers-1']) ? SETUPS['workers-1'] : SETUPS.embedded;
    if (setups.includes(base)) comparisons.push({ of: SETUPS['workers-n'], base, cpuRatioMax: AIMS.workersCpuRatioMax });
  }
  log(`${isQuick ? 'quick smoke run' : 'full run'}: cells ${config.cells.map((c) => `${c.subscribers}:${c.rate}`).join(', ')}, ` +
    `${config.durationS}s windows, setups ${setups.map((s) => s.key).join('+')}, transports ${config.transports.join('+')}`);

  const results: ScaleResult[] = [];
  for (const spec of config.cells) {
    for (const transport of config.transports) {
      const runs = await repeatUntilClean<Setup, ScaleResult>({
        keys: setups,
        repeat: config.repeat,
        maxAttempts: config.maxAttempts,
        isClean,
        run: async (setup, attempt, cleanSoFar) => {
          log(`${setup.key} ${TRANSPORT_LABEL[transport]} — ${specTitle(spec)} (attempt ${attempt}, ${cleanSoFar}/${config.repeat} clean runs so far)`);
          await waitForQuiet(config.quietPct, config.quietMaxS);
          let result: ScaleResult;
          try {
            result = await fanoutRun(setup, transport, spec);
          } catch (err) {
            result = failedResult(setup, transport, spec, (err as Error).message);
          }
          log(
            result.error !== undefined
              ? `  FAILED: ${result.error}`
              : `  ${Math.round(result.deliveriesPerS)} deliveries/s, ${result.cpuUsPerDelivery.toFixed(2)} µs/delivery, ` +
                  `${result.deliveriesPerWrite.toFixed(2)} deliveries/write, p50 ${result.p50Ms.toFixed(1)} ms, p99 ${result.p99Ms.toFixed(1)} ms, server ${result.serverCpuPct.toFixed(0)}% CPU (${cpuBreakdown(result.cpuPct)}), ` +
                  `load-gen ${result.loadGeneratorCpuPct.toFixed(0)}%, other ${result.backgroundCpuPct.toFixed(0)}%${isClean(result) ? '' : ' (disturbed)'}, missing ${result.missing}`,
          );
          return result;
        },
      });
      for (const setup of setups) results.push(medianResult(runs.get(setup)!));
    }
  }

  const publish: PublishScaleResult[] = [];
  if (config.publishS > 0) {
    const publishSetups = config.publishSetups.map(publishSetup);
    const runs = await repeatUntilClean<Setup, PublishScaleResult>({
      keys: publishSetups,
      repeat: config.repeat,
      maxAttempts: config.maxAttempts,
      isClean,
      run: async (setup, attempt) => {
        log(`publish: ${setup.key}, ${config.publishers} publishers × batches of ${config.batchSize} (attempt ${attempt})`);
        await waitForQuiet(config.quietPct, config.quietMaxS);
        const result = await publishRun(setup);
        log(
          result.error !== undefined
            ? `  FAILED: ${result.error}`
            : `  ${Math.round(result.messagesPerS)} msgs/s, ${result.cpuUsPerMessage.toFixed(2)} µs/message (${cpuBreakdown(result.cpuPct)}), other ${result.backgroundCpuPct.toFixed(0)}%`,
        );
        return result;
      },
    });
    for (const setup of publishSetups) publish.push(medianPublish(runs.get(setup)!));
  }

  const generated = [
    `Run ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC${isQuick ? ' (BENCH_QUICK smoke run)' : ''} on ${machineNote()}; ${code}. ` +
      `Load average (1 / 5 / 15 min) ${loadAtStart} at the start, ${loadNote()} at the end; the "other load" columns are what the rest of the machine used during each window.`,
    `Cells: ${config.durationS} s measurement window after ${config.warmupS} s of warm-up; median of up to ${config.repeat} clean run(s) per deployment ` +
      `(other processes ≤ ${config.quietPct}% of a core during the window), alternating deployments; ${config.processes} load-generator processes in all ` +
      `(dealt out evenly over the nodes); saturation window ${config.window} messages${config.heraldArgs.length > 0 ? `; Herald flags \`${config.heraldArgs.join(' ')}\`` : ''}.`,
    ...(workersNote === '' ? [] : ['', workersNote]),
    '',
    '#### Aims',
    '',
    summaryTable(results, comparisons, publish),
    '',
    fanoutTables(results, setups, comparisons),
    ...(redisCommandsTable(results) === '' ? [] : ['#### Redis commands per published message', '', redisCommandsTable(results), '']),
    '#### Publish throughput',
    '',
    publish.length > 0 ? publishTable(publish) : '(not run)',
  ].join('\n');
  process.stdout.write(`\n${generated}\n`);
  if (config.out !== '') {
    const path = resolve(ROOT, config.out);
    writeBlock(path, 'bench:scale-out', 'bench/scale-out.ts', generated, DOC_TEMPLATE, '## Scale-out: Redis and workers');
    log(`wrote ${path}`);
  }
}

runBench('scale-out bench', main);
