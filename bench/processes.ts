// Child processes of the benchmark (servers and load generators), what /proc says about them, and the
// guarantee that none outlives the benchmark: every child is registered and killed on exit, error,
// SIGINT and SIGTERM.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

const live = new Set<ChildProcess>();
const exitHooks: (() => void)[] = [];

export function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Runs `hook` (synchronously) when the benchmark exits, however it exits. */
export function onExit(hook: () => void): void {
  exitHooks.push(hook);
}

function killAll(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const hook of exitHooks.splice(0)) {
    try {
      hook();
    } catch {
      // best effort
    }
  }
}

process.on('exit', killAll);
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping every process it started\n`);
    killAll();
    process.exit(code);
  });
}

/** Asks a child to stop (SIGTERM), then kills it if it has not exited within `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

// ---- /proc ------------------------------------------------------------------------------------

const CLOCK_TICKS_PER_S = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU time of a process (all its threads) so far, in microseconds. */
export function cpuTimeUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name: state is field 3, utime 14, stime 15 (proc(5)).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[14 - 3]) + Number(fields[15 - 3]);
  return (ticks * 1e6) / CLOCK_TICKS_PER_S;
}

/**
 * CPU time the whole machine spent busy so far (every state but idle and iowait, all cores), in
 * microseconds. Compared with our own processes' time, it tells how much else ran during a measurement.
 */
export function machineBusyUs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user)
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const busy = ticks.reduce((a, b) => a + b, 0) - ticks[3]! - ticks[4]!;
  return (busy * 1e6) / CLOCK_TICKS_PER_S;
}

/**
 * `pid` and every process descended from it (a server's workers), from the parent ids in /proc, at
 * this moment.
 */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    let list = children.get(parent);
    if (list === undefined) children.set(parent, (list = []));
    list.push(Number(name));
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

/** When a process started (clock ticks since boot), or undefined when it is gone: tells a pid reused from the same pid. */
export function processStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[22 - 3]);
  } catch {
    return undefined;
  }
}

/** CPU time of this process (the orchestrator and publisher), in microseconds. */
export function ownCpuTimeUs(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

/** Write system calls (write, writev, sendmsg…) a process has made so far (`syscw` of /proc/<pid>/io). */
export function writeSyscalls(pid: number): number {
  const match = /^syscw:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
  return match === null ? NaN : Number(match[1]);
}

/** Resident set size of a process, in bytes. */
export function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

// ---- servers ----------------------------------------------------------------------------------

export type Target = 'raw' | 'herald';

export interface ServerOptions {
  /** Herald's CLI script (default: bin/herald.js, which runs dist/). */
  heraldEntry?: string;
  /** Extra Herald flags (e.g. --store, --data-dir). */
  args?: string[];
  /**
   * Write V8 CPU profiles of the server into this folder (node --cpu-prof) when it stops: one per
   * thread; the main thread's is the largest (the raw broadcaster also has tsx's loader thread).
   */
  profileDir?: string;
}

export interface MemoryUsage {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** A server under test, as a child process started the way a user starts it. */
export class ServerProcess {
  readonly child: ChildProcess;
  readonly target: Target;
  host = '';
  port = 0;
  readonly #stderr: string[] = [];
  readonly #memoryWaiters: ((usage: MemoryUsage) => void)[] = [];

  private constructor(target: Target, child: ChildProcess) {
    this.target = target;
    this.child = child;
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(target: Target, options: ServerOptions = {}): Promise<ServerProcess> {
    const preload = pathToFileURL(`${ROOT}bench/server-preload.mjs`).href;
    const nodeFlags = ['--expose-gc', '--import', preload];
    if (options.profileDir !== undefined) nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${options.profileDir}`);
    const entry =
      target === 'raw'
        ? ['--import', 'tsx', 'bench/raw-broadcaster.ts', '--port', '0']
        : [options.heraldEntry ?? 'bin/herald.js', '--port', '0', ...(options.args ?? [])];
    const child = track(spawn(process.execPath, [...nodeFlags, ...entry], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
    const server = new ServerProcess(target, child);
    child.stderr!.setEncoding('utf8');
    let partial = '';
    child.stderr!.on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop()!;
      for (const line of lines) server.#onStderrLine(line);
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${target} did not start: ${server.#stderr.join('\n')}`)), 20_000);
      let out = '';
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (text: string) => {
        out += text;
        const match = /listening on http:\/\/([^\s:]+):(\d+)/.exec(out);
        if (match === null) return;
        server.host = match[1]!;
        server.port = Number(match[2]);
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${target} exited (${code ?? signal}) before listening: ${server.#stderr.join('\n')}`));
      });
    });
    return server;
  }

  #onStderrLine(line: string): void {
    const prefix = '[bench-memory] ';
    if (line.startsWith(prefix)) {
      const usage = JSON.parse(line.slice(prefix.length)) as MemoryUsage;
      for (const resolve of this.#memoryWaiters.splice(0)) resolve(usage);
      return;
    }
    this.#stderr.push(line);
    if (this.#stderr.length > 50) this.#stderr.shift();
  }

  get isRunning(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get recentStderr(): string {
    return this.#stderr.join('\n');
  }

  /** Collects garbage in the server (see server-preload.mjs), then reads its memory. */
  async settledMemory(): Promise<{ rssBytes: number; usage: MemoryUsage }> {
    const usage = new Promise<MemoryUsage>((resolve, reject) => {
      this.#memoryWaiters.push(resolve);
      setTimeout(() => reject(new Error(`${this.target}: no memory report`)), 10_000).unref();
    });
    this.child.kill('SIGUSR2');
    const reported = await usage;
    return { rssBytes: rssBytes(this.pid), usage: reported };
  }

  async stop(): Promise<void> {
    await stopChild(this.child);
  }
}
