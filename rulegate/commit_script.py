"""The server-side compare-and-set commit script (one atomic change of a namespace).

KEYS: rules, rev, log, meta (all under one hash tag, so one slot).
ARGV: expected_rev (-1 = no check), op, actor, ts, log_maxlen, max_rules, generation candidate,
      create_only ("1"/"0"), txid, max_bytes, n, then n triples (rule id, msgpack value or "" to delete,
      condition), then the events channel. A condition is "" (none), "*" (the rule must exist) or the
      SHA-1 hex of the rule's stored bytes (the rule must still hold exactly those bytes: per-rule
      optimistic locking, checked here so that it is atomic with the write). The channel is not a
      declared key: during a slot migration Redis treats a declared key that does not exist (a channel
      never does) as missing and answers TRYAGAIN to every commit.
Keeps meta field `digest` (rulegate/digest.py: XOR of SHA-1(id "\n" value) over the rules, computed
once from the whole hash when absent, then O(change)) and writes it into the log entry too; and meta
fields `bytes` (the sum of len(id) + len(value) over the rules) and `rules` (their count), computed from
the whole hash when absent or when `rules` disagrees with HLEN (a namespace written before they existed),
then O(change). A change that grows the namespace past max_rules or max_bytes is refused (one that
shrinks or keeps an over-limit namespace is not, so an operator can always trim it).
Replies {rev, generation, digest} or an error "RGCONFLICT <rev>", "RGRULESTALE <rev> <id> <sha1 or ->",
"RGEXISTS <id>", "RGNOTFOUND <id>", "RGLIMIT <rules|bytes> <limit> <current> <after>",
"RGCORRUPT <reason>". Nothing is written unless every check passes.
Rule content only travels as ARGV: it is data, never Lua source.
"""

COMMIT_LUA = r"""
local rules, revkey, logkey, meta, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[#ARGV]
local cur = tonumber(redis.call('GET', revkey) or '0')
if cur == nil then return redis.error_reply('RGCORRUPT rev is not a number') end
local expected = tonumber(ARGV[1])
if expected >= 0 and expected ~= cur then
  return redis.error_reply('RGCONFLICT ' .. cur)
end
local last = redis.call('XREVRANGE', logkey, '+', '-', 'COUNT', 1)
if last[1] then
  local ms = tonumber(string.match(last[1][1], '^(%d+)-'))
  if ms and ms > cur then return redis.error_reply('RGCORRUPT log is ahead of rev') end
end
local n = tonumber(ARGV[11])
local changes, count = {}, redis.call('HLEN', rules)
local count_before, delta = count, 0
for i = 1, n do
  local id, val, want = ARGV[9 + 3 * i], ARGV[10 + 3 * i], ARGV[11 + 3 * i]
  local before = redis.call('HGET', rules, id)
  if want ~= '' and not (before and (want == '*' or redis.sha1hex(before) == want)) then
    return redis.error_reply('RGRULESTALE ' .. cur .. ' ' .. id .. ' ' .. (before and redis.sha1hex(before) or '-'))
  end
  if ARGV[8] == '1' and before then return redis.error_reply('RGEXISTS ' .. id) end
  if val == '' and not before then return redis.error_reply('RGNOTFOUND ' .. id) end
  if val ~= '' and not before then count = count + 1 end
  if val == '' then count = count - 1 end
  if before then delta = delta - #id - #before end
  if val ~= '' then delta = delta + #id + #val end
  changes[i] = {id, before or false, (val ~= '' and val) or false}
end
local max_rules, max_bytes = tonumber(ARGV[6]), tonumber(ARGV[10])
if count > max_rules and count > count_before then
  return redis.error_reply('RGLIMIT rules ' .. max_rules .. ' ' .. count_before .. ' ' .. count)
end
local function xor_hex(a, b)
  local out = {}
  for i = 1, 33, 8 do
    out[#out + 1] = bit.tohex(bit.bxor(tonumber(string.sub(a, i, i + 7), 16),
                                       tonumber(string.sub(b, i, i + 7), 16)), 8)
  end
  return table.concat(out)
end
local held = redis.call('HMGET', meta, 'digest', 'bytes', 'rules')
local digest, size = held[1], tonumber(held[2])
local fresh_digest = not digest or #digest ~= 40
if fresh_digest or not size or tonumber(held[3]) ~= count_before then
  if fresh_digest then digest = string.rep('0', 40) end
  size = 0
  local flat = redis.call('HGETALL', rules)
  for i = 1, #flat, 2 do
    size = size + #flat[i] + #flat[i + 1]
    if fresh_digest then digest = xor_hex(digest, redis.sha1hex(flat[i] .. '\n' .. flat[i + 1])) end
  end
end
if size + delta > max_bytes and delta > 0 then
  return redis.error_reply('RGLIMIT bytes ' .. max_bytes .. ' ' .. size .. ' ' .. (size + delta))
end
for i = 1, n do
  local c = changes[i]
  if c[2] then digest = xor_hex(digest, redis.sha1hex(c[1] .. '\n' .. c[2])) end
  if c[3] then digest = xor_hex(digest, redis.sha1hex(c[1] .. '\n' .. c[3])) end
  if c[3] then redis.call('HSET', rules, c[1], c[3]) else redis.call('HDEL', rules, c[1]) end
end
redis.call('HSET', meta, 'digest', digest, 'bytes', size + delta, 'rules', count)
local rev = redis.call('INCR', revkey)
if redis.call('HSETNX', meta, 'gen', ARGV[7]) == 1 then
  redis.call('HSET', meta, 'created', ARGV[4])
end
local gen = redis.call('HGET', meta, 'gen')
local first = (n == 1 and ARGV[12]) or '*'
redis.call('XADD', logkey, 'MAXLEN', '~', ARGV[5], rev .. '-0', 'rev', rev, 'op', ARGV[2],
  'id', first, 'actor', ARGV[3], 'ts', ARGV[4], 'txid', ARGV[9], 'digest', digest,
  'changes', cmsgpack.pack(changes))
redis.call('SPUBLISH', channel, 'rev ' .. rev)
return {rev, gen, digest}
"""
