// Output that a browser runs as script (JSONP, the hidden-iframe stream) must never run anything but
// the one call we mean. The callback name is validated, never echoed raw; JSON has "<", ">", "&" and
// U+2028/U+2029 escaped so no "</script>" or line terminator can break out (OWASP XSS rule #3.1).
import { HeraldError } from '../errors.js';

const CALLBACK_PATTERN = /^[A-Za-z_$][A-Za-z0-9_$]{0,63}(\.[A-Za-z_$][A-Za-z0-9_$]{0,63}){0,4}$/;
const RESERVED = new Set(['eval', 'Function', 'constructor', '__proto__', 'prototype', 'import', 'require']);

export function validateCallback(name: string | null): string {
  if (name === null || !CALLBACK_PATTERN.test(name) || name.split('.').some((part) => RESERVED.has(part))) {
    throw new HeraldError('callback_invalid');
  }
  return name;
}

export function scriptSafeJson(json: string): string {
  return json.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
