-- Outcome counts (lua/rulegate/outcomes.lua): status classes and latency buckets as
-- rulegate/outcomes.py gives them (tests/unit/test_outcomes.py's cases), summed by
-- the flush into the shared dict and read back in the heartbeat's wire form.
local outcomes = require("rulegate.outcomes")

local CLASSES = { [100] = 1, [200] = 2, [299] = 2, [302] = 3, [404] = 4, [500] = 5, [599] = 5, [0] = 0,
                  [600] = 0, [-1] = 0, [99] = 0 }
local BUCKETS = { { 0, 0 }, { -3, 0 }, { 4.99, 0 }, { 5, 1 }, { 9.9, 1 }, { 10, 2 }, { 10000, 11 }, { 1e9, 11 } }


local function clear(dict)
    for _, key in ipairs(dict:get_keys(0)) do
        if key:sub(1, 2) == "o:" then
            dict:delete(key)
        end
    end
end


return function(t)
    t.it("latency buckets are half-open at each bound", function()
        for _, case in ipairs(BUCKETS) do
            t.eq(outcomes.bucket(case[1]), case[2], "latency " .. case[1])
        end
    end)

    t.it("counts flushed into the shared dict read back by class and bucket", function()
        local dict = ngx.shared.rulegate
        clear(dict)
        dict:set("o:since", 1234.5)
        local want_classes, n = { 0, 0, 0, 0, 0, 0 }, 0
        for status, cls in pairs(CLASSES) do
            outcomes.count("r1", "canary", status, 3)
            want_classes[cls + 1] = want_classes[cls + 1] + 1
            n = n + 1
        end
        local want_latency = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
        for _, case in ipairs(BUCKETS) do
            outcomes.count("", "@pass", 200, case[1])
            want_latency[case[2] + 1] = want_latency[case[2] + 1] + 1
        end
        t.truthy(outcomes.flush(dict) > 0)
        t.eq(outcomes.flush(dict), 0, "nothing pending: no writes")
        local wire = outcomes.report(dict)
        t.eq(wire.since, 1234.5)
        t.eq(#wire.counts, 2)
        local by_key = {}
        for _, c in ipairs(wire.counts) do
            by_key[c[1] .. "\t" .. c[2]] = c
        end
        t.eq(by_key["r1\tcanary"][3], want_classes)
        t.eq(by_key["r1\tcanary"][4], { n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })
        t.eq(by_key["\t@pass"][3], { 0, 0, #BUCKETS, 0, 0, 0 })
        t.eq(by_key["\t@pass"][4], want_latency)
        clear(dict)
        t.eq(outcomes.report(dict), nil, "nothing counted: no outcomes map")
    end)
end
