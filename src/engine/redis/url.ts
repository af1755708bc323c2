/** Where the Redis engine connects, from `--store redis://…`, `rediss://…` or `redis-cluster://…`. */
export interface RedisTarget {
  isCluster: boolean;
  nodes: { host: string; port: number }[];
  username: string | undefined;
  password: string | undefined;
  db: number;
  tls: boolean;
}

/** Whether `--store` names a Redis engine (rather than sqlite or memory). */
export function isRedisStore(store: string): boolean {
  return /^(redis|rediss|redis-cluster|rediss-cluster):\/\//.test(store);
}

/**
 * Parses a Redis store URL; throws with a message naming what is wrong. A cluster URL lists one or
 * more seed nodes (`redis-cluster://h1:7000,h2:7001`); the client discovers the rest.
 */
export function parseRedisUrl(text: string): RedisTarget {
  const match = /^(redis|rediss|redis-cluster|rediss-cluster):\/\/(?:([^@/]*)@)?([^/?#]+)(?:\/(\d*))?$/.exec(text);
  if (match === null) {
    throw new Error(`--store ${JSON.stringify(text)} is not a Redis URL (redis://HOST:PORT[/DB], rediss://…, redis-cluster://HOST:PORT[,HOST:PORT…])`);
  }
  const [, scheme, auth, hosts, dbText] = match as unknown as [string, string, string | undefined, string, string | undefined];
  const isCluster = scheme.endsWith('-cluster');
  const nodes = hosts.split(',').map((hostPort) => {
    const m = /^(\[[0-9a-fA-F:]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(hostPort);
    const port = Number(m?.[2] ?? 6379);
    if (m === null || port < 1 || port > 65535) throw new Error(`--store: ${JSON.stringify(hostPort)} is not HOST:PORT`);
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
  });
  if (!isCluster && nodes.length > 1) throw new Error('--store: a redis:// URL names one server; use redis-cluster:// for several');
  const db = dbText === undefined || dbText === '' ? 0 : Number(dbText);
  if (isCluster && db !== 0) throw new Error('--store: a Redis Cluster has only database 0');
  let username: string | undefined;
  let password: string | undefined;
  if (auth !== undefined && auth !== '') {
    const colon = auth.indexOf(':');
    username = decodeURIComponent(colon < 0 ? '' : auth.slice(0, colon)) || undefined;
    password = decodeURIComponent(colon < 0 ? auth : auth.slice(colon + 1));
  }
  return { isCluster, nodes, username, password, db, tls: scheme.startsWith('rediss') };
}
