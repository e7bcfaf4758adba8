-- A pending rule whose compile fails at its route's first request (a rule the
-- check passed that the router cannot compile: never a valid rule) is left out
-- of its route, said once and counted; the route's other rules still decide and
-- no request fails for it (router.lua, compile_route).
local mp = require("MessagePack")
local router = require("rulegate.router")

local function split(id, policy)
    return mp.pack({ id = id, kind = "split", route = { host = "a.example.com", path = "/x" },
                     key = { source = "header", name = "x-uid" }, default = "stable", policies = { policy } })
end

local function request(uid)
    return { host = "a.example.com", path = "/x/y", method = "GET", ip = "10.0.0.1", now = 100,
             headers = { ["x-uid"] = uid }, cookies = {}, args = {} }
end

return function(t)
    t.it("a pending rule that does not compile is left out, said once and counted", function()
        local said, saved = {}, router.on_compile_failure
        router.on_compile_failure = function(id, err)
            said[#said + 1] = { id, err }
        end
        local ok, err = pcall(function()
            -- "bad" is no CIDR: compile_policy's assert fails (the schema would refuse it; placed pending unchecked)
            local good = split("a-good", { type = "uid_suffix", suffixes = { "7" }, upstream = "canary" })
            local bad = split("b-bad", { type = "ip_cidr", cidrs = { "bad" }, upstream = "internal" })
            local before = router.compile_failures
            local sets = {}
            for n = 1, 2 do -- two sets sharing the bad item: said once
                local rs = router.new_set(n)
                local gi = router.add_pending(rs, "a-good", good, "sig1", "a.example.com", "/x", "split")
                local bi = router.add_pending(rs, "b-bad", bad, "sig2", "a.example.com", "/x", "split")
                if n == 2 then -- the same items, as a set loaded after another shares them
                    rs = router.new_set(n)
                    router.add_compiled(rs, sets[1].gi)
                    router.add_compiled(rs, sets[1].bi)
                    gi, bi = sets[1].gi, sets[1].bi
                end
                sets[n] = { rs = router.finish(rs), gi = gi, bi = bi }
            end
            for _, set in ipairs(sets) do
                local d = router.decide(set.rs, request("17"))
                t.eq({ d.upstream, d.rule_id }, { "canary", "a-good" })
                d = router.decide(set.rs, request("18"))
                t.eq({ d.upstream, d.rule_id }, { "stable", "a-good" })
            end
            t.eq(router.compile_failures, before + 1)
            t.eq(#said, 1)
            t.eq(said[1][1], "b-bad")
            t.truthy(tostring(said[1][2]):find("bad", 1, true), tostring(said[1][2]))
        end)
        router.on_compile_failure = saved
        t.truthy(ok, err)
    end)
end
