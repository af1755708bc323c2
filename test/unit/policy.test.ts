import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChannelPolicy, isValidPattern, parsePatternList } from '../../src/auth/policy.js';

describe('channel patterns', () => {
  it('matches exact names', () => {
    const policy = new ChannelPolicy(['user:42', 'news']);
    assert.equal(policy.matches('user:42'), true);
    assert.equal(policy.matches('news'), true);
    assert.equal(policy.matches('user:421'), false);
    assert.equal(policy.matches('user:4'), false);
    assert.equal(policy.matches('News'), false);
  });

  it('matches a trailing * against one or more characters, across any separator', () => {
    const policy = new ChannelPolicy(['prices:*', 'chat/*']);
    assert.equal(policy.matches('prices:EURUSD'), true);
    assert.equal(policy.matches('prices:a:b'), true);
    assert.equal(policy.matches('prices:'), false, 'the * stands for at least one character');
    assert.equal(policy.matches('prices'), false);
    assert.equal(policy.matches('chat/room1'), true);
    assert.equal(policy.matches('chat/a/b'), true);
    assert.equal(policy.matches('chatroom'), false);
    assert.equal(policy.matches('xprices:1'), false);
  });

  it('matches everything with *, nothing when empty', () => {
    assert.equal(new ChannelPolicy(['*']).matches('anything:at/all'), true);
    assert.equal(ChannelPolicy.ALL.matches('x'), true);
    assert.equal(ChannelPolicy.NONE.matches('x'), false);
    assert.equal(new ChannelPolicy([]).isEmpty, true);
  });

  it('refuses anything but channel characters with one trailing *', () => {
    for (const good of ['a', 'user:42', 'prices:*', '*', 'a.b-c_d@e/f:*']) assert.equal(isValidPattern(good), true, good);
    for (const bad of ['', '*a', 'a*b', 'a**', 'pri ces', 'a|b', 'user:(42)', '^a$', 'x'.repeat(202), 42, null]) {
      assert.equal(isValidPattern(bad), false, String(bad));
      assert.throws(() => new ChannelPolicy([bad as string]), /invalid channel pattern/);
    }
    assert.throws(() => new ChannelPolicy(Array.from({ length: 257 }, (_, i) => `c${i}`)), /at most/);
  });

  it('treats regex metacharacters in channel names literally', () => {
    const policy = new ChannelPolicy(['a.b', 'x.*']);
    assert.equal(policy.matches('a.b'), true);
    assert.equal(policy.matches('axb'), false);
    assert.equal(policy.matches('x.1'), true);
    assert.equal(policy.matches('xy1'), false);
  });

  it('parses command-line lists separated by commas or spaces', () => {
    assert.deepEqual(parsePatternList('news, prices:*  chat/*'), ['news', 'prices:*', 'chat/*']);
    assert.deepEqual(parsePatternList(''), []);
  });
});
