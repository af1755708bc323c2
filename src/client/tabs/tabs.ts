// One server connection per browser: every Herald instance of an origin with the same server URL (and
// `share` key) joins a group; the one holding the group's Web Lock is the leader and runs the real
// connection, the others (followers) receive through it over a BroadcastChannel. When the leader's tab
// goes, the browser hands the lock to one follower, which takes over from the cursors the group holds.
// Election and the channel are here; the leader's side is leader.ts, the follower's wire tab-transport.ts.
import type { Herald } from '../client.js';
import type { Entry, Link, Transport } from '../transport.js';
import type { ConnectionState, PresenceEvent, StateChange } from '../types.js';
import { lead } from './leader.js';
import { tabTransport, type Follower } from './tab-transport.js';

/** A follower's channel and where it starts, as its core would subscribe it (Link.start). */
export interface Want {
  channel: string;
  cursor?: string;
  since?: 'beginning';
  presence?: true;
}

/** Everything said on the group's BroadcastChannel. */
export type TabMessage =
  /** Follower → leader: every channel a tab wire wants now (its whole list, each time), by the wire's id. */
  | { t: 'want'; tab: string; wants: Want[] }
  /** Follower → leader: this instance closed. */
  | { t: 'bye'; tab: string }
  /** Leader → followers: its connection's state; also its roll-call, which every follower answers with `want`. */
  | { t: 'state'; state: ConnectionState; reason?: string | undefined }
  /** Leader → followers: an envelope or reset of a relayed channel, in the leader's delivery order. */
  | { t: 'entry'; entry: Entry }
  | { t: 'join' | 'leave'; event: PresenceEvent }
  /** Leader → followers: the server refused a relayed channel. */
  | { t: 'refused'; channel: string; code: string; message: string };

/** What the group needs from the Herald instance around it, besides its public API. */
export interface TabsHost {
  /** This instance became the leader: end the tab wire and connect with the real transports now. */
  promote(): void;
  /** Shows the leader's connection state as this instance's own. */
  mirror(change: StateChange): void;
}

export class Tabs {
  /** Settles once this instance knows whether it leads (the first lock request answered). */
  readonly ready: Promise<void>;
  /** The current tab wire, while this instance follows. */
  follower: Follower | undefined;
  readonly host: TabsHost;
  readonly #channel: BroadcastChannel;
  #leader: ReturnType<typeof lead> | undefined;
  #release: (() => void) | undefined;
  #isClosed = false;

  constructor(name: string, herald: Herald, host: TabsHost) {
    this.host = host;
    const channel = (this.#channel = new BroadcastChannel(name));
    channel.onmessage = ({ data }: MessageEvent<TabMessage>) => {
      if (this.#leader) return this.#leader.message(data);
      if (data.t === 'state') this.want(); // a (new) leader's roll-call
      this.follower?.message(data);
    };
    let decide!: () => void;
    this.ready = new Promise((resolve) => (decide = resolve));
    const locks = (navigator as Navigator & { locks: LockManager }).locks;
    // [spec] Web Locks §"request()": the lock is held until the callback's promise settles, and released
    // by the browser when the tab goes away; queued requests are granted in order.
    const become = (): void => {
      if (!this.#isClosed) this.#leader = lead(herald, (message) => this.post(message));
      decide();
      host.promote();
    };
    const take = (lock: Lock | null): Promise<void> | void => {
      if (this.#isClosed) return decide(); // a closed instance lets the lock go at once
      if (!lock) {
        decide();
        return request({});
      }
      return new Promise<void>((release) => {
        this.#release = release;
        become();
      });
    };
    // A page whose origin is opaque (a sandboxed iframe) is refused locks: it connects on its own.
    const request = (options: LockOptions): void => void locks.request(name, options, take).catch(become);
    request({ ifAvailable: true });
  }

  get isFollower(): boolean {
    return this.#leader === undefined;
  }

  /** The follower's wire: a Transport whose other end is the leader tab. */
  follow = (link: Link): Transport => tabTransport(this, link);

  post(message: TabMessage): void {
    if (!this.#isClosed) this.#channel.postMessage(message);
  }

  /** Tells the leader every channel the tab wire wants now (without one, the leader forgets it at a roll-call). */
  want(): void {
    const follower = this.follower;
    if (follower) this.post({ t: 'want', tab: follower.id, wants: follower.wants() });
  }

  /** Leaves the group: a follower says goodbye, the leader hands the lock on. Idempotent. */
  close(): void {
    this.#leader?.close();
    const follower = this.follower;
    if (follower) this.post({ t: 'bye', tab: follower.id });
    this.follower = undefined;
    this.#isClosed = true;
    this.#release?.();
    this.#channel.close();
  }
}
