// [spec] docs/protocol.md "HTTP streaming — GET /v1/stream": NDJSON read with fetch, one entry per line,
// `{"heartbeat":true}` lines every --heartbeat. Subscription changes go on `POST /v1/session/{id}`
// (session.ts), in place on the open stream.
import { LineDecoder } from '../ndjson.js';
import { httpError } from '../http.js';
import { session } from '../session.js';
import type { Link, Transport } from '../transport.js';

export function streamTransport(link: Link): Transport {
  const { settings } = link;
  let controller: AbortController | undefined;
  const wire = session(link, () => open());

  const open = (): void => {
    controller?.abort();
    const current = new AbortController();
    controller = current;
    const query = link.query(wire.start());
    const read = async (): Promise<void> => {
      const response = await settings.fetch!(`${link.url}/v1/stream?${query}&session=new`, {
        signal: current.signal,
        headers: { Accept: 'application/x-ndjson' },
      });
      if (!response.ok || response.body === null) throw await httpError(response);
      const reader = response.body.getReader();
      const lines = new LineDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done || controller !== current) break;
        // Open once bytes arrive, not at the headers: a proxy that buffers streams passes headers and
        // holds the body. The server's first line, `{"session":…}`, is such bytes.
        link.opened(settings.heartbeatMs * 2 + 1000);
        link.alive();
        for (const line of lines.push(value)) wire.read(JSON.parse(line));
      }
    };
    read().then(
      () => controller === current && link.closed('stream ended by the server'),
      (error: unknown) => controller === current && link.closed(`stream failed: ${(error as Error).message}`, error),
    );
  };
  open();

  return {
    update: wire.update,
    // Only a new request carries a new token (`?token=`); the cursors make it lossless.
    refresh: open,
    close: () => {
      const current = controller;
      controller = undefined;
      current?.abort();
    },
    isStream: true,
  };
}
