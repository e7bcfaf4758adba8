-- sync.gc_held: the collector is held off while fn runs and runs again after
-- it, whatever fn does; fn's results and errors pass through.
local sync = require("rulegate.sync")

-- true when allocating `mib` MiB of garbage leaves the heap below `limit` MiB
-- above where it started (the collector is running)
local function collects(mib, limit)
    local base = collectgarbage("count")
    for _ = 1, mib * 64 do
        local t = {}
        for i = 1, 2000 do -- ~16 KiB
            t[i] = i
        end
    end
    return collectgarbage("count") - base < limit * 1024
end

return function(t)
    t.it("results pass through; the collector is held during fn and runs after it", function()
        local during
        local a, b, c = sync.gc_held(function(x)
            during = collects(32, 24)
            return x, nil, "c"
        end, "a")
        t.eq({ a, b, c }, { "a", nil, "c" })
        t.falsy(during, "garbage piles up while held")
        t.truthy(collects(64, 48), "the collector runs after")
    end)

    t.it("an error in fn is raised again and the collector runs after it", function()
        local ok, err = pcall(sync.gc_held, function()
            collects(8, 0)
            error("boom", 0)
        end)
        t.eq({ ok, err }, { false, "boom" })
        t.truthy(collects(64, 48), "the collector runs after an error")
    end)

    t.it("the collector runs after an fn that allocated little (no cycle forced)", function()
        t.eq(sync.gc_held(function() return 1 end), 1)
        t.truthy(collects(64, 48), "the collector runs after")
    end)

    t.it("nested holds release on the last one", function()
        sync.gc_held(function()
            sync.gc_held(function() end)
            t.falsy(collects(32, 24), "still held inside the outer hold")
        end)
        t.truthy(collects(64, 48), "the collector runs after the outer hold")
    end)
end
