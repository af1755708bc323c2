// The follower's wire: a Transport (transport.ts) whose other end is the leader tab (tabs.ts) instead of
// the server. Entries come in the leader's delivery order and each names only its own channel, so this
// instance's core dedupes and repairs gaps exactly as on any other wire.
import { HeraldError, isFatal } from '../errors.js';
import { getJson, type PollAnswer } from '../http.js';
import type { Entry, Link, Transport } from '../transport.js';
import type { TabMessage, Tabs, Want } from './tabs.js';

export interface Follower {
  /** This wire's id: a new wire is a newcomer to the leader, which answers it with its state. */
  readonly id: string;
  wants(): Want[];
  /** Detaches from the group; the leader keeps its channels until a roll-call (a new wire may want them). */
  close(): void;
  message(message: TabMessage): void;
}

export function tabTransport(tabs: Tabs, link: Link): Transport {
  /** Channels caught up on this wire; the entries held for each channel being caught up. */
  const caught = new Set<string>();
  const held = new Map<string, Entry[]>();
  /** The leader state shown last; undefined until the leader first says it is connected. */
  let shown: string | undefined;

  /**
   * The leader relays a channel from its own position, which may be past this tab's (it already carried
   * the channel, or took over from another tab's cursor), and its resets are its own. So the first entry
   * of each channel, and any reset, is held while a poll from this tab's own cursor fetches what this
   * tab lacks; dedupe drops what both bring. After that, offsets let the core catch any gap by itself.
   */
  const receive = (entry: Entry): void => {
    const { channel } = entry;
    const queue = held.get(channel);
    if (queue !== undefined) {
      if (!('from' in entry)) queue.push(entry);
      return;
    }
    if (caught.has(channel) && !('from' in entry)) return link.receive(entry, [channel]);
    if (!link.channels().includes(channel)) return; // another tab's channel
    const held1: Entry[] = 'from' in entry ? [] : [entry];
    held.set(channel, held1);
    getJson<PollAnswer>(link.settings.fetch!, `${link.url}/v1/poll?${link.query([channel])}&timeout=0`, 10_000).then(
      (answer) => {
        if (held.get(channel) !== held1) return; // unsubscribed meanwhile
        held.delete(channel);
        // Caught up once an entry went through (the core then knows an offset to guard); a reset alone is not enough.
        if (held1.length > 0) caught.add(channel);
        for (const entry of answer.messages) link.receive(entry, [channel]);
        link.cover(answer.cursor, [channel]);
        for (const entry of held1) link.receive(entry, [channel]);
      },
      (error: HeraldError) => {
        if (held.get(channel) !== held1) return;
        held.delete(channel);
        if (isFatal(error) && error.status !== 401) link.refused(error, channel);
        else link.closed(`tab: catching up ${channel} failed`, error);
      },
    );
  };

  const follower: Follower = {
    id: Math.random().toString(36).slice(2),
    wants: () => link.channels().map((channel) => ({ channel, ...link.start(channel) })),
    message(message) {
      switch (message.t) {
        case 'entry':
          return receive(message.entry);
        case 'join':
        case 'leave':
          return link.presence(message.t, message.event);
        case 'refused':
          return link.refused(new HeraldError(message.code, message.message), message.channel);
        case 'state':
          if (shown === undefined ? message.state !== 'connected' : message.state === shown) return;
          if (shown === undefined) link.opened();
          else tabs.host.mirror({ state: message.state, transport: 'tab', reason: message.reason && `leader tab: ${message.reason}` });
          shown = message.state;
      }
    },
    close() {
      if (tabs.follower === follower) tabs.follower = undefined;
    },
  };
  tabs.follower = follower;
  tabs.want();

  return {
    update() {
      // A channel subscribed again later is new to the core (no offset to guard): it is caught up again,
      // and a catch-up still under way for it is void.
      const wanted = link.channels();
      for (const channel of [...caught, ...held.keys()]) {
        if (wanted.includes(channel)) continue;
        caught.delete(channel);
        held.delete(channel);
      }
      tabs.want();
    },
    close: follower.close,
  };
}
