// Herald client SDK: `import { Herald } from '…/herald.js'`. No runtime dependencies, no `node:` imports.
export { Herald } from './client.js';
export { HeraldError } from './errors.js';
export type * from './types.js';
