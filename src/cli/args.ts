import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG, parseBytes, parseDurationMs, type Config } from '../config.js';

export const HELP = `herald — a real-time push server

Usage: herald [options]

Every option can also be set as an environment variable: --history-size → HERALD_HISTORY_SIZE.

  --host HOST             address to listen on (default ${DEFAULT_CONFIG.host})
  --port PORT             port to listen on; 0 picks a free one (default ${DEFAULT_CONFIG.port})
  --store sqlite|memory   durable embedded store, or volatile memory (default ${DEFAULT_CONFIG.store})
  --data-dir DIR          where the sqlite store keeps its files (default ${DEFAULT_CONFIG.dataDir})
  --publish-key KEY       require "Authorization: Bearer KEY" to publish; without it only loopback may
  --history-size N        messages retained per channel (default ${DEFAULT_CONFIG.historySize})
  --history-ttl DURATION  how long messages are retained, e.g. 90s, 30m, 24h (default 24h)
  --cors-origin ORIGINS   "*" or a comma-separated allow-list of origins (default *)
  --heartbeat DURATION    keepalive and ping period (default 15s)
  --max-body SIZE         largest publish body, e.g. 65536 or 64KiB (default 64KiB)
  --max-buffer SIZE       unsent bytes per connection before it is cut as a slow consumer (default 1MiB)
  --log-level LEVEL       fatal, error, warn, info, debug, trace or silent (default ${DEFAULT_CONFIG.logLevel})
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
  help: { type: 'boolean', short: 'h' },
} as const;

type OptionName = Exclude<keyof typeof OPTIONS, 'help'>;

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
    if (t !== 'sqlite' && t !== 'memory') throw new Error(`--store is sqlite or memory, got ${JSON.stringify(t)}`);
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
  return config;
}
