// Real redis-server processes for tests (Debian's /usr/bin/redis-server and redis-cli, installed by
// scripts/ensure-packages.sh). Each server listens on a free loopback port, keeps its files in a temp dir
// of its own (no RDB snapshots unless asked; logs to redis.log there) and is killed when the test process
// exits even if a test forgot to stop it, so no redis-server outlives a test run.
//
//   const redis = await startRedis();            // redis.url is redis://127.0.0.1:PORT
//   t.after(() => redis.stop());
//   await redis.cli('SET', 'k', 'v');            // runs redis-cli -p PORT SET k v, returns its stdout
//   redis.pause(); ... redis.resume();           // SIGSTOP / SIGCONT: a server that hangs, then comes back
//   await redis.restart();                       // SIGTERM, then a new process on the same port and dir
//
//   const cluster = await startRedisCluster();   // 3 masters, no replicas, all 16384 slots served
//   const channels = await channelsOnEveryMaster(cluster, 'ch-', 2);
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const REDIS_SERVER = '/usr/bin/redis-server';
const REDIS_CLI = '/usr/bin/redis-cli';
const START_TIMEOUT_MS = 10_000;
const CLUSTER_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

export interface RedisServer {
  port: number;
  /** redis://127.0.0.1:PORT */
  url: string;
  /** The server's --dir: AOF files, nodes.conf, redis.log. Removed by stop(). */
  dir: string;
  /** Runs `redis-cli -p PORT ...args` and returns its stdout, trimmed (raw output: errors come back as text). */
  cli(...args: string[]): Promise<string>;
  /** SIGSTOP: the server keeps its connections but answers nothing until resume(). */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /**
   * SIGTERM and wait for the exit (or start again after kill()), then a new process on the same port and
   * dir, resolved once it answers PING (a cluster node serves keys only later: see waitClusterOk).
   */
  restart(): Promise<void>;
  /** SIGKILL, as a crash would; restart() brings it back. */
  kill(): Promise<void>;
  /** Kills the server and removes its dir. Safe to call twice. */
  stop(): Promise<void>;
}

export interface RedisClusterServer {
  ports: number[];
  /** redis-cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3 */
  url: string;
  nodes: RedisServer[];
  /** Runs `redis-cli -c -p P1 ...args` (following MOVED/ASK redirections) and returns its stdout, trimmed. */
  cli(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export interface RedisOptions {
  /** appendonly yes with appendfsync always: every acknowledged write survives restart() and kill(). */
  appendOnly?: boolean;
}

// --- Safety net: everything started here dies with the test process. ---------------------------------

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
/** Ports picked for servers this process started and has not stopped, so that two never pick the same one. */
const takenPorts = new Set<number>();
let safetyNetInstalled = false;

function killEverything(): void {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL'); // works on a SIGSTOPped process too
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

function installSafetyNet(): void {
  if (safetyNetInstalled) return;
  safetyNetInstalled = true;
  process.on('exit', killEverything);
  // 'exit' does not run when a signal ends the process: kill the servers, then let the signal do what it
  // would have done (end the process) unless someone else listens for it.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killEverything();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

// --- Small tools. -------------------------------------------------------------------------------------

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Waits for the child's exit, keeping the event loop alive meanwhile (the children are unref'd). */
async function waitExit(child: ChildProcess, timeoutMs = STOP_TIMEOUT_MS): Promise<boolean> {
  if (hasExited(child) || child.pid === undefined) return true; // (no pid: it never started)
  child.ref();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
      child.once('exit', () => resolve(true));
    });
  } finally {
    clearTimeout(timer);
    child.unref();
  }
}

/** A loopback port that was free a moment ago (bound to port 0, then closed), now in takenPorts. */
async function takeFreePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    server.close();
    await once(server, 'close');
    if (!takenPorts.has(port)) {
      takenPorts.add(port);
      return port;
    }
  }
}

/**
 * Sends one command over a fresh connection and returns the reply as text (a simple, error, integer or
 * bulk reply; errors start with '-'), or null when there is no answer within timeoutMs.
 */
function rawCommand(port: number, args: string[], timeoutMs = 1000): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let buffer = Buffer.alloc(0);
    const done = (reply: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(reply);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    socket.on('error', () => done(null));
    socket.on('close', () => done(null));
    socket.on('connect', () => {
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const lineEnd = buffer.indexOf('\r\n');
      if (lineEnd < 0) return;
      const line = buffer.subarray(0, lineEnd).toString();
      if (line[0] !== '$') return done(line.slice(line[0] === '-' ? 0 : 1));
      const length = Number(line.slice(1));
      if (length < 0) return done('');
      if (buffer.length >= lineEnd + 2 + length + 2) done(buffer.subarray(lineEnd + 2, lineEnd + 2 + length).toString());
    });
  });
}

/**
 * Runs redis-cli with the given arguments (and `input` on its standard input) and returns its stdout,
 * trimmed. Rejects when redis-cli exits non-zero (e.g. nothing listens on the port) or has not exited
 * after timeoutMs (it is then killed): redis-cli has no read timeout of its own, so a PING to a paused
 * server would hang forever without one.
 */
export function redisCli(args: string[], options: { timeoutMs?: number; input?: string } = {}): Promise<string> {
  const { timeoutMs = 30_000, input } = options;
  return new Promise((resolve, reject) => {
    const child = spawn(REDIS_CLI, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      const what = `redis-cli ${args.join(' ')}`;
      if (timedOut) reject(new Error(`${what}: no answer within ${timeoutMs} ms`));
      else if (code !== 0) reject(new Error(`${what} exited with ${code}: ${(stderr || stdout).trim()}`));
      else resolve(stdout.trim());
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

class PortClash extends Error {}

// --- One server. --------------------------------------------------------------------------------------

interface ServerSpec {
  appendOnly: boolean;
  /** Extra redis-server arguments, given the port; for the cluster nodes. */
  extraArgs?: (port: number) => string[];
  /** How many free ports besides the client port the extra arguments need (the cluster bus port). */
  extraPorts?: number;
}

function serverArgs(port: number, dir: string, spec: ServerSpec, extra: number[]): string[] {
  return [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--protected-mode', 'no',
    '--daemonize', 'no',
    '--dir', dir,
    '--logfile', join(dir, 'redis.log'),
    '--save', '',
    '--appendonly', spec.appendOnly ? 'yes' : 'no',
    ...(spec.appendOnly ? ['--appendfsync', 'always'] : []),
    ...(spec.extraArgs ? spec.extraArgs(extra[0]!) : []),
  ];
}

function readLog(dir: string): string {
  let text = '';
  for (const name of ['stdout.log', 'redis.log']) {
    try {
      text += readFileSync(join(dir, name), 'utf8');
    } catch {
      // not written yet
    }
  }
  return text.split('\n').slice(-15).join('\n');
}

function spawnServer(args: string[], dir: string): ChildProcess {
  // Before the config is read (bad arguments), redis-server writes to stdout: keep that in a file too.
  const out = openSync(join(dir, 'stdout.log'), 'a');
  const child = spawn(REDIS_SERVER, args, { cwd: dir, stdio: ['ignore', out, out] });
  closeSync(out);
  child.once('error', () => {}); // reported by waitReady as an early exit
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  // A test that forgets stop() must not keep its process alive forever; the 'exit' safety net kills it.
  child.unref();
  return child;
}

/** Waits until this very process answers PING (not another server that holds the port). */
async function waitReady(child: ChildProcess, port: number, dir: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (hasExited(child) || child.pid === undefined) {
      const log = readLog(dir);
      if (/Address already in use/i.test(log)) throw new PortClash(`port ${port} is taken`);
      throw new Error(`redis-server on port ${port} exited before answering PING:\n${log}`);
    }
    if ((await rawCommand(port, ['PING'], 500)) === 'PONG') {
      const info = await rawCommand(port, ['INFO', 'server'], 1000);
      if (info?.includes(`process_id:${child.pid}\r\n`)) return;
      if (info !== null && /process_id:\d+/.test(info)) {
        child.kill('SIGKILL');
        await waitExit(child);
        throw new PortClash(`port ${port} is served by another redis-server`);
      }
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await waitExit(child);
      throw new Error(`redis-server on port ${port} did not answer PING within ${START_TIMEOUT_MS} ms:\n${readLog(dir)}`);
    }
    await sleep(20);
  }
}

async function startServer(spec: ServerSpec): Promise<RedisServer> {
  installSafetyNet();
  const dir = mkdtempSync(join(tmpdir(), 'herald-redis-'));
  liveDirs.add(dir);
  let port = 0;
  let extra: number[] = [];
  let child: ChildProcess | undefined;
  const release = () => {
    for (const p of [port, ...extra]) takenPorts.delete(p);
  };
  try {
    for (let attempt = 1; ; attempt++) {
      port = await takeFreePort();
      extra = [];
      for (let i = 0; i < (spec.extraPorts ?? 0); i++) extra.push(await takeFreePort());
      child = spawnServer(serverArgs(port, dir, spec, extra), dir);
      try {
        await waitReady(child, port, dir);
        break;
      } catch (error) {
        if (!(error instanceof PortClash) || attempt >= 10) throw error;
        release();
        rmSync(dir, { recursive: true, force: true }); // a half-written nodes.conf must not be reused
        mkdirSync(dir);
      }
    }
  } catch (error) {
    if (child && !hasExited(child)) child.kill('SIGKILL');
    if (child) await waitExit(child);
    release();
    rmSync(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
    throw error;
  }
  const args = serverArgs(port, dir, spec, extra);
  let current: ChildProcess = child!;
  let paused = false;
  let stopping: Promise<void> | undefined;

  const signal = (name: NodeJS.Signals) => {
    if (!hasExited(current)) current.kill(name);
  };
  const resume = () => {
    if (paused) signal('SIGCONT');
    paused = false;
  };
  const kill = async () => {
    signal('SIGKILL');
    paused = false;
    await waitExit(current);
  };

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    cli: (...cliArgs) => redisCli(['-h', '127.0.0.1', '-p', String(port), ...cliArgs]),
    pause() {
      if (stopping) throw new Error('pause() after stop()');
      signal('SIGSTOP');
      paused = true;
    },
    resume,
    async restart() {
      if (stopping) throw new Error('restart() after stop()');
      if (!hasExited(current)) {
        resume(); // a stopped process would not act on SIGTERM
        signal('SIGTERM');
        if (!(await waitExit(current))) await kill();
      }
      // The port was ours a moment ago; retry a little in case the old socket lingers.
      for (let attempt = 1; ; attempt++) {
        current = spawnServer(args, dir);
        try {
          await waitReady(current, port, dir);
          return;
        } catch (error) {
          if (!(error instanceof PortClash) || attempt >= 20) throw error;
          await sleep(100);
        }
      }
    },
    kill,
    stop() {
      stopping ??= (async () => {
        resume();
        await kill();
        rmSync(dir, { recursive: true, force: true });
        liveDirs.delete(dir);
        release();
      })();
      return stopping;
    },
  };
}

/** A standalone redis-server on a free loopback port, answering PING. */
export function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  return startServer({ appendOnly: options.appendOnly ?? false });
}

// --- A cluster of three masters. ----------------------------------------------------------------------

/**
 * Three cluster-enabled redis-servers (each with its own dir and nodes.conf, bus port chosen freely with
 * cluster-port), joined by `redis-cli --cluster create` as 3 masters without replicas, and resolved once
 * every node reports cluster_state:ok.
 */
export async function startRedisCluster(): Promise<RedisClusterServer> {
  const spec: ServerSpec = {
    appendOnly: false,
    extraPorts: 1,
    extraArgs: (busPort) => [
      '--cluster-enabled', 'yes',
      '--cluster-config-file', 'nodes.conf',
      '--cluster-node-timeout', '5000',
      '--cluster-port', String(busPort),
    ],
  };
  const started = await Promise.allSettled([startServer(spec), startServer(spec), startServer(spec)]);
  const nodes = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  };
  try {
    const failed = started.find((result) => result.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);
    await redisCli(['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], {
      timeoutMs: CLUSTER_TIMEOUT_MS,
    });
    await waitClusterOk(nodes);
  } catch (error) {
    await stop();
    throw error;
  }
  const ports = nodes.map((node) => node.port);
  return {
    ports,
    url: `redis-cluster://${ports.map((port) => `127.0.0.1:${port}`).join(',')}`,
    nodes,
    cli: (...args) => redisCli(['-c', '-h', '127.0.0.1', '-p', String(ports[0]), ...args]),
    stop,
  };
}

/**
 * Waits until every node says cluster_state:ok. A master that has just (re)started says so only 2 s
 * after its start (Redis's CLUSTER_WRITABLE_DELAY) and answers CLUSTERDOWN until then, so a test that
 * restarts a cluster node and needs it serving calls this after restart().
 */
export async function waitClusterOk(nodes: RedisServer[], timeoutMs = CLUSTER_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const node of nodes) {
    for (;;) {
      const info = await rawCommand(node.port, ['CLUSTER', 'INFO'], 1000);
      if (info?.includes('cluster_state:ok')) break;
      if (Date.now() > deadline) {
        throw new Error(`cluster node ${node.port} not ok after ${timeoutMs} ms:\n${info}\n${readLog(node.dir)}`);
      }
      await sleep(50);
    }
  }
}

interface SlotRange {
  start: number;
  end: number;
  port: number;
}

/** The cluster's slot ranges and the port of the master that serves each (CLUSTER SLOTS, asked now). */
async function slotRanges(cluster: RedisClusterServer): Promise<SlotRange[]> {
  const slots = JSON.parse(await cluster.nodes[0]!.cli('--json', 'CLUSTER', 'SLOTS')) as [number, number, [string, number, ...unknown[]]][];
  return slots.map(([start, end, [, port]]) => ({ start, end, port }));
}

function ownerOf(ranges: SlotRange[], slot: number): number {
  const range = ranges.find((r) => r.start <= slot && slot <= r.end);
  if (!range) throw new Error(`slot ${slot} is served by no master`);
  return range.port;
}

/** CLUSTER KEYSLOT of many keys through one redis-cli, which reads the commands from its stdin. */
async function keySlots(cluster: RedisClusterServer, keys: string[]): Promise<number[]> {
  const quote = (key: string) =>
    `"${key.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\r/g, '\\r')}"`;
  const input = keys.map((key) => `CLUSTER KEYSLOT ${quote(key)}\n`).join('');
  const output = await redisCli(['-h', '127.0.0.1', '-p', String(cluster.ports[0])], { input });
  const slots = output.split('\n').map(Number);
  if (slots.length !== keys.length || slots.some((slot) => !Number.isInteger(slot))) {
    throw new Error(`CLUSTER KEYSLOT gave ${JSON.stringify(output)} for ${keys.length} keys`);
  }
  return slots;
}

/** The port of the master that serves the slot of `key` (CLUSTER KEYSLOT, then CLUSTER SLOTS). */
export async function slotOwnerPort(cluster: RedisClusterServer, key: string): Promise<number> {
  const slot = Number(await cluster.nodes[0]!.cli('CLUSTER', 'KEYSLOT', key));
  return ownerOf(await slotRanges(cluster), slot);
}

/**
 * Channel names prefix+0, prefix+1, ... up to the first one by which every master serves at least
 * perMaster of them (all the names picked are returned, so some masters may get more). A channel's
 * slot is that of the hash tag {channel}, which all of its keys ({channel}:...) share: CLUSTER KEYSLOT
 * of "{channel}" (the same as of the bare name when it has no braces of its own).
 */
export async function channelsOnEveryMaster(cluster: RedisClusterServer, prefix: string, perMaster: number): Promise<string[]> {
  const ranges = await slotRanges(cluster);
  const counts = new Map<number, number>();
  for (const range of ranges) counts.set(range.port, 0);
  const names: string[] = [];
  const batch = Math.max(16, perMaster * counts.size * 2);
  while (names.length < 100_000) {
    const candidates = Array.from({ length: batch }, (_, i) => `${prefix}${names.length + i}`);
    const slots = await keySlots(cluster, candidates.map((name) => `{${name}}`));
    for (let i = 0; i < candidates.length; i++) {
      names.push(candidates[i]!);
      const port = ownerOf(ranges, slots[i]!);
      counts.set(port, counts.get(port)! + 1);
      if ([...counts.values()].every((count) => count >= perMaster)) return names;
    }
  }
  throw new Error(`no ${perMaster} channels per master among ${names.length} names starting ${prefix}`);
}
