import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configFromArgs } from '../../src/cli/args.js';

describe('command line', () => {
  it('reads flags, then HERALD_* variables', () => {
    const config = configFromArgs(['--port', '0', '--history-ttl', '90m', '--cors-origin', 'https://a.example, https://b.example'], {
      HERALD_HISTORY_SIZE: '50',
      HERALD_PORT: '9999',
      HERALD_STORE: 'memory',
    });
    assert.deepEqual(config, {
      port: 0,
      store: 'memory',
      historySize: 50,
      historyTtlMs: 90 * 60_000,
      corsOrigins: ['https://a.example', 'https://b.example'],
    });
  });

  it('fails on bad values at startup', () => {
    assert.throws(() => configFromArgs(['--store', 'redis'], {}), /--store/);
    assert.throws(() => configFromArgs(['--history-size', '0'], {}), /history-size/);
    assert.throws(() => configFromArgs(['--history-ttl', 'soon'], {}), /duration/);
    assert.throws(() => configFromArgs(['--port', '70000'], {}), /port/);
    assert.throws(() => configFromArgs(['--bogus'], {}), /bogus/);
    assert.throws(() => configFromArgs([], { HERALD_PUBLISH_KEY: 'short' }), /publish-key/);
  });

  it('asks for help', () => {
    assert.equal(configFromArgs(['--help'], {}), 'help');
  });
});
