"""The server-side compare-and-set commit script (one atomic change of a namespace).

KEYS: rules, rev, log, meta, events channel (all under one hash tag, so one slot).
ARGV: expected_rev (-1 = no check), op, actor, ts, log_maxlen, max_rules, generation candidate,
      create_only ("1"/"0"), txid, n, then n pairs (rule id, msgpack value or "" to delete).
Replies {rev, generation} or an error "RGCONFLICT <rev>", "RGEXISTS <id>", "RGNOTFOUND <id>",
"RGLIMIT <count>", "RGCORRUPT <reason>". Nothing is written unless every check passes.
Rule content only travels as ARGV: it is data, never Lua source.
"""

COMMIT_LUA = r"""
local rules, revkey, logkey, meta, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
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
for i = 1, n do
  local c = changes[i]
  if c[3] then redis.call('HSET', rules, c[1], c[3]) else redis.call('HDEL', rules, c[1]) end
end
local rev = redis.call('INCR', revkey)
if redis.call('HSETNX', meta, 'gen', ARGV[7]) == 1 then
  redis.call('HSET', meta, 'created', ARGV[4])
end
local gen = redis.call('HGET', meta, 'gen')
local first = (n == 1 and ARGV[11]) or '*'
redis.call('XADD', logkey, 'MAXLEN', '~', ARGV[5], rev .. '-0', 'rev', rev, 'op', ARGV[2],
  'id', first, 'actor', ARGV[3], 'ts', ARGV[4], 'txid', ARGV[9], 'changes', cmsgpack.pack(changes))
redis.call('SPUBLISH', channel, 'rev ' .. rev)
return {rev, gen}
"""
