// Entry of dist/client/herald.iife.js, for a classic <script src="/herald.iife.js">: defines the global
// `Herald` (the class itself, so a page writes `new Herald(url)` as with the module) and nothing else.
import { Herald } from './client.js';
import { HeraldError } from './errors.js';

(globalThis as Record<string, unknown>).Herald = Object.assign(Herald, { HeraldError });
