// [spec] docs/protocol.md "Long polling — GET /v1/poll": each answer holds every entry past the cursor
// and a cursor covering every channel of the request; poll again with it.
import { HeraldError } from '../errors.js';
import { httpError, type PollAnswer } from '../http.js';
import type { Link, Transport } from '../transport.js';

export function longPollTransport(link: Link): Transport {
  const { settings } = link;
  let controller: AbortController | undefined;
  let isStopped = false;
  let isFirst = true;

  const poll = async (): Promise<void> => {
    while (!isStopped) {
      const channels = link.channels();
      const current = new AbortController();
      controller = current;
      // The first poll is answered at once, so `connected` means the server answered.
      const timeoutS = isFirst ? 0 : settings.pollTimeoutS;
      let answer: PollAnswer;
      try {
        const response = await settings.fetch!(`${link.url}/v1/poll?${link.query(channels)}&timeout=${timeoutS}`, {
          signal: current.signal,
        });
        if (!response.ok) throw await httpError(response);
        answer = (await response.json()) as PollAnswer;
      } catch (error) {
        if (isStopped) return;
        if (current.signal.aborted) continue; // update(): poll again with the new channels
        const reason = error instanceof HeraldError ? error.message : `poll failed: ${(error as Error).message}`;
        return link.closed(reason, error);
      }
      if (controller !== current) continue;
      isFirst = false;
      // A poll is held up to pollTimeoutS; a longer silence means the answer is never coming.
      link.opened(settings.pollTimeoutS * 1000 + settings.heartbeatMs);
      link.alive();
      for (const entry of answer.messages) link.receive(entry, channels);
      link.cover(answer.cursor, channels);
    }
  };
  void poll();

  return {
    // The held poll is dropped and sent again for the new channels, from the same cursor.
    update: () => controller?.abort(),
    close: () => {
      isStopped = true;
      controller?.abort();
    },
  };
}
