// Several Herald CLI processes for multi-node tests, e.g. sharing one Redis:
//
//   const redis = await startRedis();
//   const nodes = await startNodes(3, ['--store', redis.url]);
//   t.after(() => stopAll(nodes));
//
// Each is a real `src/cli/main.ts` process on its own ephemeral port (startServerProcess), so a node can
// be SIGKILLed or restarted on its own. Nodes this module started and nobody stopped are SIGKILLed when
// the test process exits.
import { once } from 'node:events';
import { startServerProcess, type ServerProcess } from './server.js';

const live = new Set<ServerProcess>();
let safetyNetInstalled = false;

function killEverything(): void {
  for (const node of live) {
    try {
      node.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

function installSafetyNet(): void {
  if (safetyNetInstalled) return;
  safetyNetInstalled = true;
  process.on('exit', killEverything);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killEverything();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

/**
 * Starts `count` Herald processes concurrently, each with `--port 0 --log-level warn` and then `args`
 * (or `args(index)`, for options that differ per node), and resolves once every one of them is
 * listening. If any fails to start, the others are stopped and the first failure is thrown.
 */
export async function startNodes(count: number, args: string[] | ((index: number) => string[])): Promise<ServerProcess[]> {
  installSafetyNet();
  const started = await Promise.allSettled(
    Array.from({ length: count }, async (_, index) => {
      const node = await startServerProcess(typeof args === 'function' ? args(index) : args);
      live.add(node);
      node.child.once('exit', () => live.delete(node));
      return node;
    }),
  );
  const nodes = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) {
    await stopAll(nodes);
    throw failed.reason;
  }
  return nodes;
}

/**
 * Stops the nodes in parallel: SIGTERM (Herald closes its connections and its store), then SIGKILL for
 * any still running after graceMs (a node whose store hangs, say on a paused Redis, may never finish).
 */
export async function stopAll(nodes: ServerProcess[], graceMs = 5000): Promise<void> {
  await Promise.all(
    nodes.map(async ({ child }) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        await exited;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
}
