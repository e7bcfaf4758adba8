"""The server-side compare-and-set commit script (one atomic change of a namespace).

KEYS: rules, rev, log, meta (all under one hash tag, so one slot).
ARGV: expected_rev (-1 = no check), op, actor, ts, log_maxlen, max_rules, generation candidate,
      create_only ("1"/"0"), txid, n, then n pairs (rule id, msgpack value or "" to delete), then the
      events channel. The channel is not a declared key: during a slot migration Redis treats a declared
      key that does not exist (a channel never does) as missing and answers TRYAGAIN to every commit.
Keeps meta field `digest` (rulegate/digest.py: XOR of SHA-1(id "\n" value) over the rules, computed
once from the whole hash when absent, then O(change)) and writes it into the log entry too.
Replies {rev, generation, digest} or an error "RGCONFLICT <rev>", "RGEXISTS <id>", "RGNOTFOUND <id>",
"RGLIMIT <count>", "RGCORRUPT <reason>". Nothing is written unless every check passes.
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
local n = tonumber(ARGV[10])
local changes, count = {}, redis.call('HLEN', rules)
for i = 1, n do
  local id, val = ARGV[9 + 2 * i], ARGV[10 + 2 * i]
  local before = redis.call('HGET', rules, id)
  if ARGV[8] == '1' and before then return redis.error_reply('RGEXISTS ' .. id) end
  if val == '' and not before then return redis.error_reply('RGNOTFOUND ' .. id) end
  if val ~= '' and not before then count = count + 1 end
  if val == '' then count = count - 1 end
  changes[i] = {id, before or false, (val ~= '' and val) or false}
end
if count > tonumber(ARGV[6]) then return redis.error_reply('RGLIMIT ' .. count) end
local function xor_hex(a, b)
  local out = {}
  for i = 1, 33, 8 do
    out[#out + 1] = bit.tohex(bit.bxor(tonumber(string.sub(a, i, i + 7), 16),
                                       tonumber(string.sub(b, i, i + 7), 16)), 8)
  end
  return table.concat(out)
end
local digest = redis.call('HGET', meta, 'digest')
if not digest or #digest ~= 40 then
  digest = string.rep('0', 40)
  local flat = redis.call('HGETALL', rules)
  for i = 1, #flat, 2 do
    digest = xor_hex(digest, redis.sha1hex(flat[i] .. '\n' .. flat[i + 1]))
  end
end
for i = 1, n do
  local c = changes[i]
  if c[2] then digest = xor_hex(digest, redis.sha1hex(c[1] .. '\n' .. c[2])) end
  if c[3] then digest = xor_hex(digest, redis.sha1hex(c[1] .. '\n' .. c[3])) end
  if c[3] then redis.call('HSET', rules, c[1], c[3]) else redis.call('HDEL', rules, c[1]) end
end
redis.call('HSET', meta, 'digest', digest)
local rev = redis.call('INCR', revkey)
if redis.call('HSETNX', meta, 'gen', ARGV[7]) == 1 then
  redis.call('HSET', meta, 'created', ARGV[4])
end
local gen = redis.call('HGET', meta, 'gen')
local first = (n == 1 and ARGV[11]) or '*'
redis.call('XADD', logkey, 'MAXLEN', '~', ARGV[5], rev .. '-0', 'rev', rev, 'op', ARGV[2],
  'id', first, 'actor', ARGV[3], 'ts', ARGV[4], 'txid', ARGV[9], 'digest', digest,
  'changes', cmsgpack.pack(changes))
redis.call('SPUBLISH', channel, 'rev ' .. rev)
return {rev, gen, digest}
"""
