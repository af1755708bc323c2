import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Authenticator } from '../auth/authenticator.js';
import type { ExpirySchedule } from '../auth/expiry.js';
import type { Config } from '../config.js';
import type { PresenceFanOut } from '../presence/fan-out.js';
import type { Presence } from '../presence/presence.js';
import type { Hub } from '../hub/hub.js';
import type { Counters } from '../metrics.js';
import type { SessionRegistry } from './sessions.js';

/** What every transport is given. */
export interface TransportContext {
  hub: Hub;
  config: Config;
  counters: Counters;
  logger: Logger;
  /** Who may do what: the publish key, client tokens, anonymous channels. */
  auth: Authenticator;
  /** Token expiry deadlines, driven by the shared sweep. */
  expiry: ExpirySchedule;
  /** Who is in which channel. */
  presence: Presence;
  /** This node's listeners of join/leave events. */
  presenceFanOut: PresenceFanOut;
  /** Listen sessions (`session=`, POST /v1/session/{id}). */
  sessions: SessionRegistry;
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
  /** Answers or holds the request; throws (or rejects with) a HeraldError, before writing anything, to refuse it. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): void | Promise<void>;
}
