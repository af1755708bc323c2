import { ChannelSets } from '../hub/channel-sets.js';
import type { Presence, PresenceChange } from './presence.js';

/** A connection that asked for a channel's join/leave events. */
export interface PresenceListener {
  /** Called synchronously; must not throw or wait. */
  onPresence(event: PresenceEvent): void;
}

/**
 * One join or leave, with its wire frames built once per format and shared by every listener
 * (as Message does for messages).
 */
export class PresenceEvent {
  readonly kind: 'join' | 'leave';
  /** `"channel":…,"user":…,"info":…}`: the body of every wire's JSON object, after its opening. */
  readonly jsonTail: string;
  readonly #frames = new Map<string, Buffer>();

  constructor(change: PresenceChange) {
    this.kind = change.kind;
    const info = change.info === undefined ? '' : `,"info":${JSON.stringify(change.info)}`;
    this.jsonTail = `"channel":${JSON.stringify(change.channel)},"user":${JSON.stringify(change.user)}${info}}`;
  }

  /** The frame for the wire format `key`, encoded on first use. */
  frame(key: string, encode: (event: PresenceEvent) => Buffer): Buffer {
    let bytes = this.#frames.get(key);
    if (bytes === undefined) {
      bytes = encode(this);
      this.#frames.set(key, bytes);
    }
    return bytes;
  }
}

/** This node's listeners of presence events, by channel. Hears every change from the Presence. */
export class PresenceFanOut {
  readonly #listeners = new ChannelSets<PresenceListener>();

  constructor(presence: Presence) {
    presence.onChange((change) => this.#deliver(change));
  }

  listen(channel: string, listener: PresenceListener): void {
    this.#listeners.add(channel, listener);
  }

  unlisten(channel: string, listener: PresenceListener): void {
    this.#listeners.remove(channel, listener);
  }

  #deliver(change: PresenceChange): void {
    const set = this.#listeners.get(change.channel);
    if (set === undefined) return;
    const event = new PresenceEvent(change);
    for (const listener of [...set]) listener.onPresence(event);
  }
}
