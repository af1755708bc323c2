// [spec] docs/protocol.md "Sessions — POST /v1/session/{id}": an HTTP listen request made with
// `session=new` gets an id (a stream's first frame, a poll answer's `session`), and
// `POST /v1/session/{id}` then changes its channels on a short request of its own: control apart from
// data, as in Pushlet's join/subscribe/listen. A subscription change so never reopens the stream nor
// waits behind the held poll. The session is a convenience only: when a POST fails for any reason, the
// transport falls back to a new listen request from every channel's cursor, which loses nothing either.
import { getJson } from './http.js';
import type { Link } from './transport.js';

export interface Session {
  /** The id the server gave the current listen request; undefined until it is announced. */
  id?: string;
  /** The channels asked for: the listen request's, changed by every POST answered 200. Replaced, never mutated. */
  asked: string[];
  /**
   * Streams: the channels every entry's cursor names. They change only at the server's in-band marker:
   * a cursor before it does not name the new channels, and covering a channel with a cursor lacking it
   * would resume that channel at the head on the next reconnect, losing messages.
   */
  wire: string[];
  /**
   * Settles when no POST is under way. A poll waits for it: a POST answers the held poll with its
   * channels merged in, and the next poll must list them, or the server takes them as dropped.
   */
  pending: Promise<void>;
  /** A new listen request is made for link.channels() (returned): its session is not known yet. */
  start(): string[];
  /** The server named the listen request's session: changes wanted meanwhile go now. */
  announce(id: string | undefined): void;
  /** The wanted channels changed: POSTs the difference, once the session is known. */
  update(): void;
  /** One frame of a stream session: an SSE event's data or an NDJSON line, parsed. */
  read(frame: Record<string, any>): void;
}

/** `reopen` is the fallback: a new listen request for link.channels() (which calls `start`). */
export function session(link: Link, reopen: () => void): Session {
  const change = async (): Promise<void> => {
    // A new channel goes once its start is fixed (anchored: the core calls update() then). Sent before,
    // it would start at the head of the POST's time, after messages `ready` promised.
    const wanted = link.channels().filter((c) => {
      const { cursor, since } = link.start(c);
      return s.asked.includes(c) || (cursor ?? since) !== undefined;
    });
    const subscribe = wanted.filter((c) => !s.asked.includes(c));
    const unsubscribe = s.asked.filter((c) => !wanted.includes(c));
    const { id } = s;
    // Before the session is known, its announcement runs the change.
    if (id === undefined || subscribe.length + unsubscribe.length === 0) return;
    // The new channels' starts as a listen request would send them; the token rides the query, as on
    // listen requests, which (with a body sent as text/plain) keeps the request simple: no CORS preflight.
    const query = link.query(subscribe);
    const { cursor, since, presence } = Object.fromEntries(new URLSearchParams(query));
    try {
      const answer = await getJson<{ cursor?: string }>(link.settings.fetch!, `${link.url}/v1/session/${id}?${query}`, 10_000, {
        method: 'POST',
        body: JSON.stringify({ subscribe, unsubscribe, cursor, since, presence: !!presence }),
      });
      if (s.id === id) {
        s.asked = wanted;
        // The answer's cursor names only the channels this change added, each at its start: a drop
        // before the stream's marker still resumes them from there. Past the marker, newer cursors
        // name them already: going back to the start would replay them (and their reset notices).
        if (answer.cursor !== undefined) link.cover(answer.cursor, subscribe.filter((c) => !s.wire.includes(c)));
      }
    } catch (error: any) {
      // [spec] 403 forbidden_channel: nothing was applied; the session and its other channels go on.
      if (error.status === 403) for (const channel of subscribe) link.refused(error, channel);
      else if (s.id === id) reopen();
    }
  };
  const s: Session = {
    asked: [],
    wire: [],
    pending: Promise.resolve(),
    start: () => {
      s.id = undefined;
      return (s.asked = s.wire = link.channels());
    },
    // POSTs run one at a time, each diffing what is wanted when its turn comes: changes made meanwhile
    // go together in the next one, and the ones after find nothing left to do. One that threw never
    // stops the ones after it.
    update: () => {
      s.pending = s.pending.then(change, change);
    },
    announce: (id) => {
      s.id = id;
      s.update();
    },
    read: (frame) => {
      if (frame.session) s.announce(frame.session);
      else if (frame.subscribed) {
        // [spec] the in-band marker: entries after it carry cursors naming the new set.
        s.wire = s.wire.filter((c) => !frame.unsubscribed.includes(c)).concat(frame.subscribed);
        link.cover(frame.cursor, s.wire);
      }
      // [spec] "A message published with the event name join or leave is told apart by its data".
      else if (frame.presence) link.presence(frame.presence, frame as any);
      else if ((frame.code ?? frame.notice) === 'token_expired') link.expiring();
      else if (!frame.heartbeat) link.receive(frame as any, s.wire);
    },
  };
  return s;
}
