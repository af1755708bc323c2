import type { ResetNotice } from '../hub/hub.js';

/**
 * The reset notice as a JSON object, opened by `opening` (e.g. `{"op":"reset",` or `{"reset":true,`),
 * with the cursor that resumes after it.
 */
export function resetJson(notice: ResetNotice, cursor: string, opening: string): string {
  const missed = notice.missed === undefined ? '' : `,"missed":${notice.missed}`;
  return (
    `${opening}"channel":${JSON.stringify(notice.channel)},"epoch":"${notice.epoch}",` +
    `"from":${notice.from}${missed},"cursor":"${cursor}"}`
  );
}
