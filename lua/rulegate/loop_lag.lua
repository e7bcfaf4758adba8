-- How late each worker's event loop runs a timer (the loop lag): what any
-- request waits behind whatever holds the loop (a long Lua call, a collector
-- step, nginx's own work) or behind the machine (the worker runnable and no
-- CPU running it). Each worker's timer, every `interval` seconds (option
-- "loop_lag_interval"), compares when it ran with when it was due (monotonic
-- clock) and counts the lateness in a histogram. A lag during which the worker
-- ran (its thread's CPU clock) for at least half of it also counts as held: the
-- worker's own work held the loop, not the machine.
--
-- A sampler: a hold of d seconds shorter than the interval is seen with a
-- chance of about d / interval, as at most d; a longer one is always seen, as
-- at least d - interval. Each worker adds its counts to the shared dict every
-- FLUSH_EVERY seconds (one incr per bucket that changed); status() sums them.
-- Nothing here runs on the request path.
local ffi = require("ffi")

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local tonumber = tonumber
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

-- upper bounds of the histogram's buckets in seconds; the last count is above them
local BOUNDS = { 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1 }
_M.BOUNDS = BOUNDS
local SLOTS = #BOUNDS + 1
local FLUSH_EVERY = 1 -- seconds

-- shared-dict keys (all workers): "lag:late:<slot>", "lag:held:<slot>" counts,
-- "lag:sum" seconds of lateness, "lag:interval" the probe's interval
local K = { late = "lag:late:", held = "lag:held:", sum = "lag:sum", interval = "lag:interval" }
_M.KEYS = K

pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } rulegate_timespec;
int rulegate_clock_gettime(int clk_id, rulegate_timespec *tp) __asm__("clock_gettime");
]])
local C = ffi.C
local CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID = 1, 3 -- Linux
local ts = ffi.new("rulegate_timespec")


-- Seconds on clock clk (CLOCK_THREAD_CPUTIME_ID: the CPU time of the calling
-- thread, a worker's event loop), or nil when it cannot be read.
local function clock(clk)
    if C.rulegate_clock_gettime(clk, ts) ~= 0 then
        return nil
    end
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end


-- The slot of a lateness of s seconds (1 .. SLOTS).
function _M.slot(s)
    for i = 1, #BOUNDS do
        if s <= BOUNDS[i] then
            return i
        end
    end
    return SLOTS
end


-- Count one tick late by `late` seconds into counts (a late and a held list of
-- SLOTS numbers): held when the worker ran for at least half of it (ran: its
-- CPU seconds since the tick before; nil: not known, not held). A hold of the
-- loop makes the worker run for the whole lateness and more; when the machine
-- did not run it (or it was stopped), it ran only in the interval's own work.
function _M.observe(counts, late, ran)
    if late < 0 then
        late = 0
    end
    local slot = _M.slot(late)
    counts.late[slot] = counts.late[slot] + 1
    counts.sum = counts.sum + late
    if ran and late > 0 and ran >= late / 2 then
        counts.held[slot] = counts.held[slot] + 1
    end
end


local function new_counts()
    local c = { late = {}, held = {}, sum = 0 }
    for i = 1, SLOTS do
        c.late[i], c.held[i] = 0, 0
    end
    return c
end


local function flush_list(dict, prefix, list)
    for i = 1, SLOTS do
        local n = list[i]
        if n > 0 then
            local _, err = dict:incr(prefix .. i, n, 0)
            if err then
                log(ERR, "rulegate: cannot count the loop lag in the shared dict: ", err)
            end
            list[i] = 0
        end
    end
end


-- Add counts to the shared dict (one incr per non-zero slot) and zero them.
function _M.flush(dict, counts)
    flush_list(dict, K.late, counts.late)
    flush_list(dict, K.held, counts.held)
    if counts.sum > 0 then
        dict:incr(K.sum, counts.sum, 0)
        counts.sum = 0
    end
end


-- Start this worker's probe: a timer every interval seconds. true, or nil, err.
function _M.start(dict, interval)
    if not clock(CLOCK_MONOTONIC) then
        return nil, "cannot read the monotonic clock: the loop lag is not measured"
    end
    dict:set(K.interval, interval)
    local counts = new_counts()
    -- the first run only sets the baseline: before it, the worker was starting (the rest of
    -- init_worker, lua-nginx-module's full collection after it), and no request could wait
    local last, last_cpu, flushed = nil, nil, 0
    local ok, err = ngx.timer.every(interval, function(premature)
        if premature then
            _M.flush(dict, counts)
            return
        end
        local t, cpu = clock(CLOCK_MONOTONIC), clock(CLOCK_THREAD_CPUTIME_ID)
        if last then
            _M.observe(counts, t - last - interval, cpu and last_cpu and cpu - last_cpu)
        end
        last, last_cpu = t, cpu
        if t - flushed >= FLUSH_EVERY then
            flushed = t
            _M.flush(dict, counts)
        end
    end)
    if not ok then
        return nil, "cannot start the loop lag timer: " .. tostring(err)
    end
    return true
end


-- Every worker's counts as flushed so far: {interval, bounds, late, held
-- (lists of SLOTS counts, not cumulative), samples, sum}, or nil when no
-- worker runs the probe.
function _M.totals(dict)
    local interval = dict:get(K.interval)
    if not interval then
        return nil
    end
    local late, held, samples = {}, {}, 0
    for i = 1, SLOTS do
        late[i] = dict:get(K.late .. i) or 0
        held[i] = dict:get(K.held .. i) or 0
        samples = samples + late[i]
    end
    return { interval = interval, bounds = BOUNDS, late = late, held = held, samples = samples,
             sum = dict:get(K.sum) or 0 }
end


return _M
