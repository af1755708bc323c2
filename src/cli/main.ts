import cluster from 'node:cluster';
import { configFromArgs, HELP } from './args.js';
import type { Config } from '../config.js';
import { startHerald } from '../herald.js';

async function main(): Promise<void> {
  let config: Partial<Config> | 'help';
  try {
    config = configFromArgs(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`herald: ${(err as Error).message}\nRun herald --help for the options.\n`);
    process.exit(2);
  }
  if (config === 'help') {
    process.stdout.write(HELP);
    return;
  }
  if (cluster.isWorker) {
    // One of `--workers`: the primary prints the one listening line and stops this process.
    const { joinPrimary } = await import('../engine/workers/worker.js');
    const worker = await joinPrimary(config);
    worker.serve(await startHerald(worker.config, worker.logger, worker.role));
    return;
  }
  const herald = (config.workers ?? 1) > 1 ? await (await import('../engine/workers/primary.js')).startPrimary(config) : await startHerald(config);
  process.stdout.write(`listening on ${herald.url}\n`);
  const stop = (): void => {
    herald.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`herald: ${(err as Error).message}\n`);
  process.exit(1);
});
