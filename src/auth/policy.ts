// Channel patterns: which channels a token (or an anonymous client) may use. The syntax is deliberately
// tiny so that nothing a token carries is ever compiled into a regex or run as code:
//
//   user:42      exactly the channel "user:42"
//   prices:*     every channel starting with "prices:" followed by at least one more character
//   chat/*       "chat/room1", "chat/a/b", … (the "*" crosses "/" and ":"; channel names have no levels)
//   *            every channel
//
// "*" may only be the last character. The rest uses the channel alphabet [A-Za-z0-9_.:@/-].

const PATTERN = /^[A-Za-z0-9_.:@/-]{0,200}\*?$/;
const MAX_PATTERNS = 256;

/** Whether `text` is a valid pattern (see above). */
export function isValidPattern(text: unknown): text is string {
  return typeof text === 'string' && text.length > 0 && text.length <= 201 && PATTERN.test(text);
}

/**
 * A compiled set of patterns. `matches` costs one Set lookup plus one `startsWith` per wildcard pattern;
 * it runs when a client subscribes or publishes, never per delivered message.
 */
export class ChannelPolicy {
  static readonly NONE = new ChannelPolicy([]);
  static readonly ALL = new ChannelPolicy(['*']);

  readonly patterns: readonly string[];
  readonly #exact: ReadonlySet<string>;
  readonly #prefixes: readonly string[];
  readonly #isAll: boolean;

  /** Throws an Error naming the first invalid pattern; callers turn it into their own error. */
  constructor(patterns: readonly string[]) {
    if (patterns.length > MAX_PATTERNS) throw new Error(`at most ${MAX_PATTERNS} patterns`);
    const exact = new Set<string>();
    const prefixes: string[] = [];
    for (const pattern of patterns) {
      if (!isValidPattern(pattern)) throw new Error(`invalid channel pattern ${JSON.stringify(String(pattern).slice(0, 220))}`);
      if (pattern.endsWith('*')) prefixes.push(pattern.slice(0, -1));
      else exact.add(pattern);
    }
    this.patterns = [...patterns];
    this.#exact = exact;
    this.#prefixes = prefixes;
    this.#isAll = prefixes.includes('');
  }

  get isEmpty(): boolean {
    return this.patterns.length === 0;
  }

  matches(channel: string): boolean {
    if (this.#isAll || this.#exact.has(channel)) return true;
    for (const prefix of this.#prefixes) {
      if (channel.length > prefix.length && channel.startsWith(prefix)) return true;
    }
    return false;
  }
}

/** Parses a pattern list from the command line: separated by commas and/or spaces. */
export function parsePatternList(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((p) => p.trim())
    .filter(Boolean);
}
