import { isRedisStore, parseRedisUrl } from '../engine/redis/url.js';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { isValidPattern, parsePatternList } from '../auth/policy.js';
import { DEFAULT_CONFIG, parseBytes, parseDurationMs, type Config } from '../config.js';

/** Most worker processes `--workers` takes (every accepted batch is sent to each one). */
export const MAX_WORKERS = 64;

export const HELP = `herald — a real-time push server

Usage: herald [options]

Every option can also be set as an environment variable: --history-size → HERALD_HISTORY_SIZE.

  --host HOST             address to listen on (default ${DEFAULT_CONFIG.host})
  --port PORT             port to listen on; 0 picks a free one (default ${DEFAULT_CONFIG.port})
  --store sqlite|memory|URL  durable embedded store, volatile memory, or a Redis engine shared by
                          many nodes: redis://[USER:PASS@]HOST:PORT[/DB], rediss://… (TLS),
                          redis-cluster://HOST:PORT[,HOST:PORT…] (default ${DEFAULT_CONFIG.store})
  --data-dir DIR          where the sqlite store keeps its files (default ${DEFAULT_CONFIG.dataDir})
  --publish-key KEY       require "Authorization: Bearer KEY" to publish; without it only loopback may
  --history-size N        messages retained per channel (default ${DEFAULT_CONFIG.historySize})
  --history-ttl DURATION  how long messages are retained, e.g. 90s, 30m, 24h (default 24h)
  --cors-origin ORIGINS   "*" or a comma-separated allow-list of origins (default *)
  --heartbeat DURATION    keepalive and ping period (default 15s)
  --max-body SIZE         largest publish body, e.g. 65536 or 64KiB (default 64KiB)
  --max-buffer SIZE       unsent bytes per connection before it is cut as a slow consumer (default 1MiB)
  --log-level LEVEL       fatal, error, warn, info, debug, trace or silent (default ${DEFAULT_CONFIG.logLevel})
  --workers N|auto        processes sharing the port, up to ${MAX_WORKERS}; auto: one per core (default 1). With
                          sqlite or memory the primary process owns the store and assigns offsets

Client tokens (JWT; see docs/protocol.md "Auth"):
  --token-secret SECRET   verify HS256 tokens with this secret (at least 32 bytes)
  --token-public-key PEM  verify RS256/ES256 tokens with this public key: a PEM file path, or the PEM
                          itself (--token-public-key="$(cat key.pem)")
  --token-jwks URL        verify RS256/ES256 tokens with the keys of this JWKS (cached; refetched on a new kid)
  --token-audience AUD    require this "aud" claim
  --token-issuer ISS      require this "iss" claim
  --token-grace DURATION  how long a connection whose token expired may send a fresh one (default 30s)
  --anonymous-channels PATTERNS
                          channels anyone may subscribe to without a token, e.g. "news,prices:*"; repeat
                          the flag or separate with commas ("" for none). Default: every channel
                          when no token option is set, none when one is
  --client-publish-rate N client publishes per second per connection (default ${DEFAULT_CONFIG.clientPublishRate})
  --presence-timeout DURATION
                          how long a polling client stays in presence after its last poll (default 30s)
  --session-idle DURATION how long a listen session (POST /v1/session/{id}) lives after its stream
                          closed or its last poll or POST (default 60s)
  --demo, --no-demo       serve the /demo page and its token issuer POST /demo/token (tokens for demo:*
                          only, signed with a key made at startup). Default: on when no token option is
                          set, off when one is
  -h, --help              show this help
`;

const OPTIONS = {
  host: { type: 'string' },
  port: { type: 'string' },
  store: { type: 'string' },
  'data-dir': { type: 'string' },
  'publish-key': { type: 'string' },
  'history-size': { type: 'string' },
  'history-ttl': { type: 'string' },
  'cors-origin': { type: 'string' },
  heartbeat: { type: 'string' },
  'max-body': { type: 'string' },
  'max-buffer': { type: 'string' },
  'log-level': { type: 'string' },
  workers: { type: 'string' },
  'token-secret': { type: 'string' },
  'token-public-key': { type: 'string' },
  'token-jwks': { type: 'string' },
  'token-audience': { type: 'string' },
  'token-issuer': { type: 'string' },
  'token-grace': { type: 'string' },
  'anonymous-channels': { type: 'string', multiple: true },
  'client-publish-rate': { type: 'string' },
  'presence-timeout': { type: 'string' },
  'session-idle': { type: 'string' },
  demo: { type: 'boolean' },
  'no-demo': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type OptionName = Exclude<keyof typeof OPTIONS, 'help' | 'anonymous-channels' | 'demo' | 'no-demo'>;

function positiveInteger(text: string, name: string, allowZero = false): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new Error(`--${name} must be a${allowZero ? 'n' : ' positive'} integer, got ${JSON.stringify(text)}`);
  return n;
}

/** Flags win over HERALD_* environment variables, which win over defaults. Bad values fail at startup. */
export function configFromArgs(argv: string[], env: NodeJS.ProcessEnv): Partial<Config> | 'help' {
  const { values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  if (values.help) return 'help';
  const get = (name: OptionName): string | undefined =>
    values[name] ?? env[`HERALD_${name.toUpperCase().replace(/-/g, '_')}`];
  const config: Partial<Config> = {};
  const set = <K extends keyof Config>(name: OptionName, key: K, parse: (text: string) => Config[K]): void => {
    const text = get(name);
    if (text !== undefined) config[key] = parse(text);
  };
  set('host', 'host', (t) => t);
  set('port', 'port', (t) => {
    const port = positiveInteger(t, 'port', true);
    if (port > 65535) throw new Error('--port must be at most 65535');
    return port;
  });
  set('store', 'store', (t) => {
    if (isRedisStore(t)) {
      parseRedisUrl(t); // refuses a malformed URL here, at startup
      return t;
    }
    if (t !== 'sqlite' && t !== 'memory') throw new Error(`--store is sqlite, memory or a Redis URL (redis://HOST:PORT, redis-cluster://HOST:PORT,…), got ${JSON.stringify(t)}`);
    return t;
  });
  set('data-dir', 'dataDir', (t) => t);
  set('publish-key', 'publishKey', (t) => {
    if (t.length < 8) throw new Error('--publish-key must be at least 8 characters');
    return t;
  });
  set('history-size', 'historySize', (t) => positiveInteger(t, 'history-size'));
  set('history-ttl', 'historyTtlMs', parseDurationMs);
  set('cors-origin', 'corsOrigins', (t) => (t.trim() === '*' ? '*' : t.split(',').map((o) => o.trim()).filter(Boolean)));
  set('heartbeat', 'heartbeatMs', (t) => {
    const ms = parseDurationMs(t);
    if (ms < 1000) throw new Error('--heartbeat must be at least 1s');
    return ms;
  });
  set('max-body', 'maxBodyBytes', parseBytes);
  set('max-buffer', 'maxBufferedBytes', parseBytes);
  set('log-level', 'logLevel', (t) => t);
  set('workers', 'workers', (t) => {
    if (t.trim() === 'auto') return Math.min(availableParallelism(), MAX_WORKERS);
    const workers = /^\d+$/.test(t.trim()) ? Number(t) : NaN;
    if (!(workers >= 1 && workers <= MAX_WORKERS)) throw new Error(`--workers is a number of processes from 1 to ${MAX_WORKERS}, or auto; got ${JSON.stringify(t)}`);
    return workers;
  });
  set('token-secret', 'tokenSecret', (t) => {
    if (Buffer.byteLength(t) < 32) throw new Error('--token-secret must be at least 32 bytes (RFC 7518 §3.2)');
    return t;
  });
  set('token-public-key', 'tokenPublicKey', readPem);
  set('token-jwks', 'tokenJwksUrl', (t) => {
    if (!/^https?:\/\/./.test(t)) throw new Error(`--token-jwks must be an http(s) URL, got ${JSON.stringify(t)}`);
    return t;
  });
  set('token-audience', 'tokenAudience', (t) => t);
  set('token-issuer', 'tokenIssuer', (t) => t);
  set('token-grace', 'tokenGraceMs', parseDurationMs);
  set('client-publish-rate', 'clientPublishRate', (t) => {
    const rate = Number(t);
    if (!Number.isFinite(rate) || rate <= 0) throw new Error(`--client-publish-rate must be a positive number, got ${JSON.stringify(t)}`);
    return rate;
  });
  set('presence-timeout', 'presenceTimeoutMs', (t) => {
    const ms = parseDurationMs(t);
    if (ms < 1000) throw new Error('--presence-timeout must be at least 1s');
    return ms;
  });
  set('session-idle', 'sessionIdleMs', (t) => {
    const ms = parseDurationMs(t);
    if (ms < 1) throw new Error('--session-idle must be at least 1ms');
    return ms;
  });
  const anonymous = values['anonymous-channels'] ?? (env.HERALD_ANONYMOUS_CHANNELS === undefined ? undefined : [env.HERALD_ANONYMOUS_CHANNELS]);
  if (anonymous !== undefined) {
    const patterns = anonymous.flatMap(parsePatternList);
    const bad = patterns.find((p) => !isValidPattern(p));
    if (bad !== undefined) throw new Error(`--anonymous-channels: ${JSON.stringify(bad)} is not a channel pattern (a channel name, optionally ending in *)`);
    config.anonymousChannels = patterns;
  }
  if (config.tokenPublicKey !== undefined && config.tokenJwksUrl !== undefined) {
    throw new Error('--token-public-key and --token-jwks cannot both be set');
  }
  const demo = readDemo(values.demo, values['no-demo'], env.HERALD_DEMO);
  if (demo !== undefined) config.demo = demo;
  return config;
}

/** --demo / --no-demo, else HERALD_DEMO (true/false/1/0); undefined leaves it to the token options. */
function readDemo(on: boolean | undefined, off: boolean | undefined, env: string | undefined): boolean | undefined {
  if (on && off) throw new Error('give --demo or --no-demo, not both');
  if (on || off) return on === true;
  if (env === undefined) return undefined;
  if (/^(1|true)$/i.test(env)) return true;
  if (/^(0|false)$/i.test(env)) return false;
  throw new Error(`HERALD_DEMO is true or false, got ${JSON.stringify(env)}`);
}

/** A PEM given inline, or the path of a file holding one. */
function readPem(text: string): string {
  if (text.includes('-----BEGIN')) return text;
  try {
    return readFileSync(text, 'utf8');
  } catch (err) {
    throw new Error(`--token-public-key: cannot read ${JSON.stringify(text)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}
