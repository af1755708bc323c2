import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

  it('reads the token options', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n';
    const dir = mkdtempSync(join(tmpdir(), 'herald-args-'));
    try {
      const file = join(dir, 'key.pem');
      writeFileSync(file, pem);
      const config = configFromArgs(
        ['--token-public-key', file, '--token-audience', 'herald', '--token-issuer', 'https://app.example', '--token-grace', '10s',
          '--anonymous-channels', 'news,prices:*', '--anonymous-channels', 'chat/*', '--client-publish-rate', '5'],
        { HERALD_TOKEN_SECRET: 'x'.repeat(32) },
      );
      assert.deepEqual(config, {
        tokenSecret: 'x'.repeat(32),
        tokenPublicKey: pem,
        tokenAudience: 'herald',
        tokenIssuer: 'https://app.example',
        tokenGraceMs: 10_000,
        anonymousChannels: ['news', 'prices:*', 'chat/*'],
        clientPublishRate: 5,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(configFromArgs([`--token-public-key=${pem}`], {}), { tokenPublicKey: pem });
    assert.deepEqual(configFromArgs([], { HERALD_TOKEN_PUBLIC_KEY: pem }), { tokenPublicKey: pem });
    assert.deepEqual(configFromArgs([], { HERALD_ANONYMOUS_CHANNELS: '' }), { anonymousChannels: [] });
    assert.deepEqual(configFromArgs(['--token-jwks', 'https://id.example/jwks.json'], {}), { tokenJwksUrl: 'https://id.example/jwks.json' });
  });

  it('fails on bad token options at startup', () => {
    assert.throws(() => configFromArgs(['--token-secret', 'short'], {}), /32 bytes/);
    assert.throws(() => configFromArgs(['--token-public-key', '/no/such/key.pem'], {}), /cannot read/);
    assert.throws(() => configFromArgs(['--token-jwks', 'file:///etc/passwd'], {}), /http/);
    assert.throws(() => configFromArgs(['--anonymous-channels', 'a*b'], {}), /pattern/);
    assert.throws(() => configFromArgs(['--client-publish-rate', '0'], {}), /client-publish-rate/);
  });

  it('reads --demo and --no-demo, else HERALD_DEMO, else leaves it to the token options', () => {
    assert.deepEqual(configFromArgs([], {}), {});
    assert.deepEqual(configFromArgs(['--demo'], {}), { demo: true });
    assert.deepEqual(configFromArgs(['--no-demo'], { HERALD_DEMO: 'true' }), { demo: false });
    assert.deepEqual(configFromArgs([], { HERALD_DEMO: '0' }), { demo: false });
    assert.deepEqual(configFromArgs([], { HERALD_DEMO: 'TRUE' }), { demo: true });
    assert.throws(() => configFromArgs(['--demo', '--no-demo'], {}), /not both/);
    assert.throws(() => configFromArgs([], { HERALD_DEMO: 'maybe' }), /HERALD_DEMO/);
  });

  it('reads --session-idle, else HERALD_SESSION_IDLE', () => {
    assert.deepEqual(configFromArgs(['--session-idle', '300ms'], {}), { sessionIdleMs: 300 });
    assert.deepEqual(configFromArgs([], { HERALD_SESSION_IDLE: '2m' }), { sessionIdleMs: 120_000 });
    assert.throws(() => configFromArgs(['--session-idle', 'later'], {}), /duration/);
    assert.throws(() => configFromArgs(['--session-idle', '0'], {}), /session-idle/);
  });

  it('asks for help', () => {
    assert.equal(configFromArgs(['--help'], {}), 'help');
  });
});
