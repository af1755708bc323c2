import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ERRORS } from '../../src/errors.js';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
const rows = new Map(
  [...doc.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| (\d*) \|/gm)].map((m) => [m[1]!, { status: Number(m[2]), ws: m[3] }]),
);

describe('error table', () => {
  it('documents every code with its status and close code', () => {
    for (const [code, spec] of Object.entries(ERRORS)) {
      const row = rows.get(code);
      assert.ok(row, `docs/errors.md lacks ${code}`);
      assert.equal(row.status, spec.status, `status of ${code}`);
      assert.equal(row.ws, String((spec as { wsCloseCode?: number }).wsCloseCode ?? ''), `close code of ${code}`);
    }
  });

  it('documents no code the server does not have', () => {
    for (const code of rows.keys()) assert.ok(code in ERRORS, `docs/errors.md lists unknown ${code}`);
  });

  it('uses lower_snake codes and 4xxx or standard close codes', () => {
    for (const [code, spec] of Object.entries(ERRORS)) {
      assert.match(code, /^[a-z]+(_[a-z]+)*$/);
      const close = (spec as { wsCloseCode?: number }).wsCloseCode;
      if (close !== undefined) assert.ok(close === 1001 || close === 1011 || (close >= 4000 && close < 5000));
    }
  });
});
