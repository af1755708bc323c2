import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Hub } from '../hub/hub.js';
import type { Counters } from '../metrics.js';

/** What every transport is given. */
export interface TransportContext {
  hub: Hub;
  config: Config;
  counters: Counters;
  logger: Logger;
}

/**
 * One client wire. The server's shared sweep calls `tick` (no timer per connection or per message);
 * `closeAll` ends every connection on shutdown.
 */
export interface Transport {
  tick(nowMs: number): void;
  closeAll(): void;
}

/** A transport served on plain HTTP requests; the HTTP edge routes its path to `handle`. */
export interface HttpTransport extends Transport {
  /** Answers or holds the request; throws a HeraldError, before writing anything, to refuse it. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): void;
}
