// [spec] docs/protocol.md "Hidden-iframe streaming — GET /v1/iframe?callback=fn": an endless HTML page
// whose <script> tags call `parent.fn({…})` with envelopes, `"reset":true` entries, presence events and
// `{"notice":"token_expired"}`, and `<!-- -->` heartbeats. Browser only, opt-in (`transports: ['iframe']`),
// and only for a page on the server's own origin: a frame of another origin may not call `parent.fn`.
import type { Link, Transport } from '../transport.js';
import { diagnose, globalCallback } from './jsonp.js';

/** The stream's document keeps every frame it parsed: past this many nodes it is replaced (from the cursor). */
const MAX_NODES = 2000;

export function iframeTransport(link: Link): Transport {
  const { settings } = link;
  if (new URL(link.url).origin !== location.origin) throw new Error('iframe needs a page of the same origin');
  let stop: (() => void) | undefined;

  const open = (): void => {
    stop?.();
    const channels = link.channels();
    const frame = document.createElement('iframe');
    let isOpen = false;
    let observer: MutationObserver | undefined;
    const end = (): void => {
      clearInterval(timer);
      observer?.disconnect();
      frame.remove(); // a removed frame runs no more scripts: its callback can go at once
      remove();
    };
    // Liveness: the heartbeats are comments, which call nothing in the parent, so the frame's document
    // (readable: same origin) is watched instead. A timer only finds the moment the stream's document
    // replaces about:blank (the opening has arrived: `connected`); from then on a MutationObserver sees
    // every node the stream adds, heartbeat or frame. It is not a timer, so it is not throttled in a
    // background tab, where a polled check would starve and the core's watchdog would kill a live stream.
    const watch = (): void => {
      const doc = frame.contentDocument;
      if (isOpen || doc?.contentType !== 'text/html' || !doc.body?.firstChild) return;
      isOpen = true;
      clearInterval(timer);
      link.opened(settings.heartbeatMs * 2 + 1000);
      observer = new MutationObserver(() => {
        link.alive();
        if (doc.body.childNodes.length > MAX_NODES) open();
      });
      observer.observe(doc.body, { childList: true });
    };
    const timer = setInterval(watch, 100);
    const [name, remove] = globalCallback((entry) => {
      watch();
      if (entry.presence !== undefined) link.presence(entry.presence, entry);
      else if (entry.notice === 'token_expired') link.expiring();
      else if (entry.channel !== undefined && entry.cursor !== undefined) link.receive(entry, channels);
      // anything else (a frame this SDK does not know yet) is ignored
    });
    const query = link.query(channels);
    // `load` is the end of the document: the stream ended, or it never began (a refusal's JSON, an error page).
    frame.onload = () => {
      end();
      if (isOpen) link.closed('iframe stream ended');
      else diagnose(link, query, 'iframe stream failed');
    };
    frame.hidden = true;
    frame.src = `${link.url}/v1/iframe?${query}&callback=${name}`;
    document.documentElement.appendChild(frame);
    stop = end;
  };
  open();

  return {
    // A new frame for the new channels, from every channel's cursor (duplicates are dropped by the core).
    update: open,
    close: () => stop?.(),
  };
}
