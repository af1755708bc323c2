// [spec] docs/protocol.md "HTTP streaming — GET /v1/stream": NDJSON read with fetch, one entry per line,
// `{"heartbeat":true}` lines every --heartbeat.
import { LineDecoder } from '../ndjson.js';
import { httpError } from '../http.js';
import type { Link, Transport } from '../transport.js';

export function streamTransport(link: Link): Transport {
  const { settings } = link;
  let controller: AbortController | undefined;

  const open = (): void => {
    const channels = link.channels();
    const current = new AbortController();
    controller = current;
    const read = async (): Promise<void> => {
      const response = await settings.fetch!(`${link.url}/v1/stream?${link.query(channels)}`, {
        signal: current.signal,
        headers: { Accept: 'application/x-ndjson' },
      });
      if (!response.ok || response.body === null) throw await httpError(response);
      link.opened(settings.heartbeatMs * 2 + 1000);
      const reader = response.body.getReader();
      const lines = new LineDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        link.alive();
        for (const line of lines.push(value)) {
          const entry = JSON.parse(line);
          if (entry.presence !== undefined) link.presence(entry.presence, entry);
          else if (entry.notice === 'token_expired') link.expiring();
          else if (entry.heartbeat !== true) link.receive(entry, channels);
        }
      }
    };
    read().then(
      () => controller === current && link.closed('stream ended by the server'),
      (error: unknown) => controller === current && link.closed(`stream failed: ${(error as Error).message}`, error),
    );
  };
  open();

  return {
    // Reopen with the cursor of every channel: nothing is lost on the others.
    update: () => {
      controller?.abort();
      open();
    },
    close: () => {
      const current = controller;
      controller = undefined;
      current?.abort();
    },
  };
}
