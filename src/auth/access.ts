import { HeraldError } from '../errors.js';
import { ChannelPolicy } from './policy.js';
import type { TokenClaims } from './token.js';

/**
 * What one client may do: subscribe (and read history), publish, show in presence. Made once per
 * connection or request, from the publish key, a verified token, or nothing (anonymous); consulted
 * when a client subscribes or publishes, never per delivered message.
 */
export class Access {
  /** The user (`sub`) of a token; undefined for the backend and anonymous clients. */
  readonly sub: string | undefined;
  /** The backend, holding the publish key: everything is allowed and nothing is rate-limited. */
  readonly isBackend: boolean;
  /** Presence info from the token. */
  readonly info: Record<string, unknown> | undefined;
  /** When the token expires (ms since the epoch); undefined if it never does or there is none. */
  readonly expiresAtMs: number | undefined;
  readonly #anonymous: ChannelPolicy;
  readonly #channels: ChannelPolicy;
  readonly #publish: ChannelPolicy;
  readonly #presence: ChannelPolicy;
  /** An upper bound on everything above (a demo token's demo:*); undefined when there is none. */
  readonly #ceiling: ChannelPolicy | undefined;

  private constructor(fields: {
    sub?: string;
    isBackend?: boolean;
    info?: Record<string, unknown> | undefined;
    expiresAtMs?: number | undefined;
    anonymous: ChannelPolicy;
    channels?: ChannelPolicy;
    publish?: ChannelPolicy;
    presence?: ChannelPolicy;
    ceiling?: ChannelPolicy;
  }) {
    this.sub = fields.sub;
    this.isBackend = fields.isBackend ?? false;
    this.info = fields.info;
    this.expiresAtMs = fields.expiresAtMs;
    this.#anonymous = fields.anonymous;
    this.#channels = fields.channels ?? ChannelPolicy.NONE;
    this.#publish = fields.publish ?? ChannelPolicy.NONE;
    this.#presence = fields.presence ?? ChannelPolicy.NONE;
    this.#ceiling = fields.ceiling;
  }

  static backend(): Access {
    return new Access({ isBackend: true, anonymous: ChannelPolicy.ALL, publish: ChannelPolicy.ALL });
  }

  static anonymous(anonymous: ChannelPolicy): Access {
    return new Access({ anonymous });
  }

  /**
   * A token's rights, plus the anonymous channels everyone has; with a `ceiling`, all of them (anonymous
   * channels included) only within it, whatever the claims say.
   */
  static fromClaims(claims: TokenClaims, anonymous: ChannelPolicy, ceiling?: ChannelPolicy): Access {
    return new Access({ ...claims, anonymous, ceiling });
  }

  get hasToken(): boolean {
    return this.sub !== undefined;
  }

  canSubscribe(channel: string): boolean {
    return this.#isUnderCeiling(channel) && (this.#anonymous.matches(channel) || this.#channels.matches(channel));
  }

  canPublish(channel: string): boolean {
    return this.#isUnderCeiling(channel) && this.#publish.matches(channel);
  }

  /** Whether this client shows in the channel's presence (a token's `presence` claim covers it). */
  canShowPresence(channel: string): boolean {
    return this.sub !== undefined && this.#isUnderCeiling(channel) && this.#presence.matches(channel);
  }

  #isUnderCeiling(channel: string): boolean {
    return this.#ceiling === undefined || this.#ceiling.matches(channel);
  }

  /** Why `channel` is refused when the ceiling is the reason; undefined when it is not. */
  #beyondCeiling(channel: string): string | undefined {
    if (this.#isUnderCeiling(channel)) return undefined;
    return `This token reaches ${this.#ceiling!.patterns.join(', ')} only, not ${JSON.stringify(channel)}.`;
  }

  /** Whether this client may see the channel's presence (list and join/leave events). */
  canSeePresence(channel: string): boolean {
    return this.isBackend || this.canShowPresence(channel);
  }

  requireSeePresence(channel: string): void {
    if (this.canSeePresence(channel)) return;
    throw new HeraldError('forbidden_channel', `Seeing presence in ${JSON.stringify(channel)} needs a token whose presence claim covers it.`);
  }

  /** Throws forbidden_channel unless the client may subscribe to (or read) `channel`. */
  requireSubscribe(channel: string): void {
    if (this.canSubscribe(channel)) return;
    throw new HeraldError(
      'forbidden_channel',
      this.hasToken
        ? (this.#beyondCeiling(channel) ?? `The token's channels claim does not cover ${JSON.stringify(channel)}.`)
        : `${JSON.stringify(channel)} is not an anonymous channel; a token is required.`,
    );
  }

  requirePublish(channel: string): void {
    if (this.canPublish(channel)) return;
    throw new HeraldError(
      'forbidden_publish',
      this.hasToken
        ? (this.#beyondCeiling(channel) ?? `The token's publish claim does not cover ${JSON.stringify(channel)}.`)
        : `Publishing into ${JSON.stringify(channel)} needs a token whose publish claim covers it.`,
    );
  }
}
