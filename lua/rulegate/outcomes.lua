-- Outcome counts (docs/rules.md "Outcome counts"; wire form rulegate/outcomes.py):
-- per (rule id, upstream), by status class and latency bucket, cumulative since
-- "o:since". Log phase: count() adds to a per-worker table (no shared-dict
-- access). Every worker's timer flushes its table into the shared dict (one incr
-- per non-zero counter of a key per flush) and publishes its breakers' states
-- under its worker id; the heartbeat (sync.lua) and status() read the totals.
local cjson = require("cjson.safe")
local breaker = require("rulegate.breaker")

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local now = ngx.now
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local type = type
local next = next
local floor = math.floor
local find = string.find
local sub = string.sub
local sort = table.sort
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local MAX_KEYS = 1000 -- rulegate/outcomes.py MAX_OUTCOME_KEYS: (rule, upstream) keys per gateway; later ones are not counted
local N_CLASSES, N_LATENCY = 6, 12
local SLOTS = N_CLASSES + N_LATENCY
local BOUNDS = { 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000 } -- rulegate/outcomes.py LAT_BOUNDS_MS
local STATES = { breaker.CLOSED, breaker.OPEN, breaker.HALF_OPEN }
_M.MAX_KEYS, _M.BOUNDS = MAX_KEYS, BOUNDS

-- shared-dict keys: "o:c:<rule>\t<upstream>\t<slot>" totals (slot 1..6 classes c0..c5, 7..18
-- latency buckets), "o:i:<rule>\t<upstream>" marks an indexed key, "o:k:<i>" (i = 1..o:nkeys)
-- name them; "o:b:<worker id>" a worker's breaker states (JSON, expiring)
local K = {
    count = "o:c:", indexed = "o:i:", index = "o:k:", nkeys = "o:nkeys", since = "o:since",
    breakers = "o:b:", flushes = "o:flushes", writes = "o:writes",
}
_M.KEYS = K

local counts = {} -- this worker's outcomes since its last flush: rule id -> upstream -> { SLOTS counts }
local pending = false
local known = {} -- keys this worker saw indexed
local published = false -- this worker's breaker states are in the dict


-- The latency bucket (0-based) of a latency in ms: how many bounds are <= it.
local function bucket(latency_ms)
    local i = 0
    while i < 11 and latency_ms >= BOUNDS[i + 1] do
        i = i + 1
    end
    return i
end
_M.bucket = bucket


-- Count one outcome (the log phase: table lookups and two increments).
function _M.count(rule_id, upstream, status, latency_ms)
    local by_upstream = counts[rule_id]
    if by_upstream == nil then
        by_upstream = {}
        counts[rule_id] = by_upstream
    end
    local c = by_upstream[upstream]
    if c == nil then
        c = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
        by_upstream[upstream] = c
    end
    local cls = (status >= 100 and status <= 599) and floor(status / 100) or 0
    local b = N_CLASSES + 1 + bucket(latency_ms)
    c[cls + 1] = c[cls + 1] + 1
    c[b] = c[b] + 1
    pending = true
end


-- true when key is indexed in the dict (indexing it now if there is room).
local function index_key(dict, key)
    if known[key] then
        return true
    end
    if dict:get(K.indexed .. key) == nil then
        if (dict:get(K.nkeys) or 0) >= MAX_KEYS then
            return false
        end
        local ok, err = dict:add(K.indexed .. key, true)
        if ok then -- this worker indexes it (once per key per gateway)
            local i = dict:incr(K.nkeys, 1, 0)
            if i then
                dict:set(K.index .. i, key)
            end
        elseif err ~= "exists" then
            log(ERR, "rulegate: cannot index outcome counts in the shared dict: ", err)
            return false
        end
    end
    known[key] = true
    return true
end


-- Add this worker's counts to the shared dict; returns the shared-dict writes made.
function _M.flush(dict)
    if not pending then
        return 0
    end
    local batch = counts
    counts, pending = {}, false
    local writes = 0
    for rule_id, by_upstream in pairs(batch) do
        for upstream, c in pairs(by_upstream) do
            local key = rule_id .. "\t" .. upstream
            if index_key(dict, key) then
                local prefix = K.count .. key .. "\t"
                for slot = 1, SLOTS do
                    local n = c[slot]
                    if n > 0 then
                        local _, err = dict:incr(prefix .. slot, n, 0)
                        writes = writes + 1
                        if err then
                            log(ERR, "rulegate: cannot count outcomes in the shared dict: ", err)
                        end
                    end
                end
            end
        end
    end
    dict:incr(K.flushes, 1, 0)
    dict:incr(K.writes, writes + 2, 0)
    return writes + 2
end


-- Publish this worker's breaker states ({rule id: state}) under its worker id, expiring after ttl s.
function _M.publish_breakers(dict, ttl)
    local key = K.breakers .. tostring(ngx.worker.id() or 0)
    local states = breaker.snapshot_all(now())
    if next(states) == nil then
        if published then
            dict:delete(key)
            published = false
        end
        return
    end
    local out = {}
    for rule_id, s in pairs(states) do
        out[rule_id] = s.state
    end
    local ok, err = dict:set(key, cjson.encode(out), ttl)
    if not ok then
        log(ERR, "rulegate: cannot publish breaker states in the shared dict: ", err)
    end
    published = true
end


local function flush_timer(premature, dict, ttl) -- also at exit (premature): the dict outlives the worker
    local ok, err = pcall(_M.flush, dict)
    if not ok then
        log(ERR, "rulegate: outcome flush failed: ", err)
    end
    if not premature then
        ok, err = pcall(_M.publish_breakers, dict, ttl)
        if not ok then
            log(ERR, "rulegate: breaker state publish failed: ", err)
        end
    end
end


-- Start this worker's flush timer (init_worker); `interval` in seconds.
function _M.start(dict, interval)
    dict:add(K.since, now())
    local ok, err = ngx.timer.every(interval, flush_timer, dict, interval * 3 + 2)
    if not ok then
        return nil, "cannot start the outcome flush timer: " .. tostring(err)
    end
    return true
end


local function totals_of(dict, key)
    local prefix = K.count .. key .. "\t"
    local classes, latency, requests = {}, {}, 0
    for slot = 1, N_CLASSES do
        classes[slot] = dict:get(prefix .. slot) or 0
        requests = requests + classes[slot]
    end
    for slot = 1, N_LATENCY do
        latency[slot] = dict:get(prefix .. (N_CLASSES + slot)) or 0
    end
    return classes, latency, requests
end


-- The indexed (rule, upstream) keys with their totals: a list of { rule, upstream, classes, latency, requests },
-- the busiest first.
local function read_all(dict)
    local out, seen = {}, {}
    for i = 1, dict:get(K.nkeys) or 0 do
        local key = dict:get(K.index .. i)
        if key and not seen[key] then
            seen[key] = true
            local tab = find(key, "\t", 1, true)
            local classes, latency, requests = totals_of(dict, key)
            if requests > 0 then
                out[#out + 1] = { sub(key, 1, tab - 1), sub(key, tab + 1), classes, latency, requests }
            end
        end
    end
    sort(out, function(a, b)
        if a[5] ~= b[5] then
            return a[5] > b[5]
        end
        return a[1] .. "\t" .. a[2] < b[1] .. "\t" .. b[2]
    end)
    return out
end


-- The heartbeat's "outcomes" map (rulegate/outcomes.py wire form), nil when nothing was counted.
function _M.report(dict)
    local list = read_all(dict)
    if #list == 0 then
        return nil
    end
    local wire = {}
    for i, e in ipairs(list) do
        wire[i] = { e[1], e[2], e[3], e[4] }
    end
    return { since = dict:get(K.since) or now(), counts = wire }
end


-- Every worker's breakers (as last published): rule id -> { closed = n, open = n, half_open = n }; nil when none.
function _M.breakers(dict)
    local out
    for id = 0, ngx.worker.count() - 1 do
        local states = cjson.decode(dict:get(K.breakers .. id) or "null")
        if type(states) == "table" then
            for rule_id, state in pairs(states) do
                out = out or {}
                local c = out[rule_id]
                if c == nil then
                    c = {}
                    for _, s in ipairs(STATES) do
                        c[s] = 0
                    end
                    out[rule_id] = c
                end
                if c[state] then
                    c[state] = c[state] + 1
                end
            end
        end
    end
    return out
end


-- The totals since nginx started, summed over the workers (status JSON).
function _M.totals(dict)
    local list = {}
    for i, e in ipairs(read_all(dict)) do
        list[i] = { rule = e[1], upstream = e[2], classes = e[3], latency = e[4], requests = e[5] }
    end
    return {
        since = dict:get(K.since), counts = list, flushes = dict:get(K.flushes) or 0,
        writes = dict:get(K.writes) or 0,
    }
end


return _M
