-- sync.without_gc: a yielding full load runs with the collector held off and
-- restarted after it (sync.lua, "Garbage collection around a full load").
local mp = require("MessagePack")
local payload = require("rulegate.payload")
local router = require("rulegate.router")
local sync = require("rulegate.sync")

local dict = ngx.shared.rulegate -- the spec harness's 4m dict

local function running()
    return collectgarbage("isrunning")
end

local function pause()
    ngx.sleep(0)
end

return function(t)
    t.it("holds the collector off in fn, restarts it after; results and errors go through", function()
        local seen = {}
        local a, b, c = sync.without_gc(pause, function(x)
            seen[#seen + 1] = running()
            -- nested (a background compile during the sync's load): one stop, one restart
            local inner = sync.without_gc(pause, function()
                seen[#seen + 1] = running()
                return "inner"
            end)
            seen[#seen + 1] = running()
            return x, inner, nil
        end, "x")
        t.eq({ a, b, c, seen, running() }, { "x", "inner", nil, { false, false, false }, true })
        local ok, err = pcall(sync.without_gc, pause, function()
            error("boom", 0)
        end)
        t.eq({ ok, err, running() }, { false, "boom", true })
    end)

    t.it("a yielding compile of the payload holds the collector and decides as an unheld one", function()
        dict:flush_all()
        local raw = {}
        for i = 1, 30 do
            local id = "r" .. i
            raw[id] = mp.pack({ id = id, kind = "split", route = { host = "h" .. i % 3 .. ".example.com",
                                path = "/" .. id }, key = { source = "header", name = "x-uid" },
                                default = "stable",
                                policies = { { type = "uid_suffix", suffixes = { "1" }, upstream = "canary" } } })
        end
        assert(payload.write(dict, { ver = "v1", namespace = "prod", generation = "g", revision = 3,
                                     written_at = 9 }, raw))
        local held = {}
        local rs = assert(sync.compile_current(dict, "v1", function()
            held[#held + 1] = running()
            ngx.sleep(0)
        end))
        local plain = assert(sync.compile_current(dict, "v1"))
        local same = true
        for i = 1, 30 do
            local req = { host = "h" .. i % 3 .. ".example.com", path = "/r" .. i, method = "GET", ip = "10.0.0.1",
                          now = 100, headers = { ["x-uid"] = tostring(i) }, cookies = {}, args = {} }
            local d1, d2 = router.decide(rs, req), router.decide(plain, req)
            same = same and d1.upstream == d2.upstream and d1.rule_id == d2.rule_id and d1.action == d2.action
        end
        t.eq({ #held > 0, held[1], held[#held], rs.count, same, running() }, { true, false, false, 30, true, true })
        dict:flush_all()
    end)
end
