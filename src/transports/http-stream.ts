import { NDJSON_HEARTBEAT, NDJSON_MESSAGE, ndjsonPresence, ndjsonReset, ndjsonSession, ndjsonSessionChange, ndjsonTokenExpired } from '../frames/ndjson.js';
import { StreamingTransport, type StreamWire } from './streaming.js';

const WIRE: StreamWire = {
  contentType: 'application/x-ndjson; charset=utf-8',
  opening: Buffer.alloc(0),
  format: NDJSON_MESSAGE,
  resetFrame: ndjsonReset,
  tokenExpiredFrame: ndjsonTokenExpired,
  presenceFrame: (event) => event.frame('ndjson', ndjsonPresence),
  sessionFrame: ndjsonSession,
  sessionChangeFrame: ndjsonSessionChange,
  heartbeat: NDJSON_HEARTBEAT,
};

/** GET /v1/stream — chunked NDJSON, one envelope per line, for fetch() readers and services. */
export class HttpStreamTransport extends StreamingTransport {
  protected readonly name = 'stream' as const;

  protected wire(): StreamWire {
    return WIRE;
  }
}
