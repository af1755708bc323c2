// The client token (docs/protocol.md "Auth"): the one given, or the one getToken() last returned. The
// core asks for a fresh one before connecting when it has none or it has expired, when the server says
// it expires (`token_expired`), and after a 401.

export class TokenSource {
  /** The token to send now; undefined without one. */
  value: string | undefined;
  readonly #get: (() => string | Promise<string>) | undefined;
  /** The getToken() call under way, shared by everyone who needs a fresh token meanwhile. */
  #request: Promise<void> | undefined;

  constructor(token: string | undefined, getToken: (() => string | Promise<string>) | undefined) {
    this.value = token;
    this.#get = getToken;
  }

  /** True when a fresh token can be had. */
  get canRefresh(): boolean {
    return this.#get !== undefined;
  }

  /** Gets a token from getToken() when there is none or it has expired (its `exp`, read unverified). */
  async ensure(): Promise<void> {
    if (this.#get === undefined) return;
    if (this.value !== undefined) {
      let expS = Infinity;
      try {
        // [spec] RFC 7519 §4.1.4 "exp", in the base64url JSON payload (RFC 7515 §3).
        expS = JSON.parse(atob(this.value.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/'))).exp ?? Infinity;
      } catch {
        // not a JWT we can read: the server will say
      }
      if (expS * 1000 > Date.now()) return;
    }
    await this.refresh();
  }

  /** Calls getToken() (once, however many ask meanwhile). Rejects with what getToken() threw. */
  refresh(): Promise<void> {
    this.#request ??= (async () => {
      try {
        const token = await this.#get!();
        if (typeof token !== 'string' || token === '') throw new TypeError('getToken() must return a token string.');
        this.value = token;
      } finally {
        this.#request = undefined;
      }
    })();
    return this.#request;
  }
}
