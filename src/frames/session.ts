// The JSON a listen session adds to every wire (SSE, NDJSON, iframe, polls): the announcement of its id,
// and the marker of a POST /v1/session/{id} change. Channel names match CHANNEL_PATTERN, ids and cursors
// are base64url, so JSON.stringify of the lists is all the escaping needed.

/** `{"session":"<id>"}`: a stream's first frame when it was opened with `session=`. */
export function sessionJson(id: string): string {
  return `{"session":"${id}"}`;
}

/**
 * `{"subscribed":[…],"unsubscribed":[…],"cursor":"…"}`: written on a session's stream where a POST
 * changed its channels, before anything of the new channels; `cursor` covers the whole stream.
 */
export function sessionChangeJson(subscribed: readonly string[], unsubscribed: readonly string[], cursor: string): string {
  return `{"subscribed":${JSON.stringify([...subscribed].sort())},"unsubscribed":${JSON.stringify([...unsubscribed].sort())},"cursor":"${cursor}"}`;
}
