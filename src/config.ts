export interface Config {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** 'sqlite', 'memory', or a Redis URL (redis://, rediss://, redis-cluster://). */
  store: string;
  dataDir: string;
  /** Required as `Authorization: Bearer` on publish and stats; without one, only loopback may publish. */
  publishKey: string | undefined;
  historySize: number;
  historyTtlMs: number;
  /** '*' or an explicit allow-list of origins. */
  corsOrigins: '*' | string[];
  logLevel: string;
  /** SSE/stream keepalive and WebSocket ping period. */
  heartbeatMs: number;
  /** SSE `retry:` hint. */
  retryMs: number;
  maxBodyBytes: number;
  /** Bytes a connection may have queued unsent before it is cut as a slow consumer. */
  maxBufferedBytes: number;
  /** Most messages in one poll answer. */
  pollBatchLimit: number;
  /** HS256 secret for client tokens (at least 32 bytes). */
  tokenSecret: string | undefined;
  /** RS256/ES256 public key for client tokens, as PEM text (the CLI reads a file path into this). */
  tokenPublicKey: string | undefined;
  /** URL of a JWKS for RS256/ES256 client tokens, fetched and cached; refetched on an unknown kid. */
  tokenJwksUrl: string | undefined;
  /** After a JWKS fetch, how long an unknown kid waits before it may trigger another fetch. */
  tokenJwksCooldownMs: number;
  /** Required `aud` of client tokens, when set. */
  tokenAudience: string | undefined;
  /** Required `iss` of client tokens, when set. */
  tokenIssuer: string | undefined;
  /**
   * Channel patterns anyone may subscribe to without a token. Undefined: every channel when no token
   * verification is configured, none when it is.
   */
  anonymousChannels: string[] | undefined;
  /** How long a connection whose token expired may keep going while it sends a fresh one. */
  tokenGraceMs: number;
  /** Client publishes per second per connection (token bucket; bursts up to one second's worth). */
  clientPublishRate: number;
  /** How long a polling client stays present after its last poll (held time excluded). */
  presenceTimeoutMs: number;
  /** How long a listen session lives after its stream closed or its last poll or POST. */
  sessionIdleMs: number;
  /**
   * Serve /demo and its token issuer (POST /demo/token, src/auth/demo-tokens.ts). Undefined: only when
   * no token verification is configured (open mode).
   */
  demo: boolean | undefined;
  /**
   * Processes serving the port (`--workers`, node:cluster): 1 is this process alone. More: a primary
   * forks them and, with the embedded store, owns the store (src/engine/workers/primary.ts).
   */
  workers: number;
  /**
   * The demo token key, shared by every worker of `--workers` so that a token one signs the others
   * accept; undefined (a lone process): made at startup. Set by the primary, never a flag.
   */
  demoSecret: string | undefined;
}

export const DEFAULT_CONFIG: Config = {
  host: '127.0.0.1',
  port: 8080,
  store: 'sqlite',
  dataDir: './herald-data',
  publishKey: undefined,
  historySize: 1000,
  historyTtlMs: 24 * 3600_000,
  corsOrigins: '*',
  logLevel: 'info',
  heartbeatMs: 15_000,
  retryMs: 2_000,
  maxBodyBytes: 64 * 1024,
  maxBufferedBytes: 1024 * 1024,
  pollBatchLimit: 100,
  tokenSecret: undefined,
  tokenPublicKey: undefined,
  tokenJwksUrl: undefined,
  tokenJwksCooldownMs: 30_000,
  tokenAudience: undefined,
  tokenIssuer: undefined,
  anonymousChannels: undefined,
  tokenGraceMs: 30_000,
  clientPublishRate: 20,
  presenceTimeoutMs: 30_000,
  sessionIdleMs: 60_000,
  demo: undefined,
  workers: 1,
  demoSecret: undefined,
};

/** Parses "90", "90s", "15m", "24h", "7d", "500ms" into milliseconds. */
export function parseDurationMs(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (match === null) throw new Error(`not a duration: ${JSON.stringify(text)} (use e.g. 30s, 15m, 24h)`);
  const unitMs = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] ?? 's']!;
  return Math.round(Number(match[1]) * unitMs);
}

/** Parses "65536", "64k", "64KiB", "1m", "1MiB" into bytes. */
export function parseBytes(text: string): number {
  const match = /^(\d+)\s*(k|kb|kib|m|mb|mib)?$/i.exec(text.trim());
  if (match === null) throw new Error(`not a size: ${JSON.stringify(text)} (use e.g. 65536, 64KiB, 1MiB)`);
  const unit = (match[2] ?? '').toLowerCase();
  return Number(match[1]) * (unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 * 1024 : 1);
}
