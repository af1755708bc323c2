// `--workers N`: one box, every core, one port. The primary owns the embedded store (the only process
// that assigns offsets) or, with Redis, only forks; workers serve. Which worker serves a connection is
// read off the kernel (each worker pid's TCP sockets on the port), not asked of the server.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import cluster, { type Worker } from 'node:cluster';
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { request } from 'node:http';
import { after, describe, it } from 'node:test';
import { configFromArgs } from '../../src/cli/args.js';
import { startPrimary } from '../../src/engine/workers/primary.js';
import type { BusCommand, BusReport } from '../helpers/bus-worker.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { openSession, type Delivery, type Session, type TransportKind } from '../helpers/resume-clients.js';
import { startServerProcess, tempDataDir, type ServerProcess } from '../helpers/server.js';

const TEST_TIMEOUT_MS = 60_000;
const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

interface Result {
  channel: string;
  offset: number;
  epoch: string;
  duplicate?: true;
}

interface Stats {
  connections: Record<string, number>;
  channels: number;
  subscriptions: number;
  subscribers: Record<string, number>;
  published: number;
  delivered: Record<string, number>;
}

/**
 * A connection node:cluster's primary accepted and was handing to a worker at the instant it died is
 * never served (the primary keeps the handle): every request has a deadline, as a real client's would.
 */
const REQUEST_TIMEOUT_MS = 3000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(condition: () => boolean | Promise<boolean>, what: () => string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await sleep(20);
  }
}

/** A request on a connection of its own (`Connection: close`), so that it may land on any worker. */
function freshRequest(url: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      `${url}${path}`,
      {
        method: payload === undefined ? 'GET' : 'POST',
        agent: false,
        headers: { Connection: 'close', ...(payload === undefined ? {} : { 'Content-Type': 'application/json' }) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.end(payload);
  });
}

/** POST /v1/publish on a fresh connection or over fetch's keep-alive pool; rejects on a network error. */
function publishRaw(url: string, body: unknown, isFresh: boolean): Promise<{ status: number; text: string }> {
  if (isFresh) return freshRequest(url, '/v1/publish', body);
  return fetch(`${url}/v1/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  }).then(async (r) => ({ status: r.status, text: await r.text() }));
}

async function publish(url: string, body: unknown, isFresh: boolean): Promise<Result[]> {
  const { status, text } = await publishRaw(url, body, isFresh);
  assert.equal(status, 200, text);
  return (JSON.parse(text) as { results: Result[] }).results;
}

async function stats(url: string): Promise<Stats> {
  const { status, text } = await freshRequest(url, '/v1/stats');
  assert.equal(status, 200, text);
  return JSON.parse(text) as Stats;
}

/** The pids of the primary's node children: its workers (tsx's esbuild service is a child too). */
function workerPids(primary: ServerProcess): number[] {
  try {
    return execFileSync('ps', ['--ppid', String(primary.child.pid), '-o', 'pid=,comm='], { encoding: 'utf8' })
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter(([pid, comm]) => Number(pid) > 0 && comm === 'node')
      .map(([pid]) => Number(pid));
  } catch {
    return []; // ps exits 1 when there are none
  }
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Established TCP connections to `port` held by process `pid` (its fds matched with /proc/net/tcp). */
function connectionsServedBy(pid: number, port: number): number {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return 0;
  }
  for (const fd of fds) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let lines: string[];
    try {
      lines = readFileSync(table, 'utf8').trim().split('\n').slice(1);
    } catch {
      continue;
    }
    for (const line of lines) {
      const fields = line.trim().split(/\s+/);
      const localPort = Number.parseInt(fields[1]!.split(':')[1]!, 16);
      if (localPort === port && fields[3] === '01' && inodes.has(fields[9]!)) count++;
    }
  }
  return count;
}

const portOf = (url: string): number => Number(new URL(url).port);

/** A subscriber that resumes from the cursor of its last delivery whenever its connection ends. */
interface Follower {
  readonly kind: TransportKind;
  readonly deliveries: Delivery[];
  readonly failures: string[];
  reconnects: number;
  /** How each connection that ended did (for the failure messages). */
  readonly ends: string[];
  /** Drops the connection and resumes from the cursor, as a client whose heartbeats stopped would. */
  kick(): void;
  stop(): void;
}

/** Every follower a test started, stopped after the suite whatever happened. */
const everyFollower = new Set<Follower>();

function follow(kind: TransportKind, url: string, channel: string): Follower {
  let cursor: string | undefined;
  let session: Session | undefined;
  let isStopped = false;
  const follower: Follower = {
    kind,
    deliveries: [],
    failures: [],
    reconnects: 0,
    ends: [],
    kick() {
      if (isStopped) return;
      session?.close();
      follower.reconnects++;
      follower.ends.push(`after ${follower.deliveries.length}: kicked`);
      open();
    },
    stop() {
      isStopped = true;
      session?.close();
    },
  };
  const open = (): void => {
    if (isStopped) return;
    const current = openSession(kind, {
      baseUrl: url,
      channels: [channel],
      cursor,
      style: 0,
      onDelivery(delivery) {
        follower.deliveries.push(delivery);
        cursor = delivery.type === 'message' ? delivery.envelope.cursor : delivery.reset.cursor;
      },
    });
    session = current;
    void current.ended.then((end) => {
      if (isStopped || end.kind === 'closed') return;
      if (end.kind === 'protocol') follower.failures.push(end.detail);
      follower.reconnects++;
      follower.ends.push(`after ${follower.deliveries.length}: ${end.kind === 'error' ? String((end.error as Error)?.message ?? end.error) : end.detail}`);
      setTimeout(open, 50);
    });
  };
  open();
  everyFollower.add(follower);
  return follower;
}

const offsetsOf = (follower: Follower): (number | string)[] =>
  follower.deliveries.map((d) => (d.type === 'message' ? d.envelope.offset : `reset ${JSON.stringify(d.reset)}`));
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

describe('--workers', () => {
  const servers: ServerProcess[] = [];
  const pids = new Set<number>();
  const dirs: { remove(): void }[] = [];
  let redis: RedisServer | undefined;
  const start = async (args: string[]): Promise<ServerProcess> => {
    const server = await startServerProcess(args);
    servers.push(server);
    for (const pid of workerPids(server)) pids.add(pid);
    return server;
  };
  const remember = (server: ServerProcess): number[] => {
    const now = workerPids(server);
    for (const pid of now) pids.add(pid);
    return now;
  };
  after(async () => {
    for (const follower of everyFollower) follower.stop();
    for (const server of servers) await server.kill('SIGKILL');
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    for (const dir of dirs) dir.remove();
    await redis?.stop();
  });

  it('--workers takes 1 to 64 or auto, from the flag or HERALD_WORKERS; anything else fails at startup', { timeout: TEST_TIMEOUT_MS }, async () => {
    assert.equal((configFromArgs(['--workers', '3'], {}) as { workers: number }).workers, 3);
    assert.equal((configFromArgs([], { HERALD_WORKERS: '64' }) as { workers: number }).workers, 64);
    const auto = (configFromArgs(['--workers', 'auto'], {}) as { workers: number }).workers;
    assert.ok(auto >= 1 && auto <= 64);
    assert.equal((configFromArgs([], {}) as { workers?: number }).workers, undefined); // the default, 1
    for (const bad of ['0', '65', '-1', '1.5', 'two', '', '2x']) {
      assert.throws(() => configFromArgs(['--workers', bad], {}), /--workers/, bad);
    }
    const cli = spawnSync(process.execPath, ['--import', 'tsx', MAIN, '--workers', 'many'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(cli.status, 2);
    assert.match(cli.stderr, /--workers is a number of processes from 1 to 64, or auto; got "many"/);
  });

  for (const store of ['memory', 'sqlite'] as const) {
    it(`${store}: publishes from any worker get dense offsets; SSE, WebSocket and long-poll subscribers on both workers get every message once, in order`, { timeout: TEST_TIMEOUT_MS }, async () => {
      const args = ['--workers', '2', '--store', store];
      if (store === 'sqlite') {
        const dir = tempDataDir();
        dirs.push(dir);
        args.push('--data-dir', dir.dir);
      }
      const server = await start(args);
      const workers = remember(server);
      assert.equal(workers.length, 2);
      const channel = `dense.${store}`;
      const followers = (['sse', 'websocket', 'longpoll'] as const).flatMap((kind) => range(4).map(() => follow(kind, server.url, channel)));
      // SSE and WebSocket hold their connection: both workers serve some.
      await waitFor(
        async () => (await stats(server.url)).subscriptions >= 8 && workers.every((pid) => connectionsServedBy(pid, portOf(server.url)) >= 2),
        () => `subscribers on both workers: ${workers.map((pid) => connectionsServedBy(pid, portOf(server.url))).join(', ')}`,
      );

      // 120 single messages and 40 two-channel batches, over six keep-alive loops and fresh connections.
      const singles: Result[] = [];
      const batches: Result[][] = [];
      const dataAt = new Map<number, unknown>();
      await Promise.all(
        range(8).map(async (_, loop) => {
          for (let i = 0; i < 20; i++) {
            const n = loop * 20 + i;
            const isFresh = loop >= 6 || i % 2 === 0;
            if (n < 120) {
              const [result] = await publish(server.url, { channel, data: { n } }, isFresh);
              singles.push(result!);
              dataAt.set(result!.offset, { n });
            }
            else batches.push(await publish(server.url, { messages: [{ channel: `${channel}.a`, data: n }, { channel: `${channel}.b`, data: n }] }, isFresh));
          }
        }),
      );
      assert.deepEqual(singles.map((r) => r.offset).sort((a, b) => a - b), range(120));
      assert.equal(new Set(singles.map((r) => r.epoch)).size, 1);
      for (const [i, side] of [`${channel}.a`, `${channel}.b`].entries()) {
        assert.deepEqual(batches.map((b) => b[i]!.channel), batches.map(() => side));
        assert.deepEqual(batches.map((b) => b[i]!.offset).sort((a, b) => a - b), range(40));
      }
      // Both messages of a batch took the same place in their channels' sequences.
      assert.ok(batches.every((b) => b[0]!.offset === b[1]!.offset));


      await waitFor(
        () => followers.every((f) => f.deliveries.length >= 120),
        () => `every subscriber at 120: ${followers.map((f) => `${f.kind} ${f.deliveries.length}`).join(', ')}`,
      );
      await sleep(100); // nothing more may come
      for (const f of followers) {
        assert.deepEqual(f.failures, [], f.kind);
        assert.deepEqual(offsetsOf(f), range(120), `${f.kind}, connections ended: ${f.ends.join('; ')}`);
        for (const d of f.deliveries) if (d.type === 'message') assert.deepEqual(d.envelope.data, dataAt.get(d.envelope.offset));
        assert.equal(new Set(f.deliveries.map((d) => (d.type === 'message' ? d.envelope.epoch : ''))).size, 1);
        f.stop();
      }
      // Every publish counted once, whichever worker took it.
      const total = await stats(server.url);
      assert.equal(total.published, 200);
      await server.kill('SIGTERM');
    });
  }

  it('/v1/stats and /metrics count every worker: 20 SSE connections', { timeout: TEST_TIMEOUT_MS }, async () => {
    const server = await start(['--workers', '2', '--store', 'memory']);
    const workers = remember(server);
    const followers = range(20).map(() => follow('sse', server.url, 'stats.sse'));
    const port = portOf(server.url);
    await waitFor(
      async () => (await stats(server.url)).connections.sse === 20,
      () => 'stats at 20 SSE connections',
    );
    const spread = workers.map((pid) => connectionsServedBy(pid, port));
    assert.ok(spread.every((n) => n >= 1), `both workers serve some: ${spread.join(', ')}`);
    assert.ok(spread.reduce((a, b) => a + b) >= 20, `${spread.join(', ')}`);
    // Asked on fresh connections (both workers answer), every answer is the whole server's.
    for (let i = 0; i < 6; i++) {
      const s = await stats(server.url);
      assert.equal(s.connections.sse, 20);
      assert.equal(s.subscriptions, 20);
      assert.equal(s.subscribers['stats.sse'], 20);
      assert.equal(s.channels, 1);
      const { status, text } = await freshRequest(server.url, '/metrics');
      assert.equal(status, 200);
      assert.match(text, /^herald_connections\{transport="sse"\} 20$/m);
      assert.match(text, /^herald_subscriptions 20$/m);
      assert.match(text, /^herald_process_process_resident_memory_bytes \d+/m);
    }
    await publish(server.url, { channel: 'stats.sse', data: 1 }, true);
    await waitFor(() => followers.every((f) => f.deliveries.length === 1), () => 'one delivery each');
    await waitFor(
      async () => (await freshRequest(server.url, '/metrics')).text.includes('herald_messages_delivered_total{transport="sse"} 20'),
      () => '20 SSE deliveries in /metrics',
    );
    for (const f of followers) f.stop();
    await waitFor(async () => (await stats(server.url)).connections.sse === 0, () => 'stats back at 0 SSE connections');
    await server.kill('SIGTERM');
  });

  it('demo tokens: one key for every worker (a token one signs, the others accept; a seed is one user everywhere)', { timeout: TEST_TIMEOUT_MS }, async () => {
    const server = await start(['--workers', '2', '--store', 'memory']);
    const issued = await Promise.all(
      range(6).map(async () => {
        const { status, text } = await freshRequest(server.url, '/demo/token', { name: 'Ada', seed: 'a-seed-of-sixteen-chars' });
        assert.equal(status, 200, text);
        return JSON.parse(text) as { token: string; user: string };
      }),
    );
    assert.equal(new Set(issued.map((t) => t.user)).size, 1);
    for (const { token } of issued) {
      for (let i = 0; i < 4; i++) {
        const { status, text } = await freshRequest(server.url, `/v1/poll?channel=demo:chat&timeout=0&token=${encodeURIComponent(token)}`);
        assert.equal(status, 200, text);
      }
    }
    const { status } = await freshRequest(server.url, `/v1/poll?channel=demo:chat&timeout=0&token=${encodeURIComponent(`${issued[0]!.token}x`)}`);
    assert.equal(status, 401);
    await server.kill('SIGTERM');
  });

  it('a SIGKILLed worker is replaced; its clients resume from their cursors with every acknowledged message once, in order', { timeout: TEST_TIMEOUT_MS }, async () => {
    const server = await start(['--workers', '2', '--store', 'memory']);
    const workers = remember(server);
    const port = portOf(server.url);
    const channel = 'kill.stream';
    const followers = (['sse', 'websocket', 'longpoll'] as const).flatMap((kind) => range(3).map(() => follow(kind, server.url, channel)));
    await waitFor(
      () => workers.every((pid) => connectionsServedBy(pid, port) >= 2),
      () => `subscribers on both workers: ${workers.map((pid) => connectionsServedBy(pid, port)).join(', ')}`,
    );

    // Sequential publishes with idempotency keys, each retried until acknowledged: message n is offset n.
    const total = 150;
    const publishUntilAcknowledged = async (n: number): Promise<void> => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        // A publish on the killed worker's connection fails; it may or may not have been stored.
        const answer = await publishRaw(server.url, { channel, data: { n }, idempotencyKey: `k${n}` }, n % 3 !== 0).catch((err: Error) => err);
        if (!(answer instanceof Error) && answer.status < 500) {
          assert.equal(answer.status, 200, answer.text);
          assert.equal((JSON.parse(answer.text) as { results: Result[] }).results[0]!.offset, n);
          return;
        }
        if (Date.now() > deadline) throw answer instanceof Error ? answer : new Error(answer.text);
        await sleep(50);
      }
    };
    let victim: number | undefined;
    for (let n = 1; n <= total; n++) {
      await publishUntilAcknowledged(n);
      if (n === 50) {
        // Mid-stream: the worker serving the most subscribers dies.
        victim = [...workers].sort((a, b) => connectionsServedBy(b, port) - connectionsServedBy(a, port))[0]!;
        process.kill(victim, 'SIGKILL');
      }
      if (n % 10 === 0) await sleep(10);
    }
    await waitFor(
      () => {
        const now = remember(server);
        return now.length === 2 && !now.includes(victim!) && now.some((pid) => !workers.includes(pid));
      },
      () => `a replacement worker: ${workerPids(server).join(', ')}`,
    );
    // A follower stuck on a connection that was in the dead worker's hands resumes elsewhere.
    const progress = new Map(followers.map((f) => [f, { count: f.deliveries.length, atMs: Date.now() }]));
    await waitFor(
      () => {
        for (const f of followers) {
          const seen = progress.get(f)!;
          if (f.deliveries.length !== seen.count) progress.set(f, { count: f.deliveries.length, atMs: Date.now() });
          else if (f.deliveries.length < total && Date.now() - seen.atMs > REQUEST_TIMEOUT_MS) {
            f.kick();
            progress.set(f, { count: f.deliveries.length, atMs: Date.now() });
          }
        }
        return followers.every((f) => f.deliveries.length >= total);
      },
      () => `every subscriber at ${total}: ${followers.map((f) => `${f.kind} ${f.deliveries.length}`).join(', ')}`,
    );
    await sleep(100);
    for (const f of followers) {
      assert.deepEqual(f.failures, [], f.kind);
      assert.deepEqual(offsetsOf(f), range(total), `${f.kind}, connections ended: ${f.ends.join('; ')}`);
      for (const d of f.deliveries) if (d.type === 'message') assert.deepEqual(d.envelope.data, { n: d.envelope.offset });
      f.stop();
    }
    assert.ok(followers.some((f) => f.reconnects > 0), 'some subscribers were on the killed worker');
    // The replacement serves too (once it listens): fresh connections reach it, and it replays history.
    const replacement = workerPids(server).find((pid) => !workers.includes(pid))!;
    const held: Follower[] = [];
    await waitFor(
      () => {
        if (connectionsServedBy(replacement, port) > 0) return true;
        if (held.length < 100) held.push(follow('sse', server.url, channel));
        return false;
      },
      () => `a connection on the replacement worker (${held.length} opened)`,
    );
    await waitFor(() => held.every((f) => f.deliveries.length === total), () => 'history from the new worker');
    for (const f of held) f.stop();
    await server.kill('SIGTERM');
  });

  it('SIGTERM to the primary stops every worker and exits 0; a primary that dies takes its workers with it', { timeout: TEST_TIMEOUT_MS }, async () => {
    const first = await start(['--workers', '2', '--store', 'memory']);
    const firstWorkers = remember(first);
    assert.equal(firstWorkers.length, 2);
    const sse = follow('sse', first.url, 'term');
    await waitFor(async () => (await stats(first.url)).connections.sse === 1, () => 'the SSE connection');
    first.child.kill('SIGTERM');
    const [code, signal] = (await once(first.child, 'exit')) as [number | null, string | null];
    assert.deepEqual([code, signal], [0, null]);
    assert.deepEqual(firstWorkers.filter(isAlive), []);
    sse.stop();

    const second = await start(['--workers', '2', '--store', 'memory']);
    const secondWorkers = remember(second);
    assert.equal(secondWorkers.length, 2);
    await second.kill('SIGKILL');
    await waitFor(() => secondWorkers.every((pid) => !isAlive(pid)), () => `orphaned workers exit: ${secondWorkers.filter(isAlive).join(', ')}`, 10_000);
  });

  it('redis: every worker is a node of its own; offsets dense, subscribers on both workers served, stats summed', { timeout: TEST_TIMEOUT_MS }, async () => {
    redis = await startRedis();
    const server = await start(['--workers', '2', '--store', redis.url]);
    const workers = remember(server);
    const port = portOf(server.url);
    const followers = (['sse', 'websocket'] as const).flatMap((kind) => range(4).map(() => follow(kind, server.url, 'redis.w')));
    await waitFor(
      async () => (await stats(server.url)).subscriptions === 8 && workers.every((pid) => connectionsServedBy(pid, port) >= 1),
      () => 'subscribers on both workers',
    );
    const results = (await Promise.all(range(60).map((n) => publish(server.url, { channel: 'redis.w', data: n }, n % 2 === 0)))).flat();
    assert.deepEqual(results.map((r) => r.offset).sort((a, b) => a - b), range(60));
    await waitFor(() => followers.every((f) => f.deliveries.length >= 60), () => 'every subscriber at 60');
    await sleep(100);
    for (const f of followers) {
      assert.deepEqual(offsetsOf(f), range(60), f.kind);
      f.stop();
    }
    assert.equal((await stats(server.url)).published, 60);
    await server.kill('SIGTERM');
  });

  it('the control bus goes through the primary: a broadcast reaches every worker, the sender too; sendTo reaches one', { timeout: TEST_TIMEOUT_MS }, async () => {
    cluster.setupPrimary({ exec: new URL('../helpers/bus-worker.ts', import.meta.url).pathname, execArgv: ['--import', 'tsx'], args: [] });
    const heard: Extract<BusReport, { test: 'heard' }>[] = [];
    const nodes = new Map<string, Worker>();
    const onMessage = (worker: Worker, message: BusReport): void => {
      if (message.test === 'node') nodes.set(message.nodeId, worker);
      else if (message.test === 'heard') heard.push(message);
    };
    cluster.on('message', onMessage);
    const primary = await startPrimary({ workers: 3, store: 'memory', port: 0, logLevel: 'silent' });
    try {
      await waitFor(() => nodes.size === 3, () => 'three nodes');
      const [a, b, c] = [...nodes.keys()] as [string, string, string];
      const command = (nodeId: string, message: BusCommand): void => void nodes.get(nodeId)!.send(message);
      command(a, { test: 'broadcast', payload: 'to all' });
      await waitFor(() => heard.length === 3, () => `three hear the broadcast: ${JSON.stringify(heard)}`);
      assert.deepEqual(heard.map((h) => h.nodeId).sort(), [a, b, c].sort());
      assert.ok(heard.every((h) => h.from === a && h.payload === 'to all'));
      heard.length = 0;
      command(b, { test: 'sendTo', to: c, payload: 'to c' });
      command(b, { test: 'sendTo', to: 'w999', payload: 'to nobody' });
      await waitFor(() => heard.length === 1, () => 'c hears');
      await sleep(100);
      assert.deepEqual(heard, [{ test: 'heard', nodeId: c, from: b, payload: 'to c' }]);
    } finally {
      const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
      await primary.close();
      assert.ok(workers.every((w) => w.process.exitCode !== null || w.process.signalCode !== null));
      cluster.off('message', onMessage);
    }
  });
});
