// A stand-in worker for test/e2e/workers.test.ts: it joins a real --workers primary (started in the test
// process, with cluster.setupPrimary pointing here) and drives its WorkerBus on the test's command,
// reporting every notice it hears. It serves no HTTP.
import { PrimaryLink, WorkerBus } from '../../src/engine/workers/worker-backend.js';

export type BusCommand = { test: 'broadcast'; payload: string } | { test: 'sendTo'; to: string; payload: string };
export type BusReport = { test: 'node'; nodeId: string } | { test: 'heard'; nodeId: string; from: string; payload: string };

const report = (message: BusReport): void => void process.send!(message);

const link = new PrimaryLink();
link.on('hello', ({ nodeId }) => {
  const bus = new WorkerBus(link, nodeId);
  bus.on('test-topic', (payload, from) => report({ test: 'heard', nodeId, from, payload }));
  process.on('message', (message: BusCommand) => {
    if (message.test === 'broadcast') bus.broadcast('test-topic', message.payload);
    else if (message.test === 'sendTo') bus.sendTo(message.to, 'test-topic', message.payload);
  });
  link.on('stop', () => process.exit(0));
  report({ test: 'node', nodeId });
  link.send({ herald: 'ready', url: `bus-worker:${nodeId}` });
});
process.on('disconnect', () => process.exit(0));
link.send({ herald: 'join' });
