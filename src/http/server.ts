import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Authenticator } from '../auth/authenticator.js';
import type { RateLimiter } from '../auth/rate-limit.js';
import type { Config } from '../config.js';
import type { Presence } from '../presence/presence.js';
import type { Hub } from '../hub/hub.js';
import { nodeStats, type Counters, type ServerTotals } from '../metrics.js';
import type { SessionRegistry } from '../transports/sessions.js';
import type { HttpTransport } from '../transports/transport.js';
import type { WebSocketTransport } from '../transports/websocket.js';
import { authorizeBackend } from './auth.js';
import { applyRequestCors, corsHeaders, isOriginAllowed, type HeaderFields } from '../cors.js';
import { ERRORS, HeraldError } from '../errors.js';
import { DEMO_TOKEN_PATH, DemoTokenEndpoint, isDemoPath, serveDemo } from './demo.js';
import { handleHistory } from './history.js';
import { handlePresence } from './presence.js';
import { handlePublish } from './publish.js';
import { SESSION_PATH_PREFIX, handleSessionChange } from './session.js';
import { sendError, sendJson } from './respond.js';
import { isClientAsset, serveClientAsset } from './static-client.js';

export interface EdgeDeps {
  config: Config;
  hub: Hub;
  counters: Counters;
  registry: Registry;
  logger: Logger;
  httpTransports: Record<string, HttpTransport>;
  websocket: WebSocketTransport;
  auth: Authenticator;
  /** Rate limits of client publishes over HTTP, by user. */
  clientLimiter: RateLimiter;
  presence: Presence;
  /** Listen sessions, changed by POST /v1/session/{id}. */
  sessions: SessionRegistry;
  /** Where /metrics and /v1/stats come from when this process is one worker of several. */
  totals?: ServerTotals | undefined;
}

const PREFLIGHT_HEADERS = {
  'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type, Last-Event-ID, Cache-Control, X-Requested-With',
  'Access-Control-Max-Age': '600',
};

/** The HTTP edge: routing, CORS, and turning errors into responses. No message logic lives here. */
export function createEdge(deps: EdgeDeps): Server {
  const { logger } = deps;
  const cors = corsHeaders(deps.config);
  const preflightHeaders = { ...PREFLIGHT_HEADERS, ...cors };
  const demoTokens = deps.auth.demo === undefined ? undefined : new DemoTokenEndpoint(deps.auth.demo, cors);
  const server = createServer((req, res) => {
    route(deps, req, res, { cors, preflightHeaders, demoTokens }).catch((err: unknown) => fail(res, err, logger, cors));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrade(deps, req, socket, head).catch((err: unknown) => refuseUpgrade(socket, err, logger));
  });
  return server;
}

/** The request target as a URL; a target no URL parser takes (`//[`, `http://[::1/`) is a 400. */
function requestUrl(req: IncomingMessage): URL {
  const target = req.url ?? '/';
  try {
    // Origin-form ("/path?query", "//x" is not one) or absolute-form ("http://host/path", as proxies send).
    if (target.startsWith('/') && !target.startsWith('//')) return new URL(target, 'http://herald');
    if (/^https?:\/\//i.test(target)) return new URL(target);
    if (target === '*' && req.method === 'OPTIONS') return new URL('http://herald/*');
    throw new TypeError('not a path');
  } catch {
    throw new HeraldError('target_invalid');
  }
}

async function upgrade(deps: EdgeDeps, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const url = requestUrl(req);
  if (url.pathname !== '/v1/ws') throw new HeraldError('not_found');
  if (!isOriginAllowed(deps.config, req.headers.origin, true)) throw new HeraldError('origin_forbidden');
  await deps.websocket.upgrade(req, socket, head, url);
}

function refuseUpgrade(socket: Duplex, err: unknown, logger: Logger): void {
  const error = err instanceof HeraldError ? err : new HeraldError('internal');
  if (error.code === 'internal') logger.error({ err }, 'websocket upgrade failed');
  if (socket.destroyed) return;
  const body = JSON.stringify(error.toJSON());
  socket.end(
    `HTTP/1.1 ${error.status} ${error.code}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** What the edge builds once for every request. */
interface EdgeConstants {
  /** The CORS fields of every answer (see ./cors.ts), for each writer's writeHead. */
  cors: HeaderFields;
  preflightHeaders: HeaderFields;
  /** Undefined when the demo is off, and then /demo and /demo/token are 404. */
  demoTokens: DemoTokenEndpoint | undefined;
}

async function route(deps: EdgeDeps, req: IncomingMessage, res: ServerResponse, { cors, preflightHeaders, demoTokens }: EdgeConstants): Promise<void> {
  const { config, hub } = deps;
  const url = requestUrl(req);
  applyRequestCors(config, req, res);
  if (req.method === 'OPTIONS') {
    res.writeHead(204, preflightHeaders).end();
    return;
  }
  const path = url.pathname;
  if (path === '/v1/publish') {
    requireMethod(req, 'POST');
    return handlePublish(req, res, { hub, auth: deps.auth, publishKey: config.publishKey, maxBodyBytes: config.maxBodyBytes, clientLimiter: deps.clientLimiter, cors });
  }
  if (path === DEMO_TOKEN_PATH) {
    if (demoTokens === undefined) throw new HeraldError('not_found');
    requireMethod(req, 'POST');
    return demoTokens.handle(req, res);
  }
  if (path.startsWith(SESSION_PATH_PREFIX)) {
    requireMethod(req, 'POST');
    return handleSessionChange(req, res, url, { hub, auth: deps.auth, sessions: deps.sessions, maxBodyBytes: config.maxBodyBytes, cors });
  }
  requireMethod(req, 'GET', 'HEAD');
  const transport = deps.httpTransports[path];
  if (transport !== undefined) return transport.handle(req, res, url);
  if (isClientAsset(path)) return serveClientAsset(req, res, path, cors);
  if (isDemoPath(path) && demoTokens !== undefined) return serveDemo(req, res, cors);
  switch (path) {
    case '/healthz': {
      const health = hub.engine.health();
      return sendJson(res, health.status === 'ok' ? 200 : 503, { ...health, engine: hub.engine.kind }, cors);
    }
    case '/metrics': {
      const text = await (deps.totals ?? deps.registry).metrics();
      res.writeHead(200, { 'Content-Type': deps.registry.contentType, 'Cache-Control': 'no-store', ...cors }).end(text);
      return;
    }
    case '/v1/history':
      return handleHistory(req, res, url, hub, deps.auth, cors);
    case '/v1/presence':
    case '/v1/presence/count':
      return handlePresence(req, res, url, deps.presence, deps.auth, cors);
    case '/v1/stats':
      authorizeBackend(req, config.publishKey);
      return sendJson(res, 200, deps.totals === undefined ? nodeStats(hub, deps.counters) : await deps.totals.stats(), cors);
    default:
      throw new HeraldError('not_found');
  }
}

function requireMethod(req: IncomingMessage, ...methods: string[]): void {
  if (!methods.includes(req.method ?? '')) throw new HeraldError('method_not_allowed');
}

function fail(res: ServerResponse, err: unknown, logger: Logger, cors: HeaderFields): void {
  if (err instanceof HeraldError) return sendError(res, err, cors);
  logger.error({ err }, 'request failed');
  sendError(res, new HeraldError('internal', ERRORS.internal.message), cors);
}
