// The real-Redis test harness (test/helpers/redis.ts) itself: standalone servers that pause, restart and
// stop cleanly, a 3-master cluster, and nothing left running when a test process ends without stop().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import {
  channelsOnEveryMaster,
  redisCli,
  slotOwnerPort,
  startRedis,
  startRedisCluster,
  waitClusterOk,
} from '../helpers/redis.js';

const HARNESS = new URL('../helpers/redis.ts', import.meta.url).href;

test('a standalone Redis answers redis-cli, hangs while paused and comes back on resume', async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
  assert.equal(await redis.cli('SET', 'greeting', 'hello world'), 'OK');
  assert.equal(await redis.cli('GET', 'greeting'), 'hello world');
  assert.equal(await redis.cli('CONFIG', 'GET', 'save'), 'save');

  redis.pause();
  await assert.rejects(redisCli(['-p', String(redis.port), 'PING'], { timeoutMs: 1000 }), /no answer within 1000 ms/);
  redis.resume();
  assert.equal(await redisCli(['-p', String(redis.port), 'PING'], { timeoutMs: 1000 }), 'PONG');

  await redis.stop();
  assert.equal(existsSync(redis.dir), false);
  await assert.rejects(redis.cli('PING'), /exited with 1/);
  await redis.stop(); // twice is fine
});

test('an appendonly Redis keeps its keys over restart() and kill() + restart(), on the same port', async (t) => {
  const redis = await startRedis({ appendOnly: true });
  t.after(() => redis.stop());
  assert.equal(await redis.cli('CONFIG', 'GET', 'appendfsync'), 'appendfsync\nalways');
  await redis.cli('SET', 'kept', 'across restarts');
  await redis.restart();
  assert.equal(await redis.cli('GET', 'kept'), 'across restarts');

  await redis.cli('SET', 'crash', 'survivor');
  await redis.kill();
  await assert.rejects(redis.cli('PING'));
  await redis.restart();
  assert.equal(await redis.cli('GET', 'crash'), 'survivor');
  assert.equal(await redis.cli('GET', 'kept'), 'across restarts');

  redis.pause();
  await redis.stop(); // resumes (or at least kills) a paused server
});

test('a cluster has 3 masters covering all 16384 slots, and channels can be spread over all of them', async (t) => {
  const cluster = await startRedisCluster();
  t.after(() => cluster.stop());
  assert.equal(cluster.ports.length, 3);
  assert.equal(new Set(cluster.ports).size, 3);
  assert.equal(cluster.url, `redis-cluster://${cluster.ports.map((port) => `127.0.0.1:${port}`).join(',')}`);

  const masters = (await cluster.cli('CLUSTER', 'NODES')).split('\n').filter((line) => / (myself,)?master /.test(line));
  assert.equal(masters.length, 3);
  const info = await cluster.cli('CLUSTER', 'INFO');
  assert.match(info, /cluster_state:ok/);
  assert.match(info, /cluster_slots_assigned:16384/);
  assert.match(info, /cluster_size:3/);
  for (const node of cluster.nodes) assert.match(await node.cli('CLUSTER', 'INFO'), /cluster_state:ok/);

  const channels = await channelsOnEveryMaster(cluster, 'harness-', 2);
  const owners = await Promise.all(channels.map((channel) => slotOwnerPort(cluster, `{${channel}}:log`)));
  assert.deepEqual(new Set(owners), new Set(cluster.ports));
  for (const port of cluster.ports) assert.ok(owners.filter((owner) => owner === port).length >= 2);
  assert.deepEqual(channels, channels.map((_, i) => `harness-${i}`));

  // -c follows the redirections: a key on each master can be written through the first node.
  for (const channel of channels) assert.equal(await cluster.cli('SET', `{${channel}}:seq`, '1'), 'OK');
  const owner = await slotOwnerPort(cluster, `{${channels[0]}}:seq`);
  const node = cluster.nodes.find((n) => n.port === owner)!;
  assert.equal(await node.cli('GET', `{${channels[0]}}:seq`), '1');

  // A restarted master keeps its slots (nodes.conf in its dir) and serves them again.
  await node.restart();
  await waitClusterOk(cluster.nodes);
  assert.equal(await slotOwnerPort(cluster, `{${channels[0]}}:seq`), owner);
  assert.equal(await cluster.cli('SET', `{${channels[0]}}:seq`, '2'), 'OK');
});

test('servers a test process did not stop die with it, whether it ends by itself or by SIGTERM', async () => {
  const script = (ending: string) => `
    import { startRedis } from ${JSON.stringify(HARNESS)};
    const redis = await startRedis();
    redis.pause();
    console.log(JSON.stringify({ port: redis.port, dir: redis.dir }));
    ${ending}`;
  const run = async (ending: string, signal?: NodeJS.Signals) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(ending)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      if (signal && output.includes('\n')) child.kill(signal);
    });
    await once(child, 'exit');
    return JSON.parse(output) as { port: number; dir: string };
  };
  const [natural, killed] = await Promise.all([run(''), run('setInterval(() => {}, 1000);', 'SIGTERM')]);
  for (const { port, dir } of [natural, killed]) {
    await assert.rejects(redisCli(['-p', String(port), 'PING'], { timeoutMs: 2000 }), /exited with 1/);
    assert.equal(existsSync(dir), false);
  }
});
