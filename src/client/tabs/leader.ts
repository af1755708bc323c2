// The leader tab's side of a tab group (tabs.ts): it subscribes, on its own Herald instance and through
// the public subscribe(), every channel some follower wants, and broadcasts what each delivers. Its
// instance's dedupe and gap repair run once for the group; each follower's run again on what it gets.
import type { Herald } from '../client.js';
import type { Entry } from '../transport.js';
import type { StateChange, SubscribeOptions, Subscription } from '../types.js';
import type { TabMessage, Want } from './tabs.js';

/**
 * Roll-call period: a follower that answered none of the last two is gone (its tab crashed or was killed
 * without a goodbye) and its channels are let go. Answers are message events, which browsers do not
 * throttle in background tabs as they do timers; a late timer here only keeps a channel longer.
 */
const CALL_MS = 15_000;

export function lead(herald: Herald, post: (message: TabMessage) => void): { message(message: TabMessage): void; close(): void } {
  /** What each follower wants, by tab id. */
  const tabs = new Map<string, Want[]>();
  /** Followers heard since the last roll-call. */
  let heard = new Set<string>();
  const relays = new Map<string, Subscription>();

  const state = ({ state, reason }: StateChange): void => {
    if (state !== 'closed') post({ t: 'state', state, reason });
  };
  const sync = (): void => {
    const wanted = new Map<string, Want>();
    for (const wants of tabs.values()) for (const want of wants) if (!wanted.has(want.channel)) wanted.set(want.channel, want);
    for (const [channel, sub] of relays) {
      if (wanted.has(channel)) continue;
      sub.unsubscribe();
      relays.delete(channel);
    }
    for (const [channel, { cursor, since, presence }] of wanted) {
      if (relays.has(channel)) continue;
      const refused = (error: { code: string; message: string }): void => post({ t: 'refused', channel, code: error.code, message: error.message });
      const send = (entry: Entry): void => post({ t: 'entry', entry });
      // A channel new here starts where the first follower asking for it stands; one this instance
      // already carries goes on from here, and each follower fetches what it lacks (tab-transport.ts).
      const options: SubscribeOptions = { onMessage: send, onReset: send, onError: refused, since: cursor ?? since };
      if (presence) {
        options.onJoin = (event) => post({ t: 'join', event });
        options.onLeave = (event) => post({ t: 'leave', event });
      }
      try {
        relays.set(channel, herald.subscribe(channel, options));
      } catch (error) {
        refused(error as { code: string; message: string }); // too many channels, or this instance is closed
      }
    }
  };

  const stopState = herald.on('state', state);
  const caller = setInterval(() => {
    for (const tab of tabs.keys()) if (!heard.has(tab)) tabs.delete(tab);
    heard = new Set();
    sync();
    state(herald.state);
  }, CALL_MS);
  // The announcement: every follower answers with its channels and cursors, and this instance is not
  // connected yet (it was following until now).
  post({ t: 'state', state: 'connecting', reason: 'a new leader tab takes over' });

  return {
    message(message) {
      if (message.t === 'want') {
        const isNew = !tabs.has(message.tab);
        tabs.set(message.tab, message.wants);
        heard.add(message.tab);
        sync();
        // A newcomer learns the state at once (the others already know it).
        if (isNew) state(herald.state);
      } else if (message.t === 'bye') {
        tabs.delete(message.tab);
        sync();
      }
    },
    close() {
      clearInterval(caller);
      stopState();
    },
  };
}
