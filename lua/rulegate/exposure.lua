-- Exposure counts: decisions per (rule id, target) of this gateway.
-- Request path: count(d) adds 1 to a per-worker Lua table keyed by the
-- decision table itself (decisions are shared per rule, router.lua), no
-- shared-dict access. Every worker's timer flushes its table into the shared
-- dict: one incr per (rule, target) key per flush, plus two for the flush
-- counters. The heartbeat (sync.lua, under the sync lock) turns the shared
-- totals into the counts since the previous heartbeat (rulegate/fleet.py
-- Exposure); status() shows the totals summed over the workers.
local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local now = ngx.now
local pairs = pairs
local pcall = pcall
local ipairs = ipairs
local sort = table.sort
local find = string.find
local sub = string.sub
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local MAX_KEYS = 1000 -- rulegate/fleet.py MAX_EXPOSURE_KEYS: distinct keys per gateway, the rest count as "other"
_M.MAX_KEYS = MAX_KEYS

-- shared-dict keys: "x:c:<rule>\t<target>" totals, "x:p:..." the totals at the
-- previous heartbeat, "x:t:<rule>" last match; "x:k:<i>" (i = 1..x:nkeys) name the keys
local K = {
    count = "x:c:", reported = "x:p:", last = "x:t:", index = "x:k:", nkeys = "x:nkeys",
    other = "x:other", other_reported = "x:other_p", since = "x:since", beat_at = "x:beat_at",
    flushes = "x:flushes", writes = "x:writes",
}
_M.KEYS = K

local counts = {} -- this worker's decisions since its last flush: decision table -> n
local pending = false
local known = {} -- keys this worker already saw in the shared dict


-- Count one decision (the request path: one table lookup and store).
function _M.count(d)
    counts[d] = (counts[d] or 0) + 1
    pending = true
end


local function key_of(d)
    local target = d.action == "proxy" and d.upstream or ("@" .. d.action)
    return (d.rule_id or "") .. "\t" .. target
end


-- Add this worker's counts to the shared dict; returns the shared-dict writes made.
function _M.flush(dict)
    if not pending then
        return 0
    end
    local batch = counts
    counts, pending = {}, false
    local merged = {} -- two decision tables (an old and a new rule set) can share a key
    for d, n in pairs(batch) do
        local key = key_of(d)
        merged[key] = (merged[key] or 0) + n
    end
    local writes = 0
    for key, n in pairs(merged) do
        local ckey = K.count .. key
        if not known[key] and dict:get(ckey) == nil and (dict:get(K.nkeys) or 0) >= MAX_KEYS then
            ckey = K.other
        end
        local total, err = dict:incr(ckey, n, 0)
        writes = writes + 1
        if not total then
            log(ERR, "rulegate: cannot count decisions in the shared dict: ", err)
        elseif ckey ~= K.other and not known[key] then
            known[key] = true
            if total == n then -- this worker created the key: index it (once per key per gateway)
                local i = dict:incr(K.nkeys, 1, 0)
                if i then
                    dict:set(K.index .. i, key)
                end
                writes = writes + 2
            end
        end
    end
    dict:incr(K.flushes, 1, 0)
    dict:incr(K.writes, writes + 2, 0)
    return writes + 2
end


local function flush_timer(_premature, dict) -- also at exit (premature): the dict outlives the worker
    local ok, err = pcall(_M.flush, dict)
    if not ok then
        log(ERR, "rulegate: exposure flush failed: ", err)
    end
end


-- Start this worker's flush timer (init_worker); `interval` in seconds.
function _M.start(dict, interval)
    dict:add(K.since, now())
    local ok, err = ngx.timer.every(interval, flush_timer, dict)
    if not ok then
        return nil, "cannot start the exposure flush timer: " .. tostring(err)
    end
    return true
end


-- The indexed keys, each once (a counter the dict evicted is indexed again when re-created).
local function indexed(dict)
    local keys, seen = {}, {}
    for i = 1, dict:get(K.nkeys) or 0 do
        local key = dict:get(K.index .. i)
        if key and not seen[key] then
            seen[key] = true
            keys[#keys + 1] = key
        end
    end
    return keys
end


local function split(key)
    local tab = find(key, "\t", 1, true)
    return sub(key, 1, tab - 1), sub(key, tab + 1)
end


local function by_count(a, b)
    if a[3] ~= b[3] then
        return a[3] > b[3]
    end
    return a[1] .. "\t" .. a[2] < b[1] .. "\t" .. b[2]
end


-- The heartbeat's "exposure" map (rulegate/fleet.py Exposure): the counts
-- since the previous call; call it from one worker at a time (the sync lock).
function _M.report(dict, t)
    local beat_at = dict:get(K.beat_at) or dict:get(K.since) or t
    dict:set(K.beat_at, t)
    local out, last = {}, {}
    for _, key in ipairs(indexed(dict)) do
        local total = dict:get(K.count .. key) or 0
        local delta = total - (dict:get(K.reported .. key) or 0)
        local rule, target = split(key)
        if delta > 0 then
            dict:set(K.reported .. key, total)
            out[#out + 1] = { rule, target, delta }
            if rule ~= "" then
                dict:set(K.last .. rule, t)
            end
        end
        if rule ~= "" and last[rule] == nil then
            last[rule] = dict:get(K.last .. rule)
        end
    end
    sort(out, by_count)
    local other_total = dict:get(K.other) or 0
    local other = other_total - (dict:get(K.other_reported) or 0)
    dict:set(K.other_reported, other_total)
    return {
        since = dict:get(K.since) or t, window = t - beat_at,
        counts = out, other = other, last_match = last, -- empty tables pack as maps: fleet.py reads {} as none
    }
end


-- The totals since nginx started, summed over the workers (status JSON).
function _M.totals(dict)
    local rules, targets, list = {}, {}, {}
    local total = 0
    for _, key in ipairs(indexed(dict)) do
        local n = dict:get(K.count .. key) or 0
        local rule, target = split(key)
        list[#list + 1] = { rule = rule, target = target, count = n, last_match = dict:get(K.last .. rule) }
        rules[rule] = (rules[rule] or 0) + n
        targets[target] = (targets[target] or 0) + n
        total = total + n
    end
    sort(list, function(a, b) return a.count > b.count end)
    local other = dict:get(K.other) or 0
    return {
        total = total + other, other = other, since = dict:get(K.since),
        flushes = dict:get(K.flushes) or 0, writes = dict:get(K.writes) or 0,
        counts = list, rules = rules, targets = targets,
    }
end


return _M
