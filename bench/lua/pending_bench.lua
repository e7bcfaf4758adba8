-- What a worker's load of the shared payload costs, and what it leaves to the
-- first request of each route (bench/nginx_pending.py): run inside an nginx
-- worker with the rulegate modules of the tree under test. The payload is the
-- one the syncing worker writes (this code's mark: checked and compiled there).
local mp = require("MessagePack")
local router = require("rulegate.router")
local sync = require("rulegate.sync")

local _M = {}

local clock = os.clock

-- A split rule as bench/reload.py's make_rule(i): 100 hosts x 100 paths, one rule a route.
local function rule(i)
    local id = string.format("r%05d", i)
    local route = { host = "svc" .. (i % 100) .. ".example.com", path = "/api/v" .. math.floor(i / 100) }
    return id, mp.pack({ id = id, kind = "split", key = { source = "header", name = "x-uid" }, default = "stable",
                         route = route,
                         policies = { { type = "uid_suffix", suffixes = { "1", "7" }, upstream = "canary" } } })
end

local function requests(n)
    local out = {}
    for i = 0, n - 1 do
        out[#out + 1] = { host = "svc" .. (i % 100) .. ".example.com", path = "/api/v" .. math.floor(i / 100) .. "/x",
                          method = "GET", ip = "10.0.0.1", now = 100, headers = { ["x-uid"] = "3" }, cookies = {},
                          args = {} }
    end
    return out
end

local function pass(rs, reqs)
    local t0 = clock()
    for i = 1, #reqs do
        local d = router.decide(rs, reqs[i])
        if d.rule_id == nil then
            error("request " .. i .. " matched no rule")
        end
    end
    return (clock() - t0) * 1000
end

-- The heap after a full collection, JIT traces dropped first (a trace keeps the
-- closures it was recorded with, and a set through them; a gateway worker drops
-- its traces when it installs a whole set).
local function heap()
    jit.flush()
    collectgarbage()
    collectgarbage()
    return collectgarbage("count")
end


local function median(xs)
    table.sort(xs)
    return xs[math.floor((#xs + 1) / 2)]
end

-- GET /run?rules=N&reps=R: JSON {load_ms, load_steady_ms, first_ms, second_ms, heap_load_kb, heap_first_kb, reps}
function _M.run()
    local n = tonumber(ngx.var.arg_rules) or 10000
    local reps = tonumber(ngx.var.arg_reps) or 5
    local dict = ngx.shared.rulegate
    sync.reserve_strings() -- as a gateway's master does: the workers' string table grown once, kept grown
    dict:flush_all()
    local L = sync.new_loader({ shm = dict, namespace = "bench" }, 7, "g")
    for i = 0, n - 1 do
        sync.loader_add(L, rule(i))
    end
    local loaded = assert(sync.loader_finish(L))
    assert(loaded.writer:finish("v1"))
    L, loaded = nil, nil
    local reqs = requests(n)
    local load, first, second, heap_load, heap_first = {}, {}, {}, {}, {}
    for _ = 1, reps do
        heap()
        local t0 = clock()
        local rs = assert(sync.compile_current(dict, "v1"))
        load[#load + 1] = (clock() - t0) * 1000
        heap_load[#heap_load + 1] = heap()
        first[#first + 1] = pass(rs, reqs)
        second[#second + 1] = pass(rs, reqs)
        heap_first[#heap_first + 1] = heap()
    end
    -- loads back to back with the previous set served meanwhile: the collector's share included
    collectgarbage()
    local serving = assert(sync.compile_current(dict, "v1"))
    local t0 = clock()
    for _ = 1, reps do
        local rs = assert(sync.compile_current(dict, "v1"))
        serving = rs
    end
    local steady = (clock() - t0) * 1000 / reps
    serving = nil
    dict:flush_all()
    ngx.say(require("cjson").encode({
        load_ms = median(load), load_steady_ms = steady, first_ms = median(first), second_ms = median(second),
        heap_load_kb = median(heap_load), heap_first_kb = median(heap_first), reps = reps,
    }))
end

return _M
