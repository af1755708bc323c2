// The server-side scripts of the Redis engine. A channel's keys all carry the hash tag {channel}, so
// they share one slot with its shard channel: every script touches one channel's slot per call on a
// Cluster (on standalone Redis one call may carry several channels, all or nothing).
//
//   herald:{C}:meta   hash  epoch, head              the channel's epoch and last offset
//   herald:{C}:log    stream, entry id "<offset>-0"  e event, d data, t published-at ms; trimmed to MAXLEN
//   herald:{C}:idem   hash  idempotency key → offset  pruned of keys older than the stream
//   herald:{C}        shard channel (SPUBLISH)        one notice per call with that call's new messages

export const KEYS_PER_CHANNEL = 3;

export function channelKeys(channel: string): [meta: string, log: string, idem: string] {
  return [`herald:{${channel}}:meta`, `herald:{${channel}}:log`, `herald:{${channel}}:idem`];
}

export function fanOutChannel(channel: string): string {
  return `herald:{${channel}}`;
}

/**
 * Publish. KEYS: meta, log, idem of each channel of the call. ARGV: now ms, ttl s, max length, then
 * one fresh epoch per channel (used only where the channel has none: its state was lost or never
 * existed, so a new epoch begins and the old stream is dropped), then per message: channel index
 * (1-based), event ('' for none), data JSON, idempotency key ('' for none).
 * Returns per message {offset, isDuplicate(0|1)} flattened, then the epoch of each channel.
 * Fan-out payload per channel: "epoch\n" then one "offset,publishedAtMs,event,data" line per message
 * (data is JSON text: no raw newline; events have no comma).
 */
export const PUBLISH_SCRIPT = `
local now, ttl, maxlen = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local channels = #KEYS / 3
local epochs, heads, oldest, wires, fresh = {}, {}, {}, {}, {}
for c = 1, channels do
  local meta = KEYS[3 * c - 2]
  local state = redis.call('HMGET', meta, 'epoch', 'head')
  if not state[1] then
    redis.call('DEL', KEYS[3 * c - 1], KEYS[3 * c])
    state = { ARGV[3 + c], '0' }
    redis.call('HSET', meta, 'epoch', state[1], 'head', 0)
  end
  epochs[c] = state[1]
  heads[c] = tonumber(state[2])
  wires[c] = { state[1] }
  fresh[c] = false
end
local results = {}
local first = 4 + channels
for i = first, #ARGV, 4 do
  local c = tonumber(ARGV[i])
  local event, data, key = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local original = false
  if key ~= '' then
    original = redis.call('HGET', KEYS[3 * c], key)
    if original then
      if oldest[c] == nil then
        local entry = redis.call('XRANGE', KEYS[3 * c - 1], '-', '+', 'COUNT', 1)[1]
        oldest[c] = entry and tonumber(string.match(entry[1], '^(%d+)')) or (heads[c] + 1)
      end
      -- A key whose message retention dropped is forgotten, as the embedded store does.
      if tonumber(original) < oldest[c] then original = false end
    end
  end
  if original then
    results[#results + 1] = tonumber(original)
    results[#results + 1] = 1
  else
    local offset = heads[c] + 1
    heads[c] = offset
    local fields = { 't', now, 'd', data }
    if event ~= '' then fields[#fields + 1] = 'e'; fields[#fields + 1] = event end
    redis.call('XADD', KEYS[3 * c - 1], 'MAXLEN', maxlen, offset .. '-0', unpack(fields))
    if key ~= '' then redis.call('HSET', KEYS[3 * c], key, offset) end
    local wire = wires[c]
    wire[#wire + 1] = offset .. ',' .. now .. ',' .. event .. ',' .. data
    fresh[c] = true
    results[#results + 1] = offset
    results[#results + 1] = 0
  end
end
for c = 1, channels do
  local meta, log, idem = KEYS[3 * c - 2], KEYS[3 * c - 1], KEYS[3 * c]
  if fresh[c] then
    redis.call('HSET', meta, 'head', heads[c])
    -- Prune idempotency keys older than the stream once they outnumber it twice.
    if redis.call('HLEN', idem) > 2 * maxlen then
      local entry = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
      local low = entry and tonumber(string.match(entry[1], '^(%d+)')) or (heads[c] + 1)
      local all = redis.call('HGETALL', idem)
      for j = 1, #all, 2 do
        if tonumber(all[j + 1]) < low then redis.call('HDEL', idem, all[j]) end
      end
    end
    redis.call('SPUBLISH', string.sub(meta, 1, -6), table.concat(wires[c], '\\n'))
  end
  redis.call('EXPIRE', meta, ttl)
  redis.call('EXPIRE', log, ttl)
  redis.call('EXPIRE', idem, ttl)
  results[#results + 1] = epochs[c]
end
return results
`;

/**
 * Read. KEYS: meta, log of one channel. ARGV: the offset to read after. Returns {epoch|false, head,
 * entries past the offset}. One script, so the head and the entries are one consistent view.
 */
export const READ_SCRIPT = `
local state = redis.call('HMGET', KEYS[1], 'epoch', 'head')
if not state[1] then return { false, 0, {} } end
return { state[1], tonumber(state[2]), redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+') }
`;
