import { HeraldError } from './errors.js';

/** Deepest nesting of arrays and objects taken from a client: far past any real message. */
export const MAX_JSON_DEPTH = 128;

/**
 * JSON.parse for untrusted text, refusing nesting deeper than MAX_JSON_DEPTH first: V8 parses any
 * depth, but re-encoding 10,000 levels (as every publish does) overflows the stack.
 */
export function parseUntrustedJson(text: string): unknown {
  let depth = 0;
  let isInString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (isInString) {
      if (c === 0x5c) i++; // a backslash escapes the next character
      else if (c === 0x22) isInString = false;
    } else if (c === 0x22) isInString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) throw new HeraldError('json_invalid', `JSON nested deeper than ${MAX_JSON_DEPTH} levels is not taken.`);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new HeraldError('json_invalid');
  }
}
