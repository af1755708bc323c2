// [spec] docs/protocol.md "Long polling — GET /v1/poll": each answer holds every entry past the cursor
// and a cursor covering every channel of the request; poll again with it. Polls carry `session=`, so a
// subscription change is a `POST /v1/session/{id}` (session.ts) that answers the held poll at once with
// the new channels merged in, instead of dropping it.
import { HeraldError } from '../errors.js';
import { httpError, type PollAnswer } from '../http.js';
import { session } from '../session.js';
import type { Link, Transport } from '../transport.js';

export function longPollTransport(link: Link): Transport {
  const { settings } = link;
  let controller: AbortController | undefined;
  let isStopped = false;
  let isFirst = true;
  // The fallback drops the held poll; the loop sends it again for link.channels(), from the same cursor,
  // answered at once so that the new session is known at once.
  const reopen = (): void => {
    wire.start();
    isFirst = true;
    controller?.abort();
  };
  const wire = session(link, reopen);

  const poll = async (): Promise<void> => {
    wire.start();
    while (!isStopped) {
      // The request's channels. A POST may merge more into the session's answer, and its cursor names
      // them too, but only these are sure to be named: a channel covered by a cursor lacking it would
      // resume at the head on the next reconnect.
      const channels = wire.asked;
      const current = new AbortController();
      controller = current;
      // The first poll is answered at once, so `connected` means the server answered (and the session is known).
      const timeoutS = isFirst ? 0 : settings.pollTimeoutS;
      let answer: PollAnswer;
      try {
        const response = await settings.fetch!(
          `${link.url}/v1/poll?${link.query(channels)}&timeout=${timeoutS}&session=${wire.id ?? 'new'}`,
          { signal: current.signal },
        );
        if (!response.ok) throw await httpError(response);
        answer = (await response.json()) as PollAnswer;
      } catch (error) {
        if (isStopped) return;
        if (current.signal.aborted) continue; // the fallback: poll again with the new channels
        const reason = error instanceof HeraldError ? error.message : `poll failed: ${(error as Error).message}`;
        return link.closed(reason, error);
      }
      if (controller !== current) continue;
      isFirst = false;
      // An unknown or expired session is silently replaced: the answer names the one to use.
      wire.announce(answer.session);
      // A poll is held up to pollTimeoutS; a longer silence means the answer is never coming.
      link.opened(settings.pollTimeoutS * 1000 + settings.heartbeatMs);
      link.alive();
      for (const event of answer.presence ?? []) link.presence(event.presence, event);
      for (const entry of answer.messages) link.receive(entry, channels);
      link.cover(answer.cursor, channels);
      await wire.pending; // a POST under way answered this poll: the next one lists its channels
    }
  };
  void poll();

  return {
    update: wire.update,
    // The next poll carries the new token.
    refresh: reopen,
    close: () => {
      isStopped = true;
      controller?.abort();
    },
  };
}
