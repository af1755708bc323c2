/**
 * Every error the SDK reports. `code` is the server's error code when the server refused something
 * (docs/errors.md: `channel_invalid`, `cursor_invalid`, `unauthorized`…), or one of the SDK's own:
 * `closed` (the client was closed), `transport_unavailable` (none of the requested transports exists
 * here), `server_gone` (a request got no answer).
 */
export class HeraldError extends Error {
  readonly code: string;
  /** The HTTP status, when the server answered one. */
  readonly status: number | undefined;

  constructor(code: string, message: string, status?: number) {
    super(message);
    this.name = 'HeraldError';
    this.code = code;
    this.status = status;
  }
}

/** True when retrying cannot help: the server refused the request itself, not the moment. */
export function isFatal(error: unknown): boolean {
  const status = error instanceof HeraldError ? error.status : undefined;
  return status === 400 || status === 401 || status === 403;
}
