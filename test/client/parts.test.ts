// The SDK's pure parts, alone: backoff and the NDJSON line decoder.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffMs } from '../../src/client/backoff.js';
import { LineDecoder } from '../../src/client/ndjson.js';

describe('backoffMs (full jitter)', () => {
  it('is uniform below the capped exponential', () => {
    assert.equal(backoffMs(0, 100, 5000, () => 0), 0);
    assert.equal(backoffMs(0, 100, 5000, () => 0.999999), 99);
    assert.equal(backoffMs(3, 100, 5000, () => 0.5), 400);
    assert.equal(backoffMs(10, 100, 5000, () => 0.5), 2500);
    assert.equal(backoffMs(1000, 100, 5000, () => 0.999999), 4999);
  });
});

describe('LineDecoder', () => {
  it('splits lines across chunk boundaries, including inside a UTF-8 character', () => {
    const decoder = new LineDecoder();
    const bytes = new TextEncoder().encode('{"a":"é"}\n\n{"b":2}\n{"c"');
    const cut = bytes.indexOf(0xc3) + 1; // between the two bytes of "é"
    assert.deepEqual(decoder.push(bytes.slice(0, cut)), []);
    assert.deepEqual(decoder.push(bytes.slice(cut)), ['{"a":"é"}', '{"b":2}']);
    assert.deepEqual(decoder.push(new TextEncoder().encode(':3}\n')), ['{"c":3}']);
  });
});
