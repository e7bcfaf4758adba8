-- The breaker state machine passes tests/vectors/breaker.json's sequences
-- (rulegate/breaker.py runs the same file in tests/unit/test_breaker.py).
local cjson = require("cjson")
local breaker = require("rulegate.breaker")
local schema = require("rulegate.schema")

local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/")
local f = assert(io.open(here .. "/../../vectors/breaker.json", "rb"))
local data = cjson.decode(f:read("*a"))
f:close()

return function(t)
    for _, seq in ipairs(data.sequences) do
        t.it(seq.name, function()
            t.truthy(schema.check({ id = "b", kind = "degrade", route = { host = "a.example", path = "/" },
                                    action = { type = "reject" }, breaker = seq.breaker }))
            local b = breaker.new(seq.breaker)
            for i, ev in ipairs(seq.events) do
                if ev.report then
                    b:record(ev.t, ev.report[1], ev.report[2])
                elseif ev.decide ~= nil then
                    t.eq(b:admit(ev.t), ev.decide, "event " .. (i - 1))
                else
                    t.eq(b:snapshot(ev.t), ev.snapshot, "event " .. (i - 1))
                end
            end
        end)
    end

    t.it("a changed breaker object starts a new, closed breaker", function()
        local cfg = { window = 5, min_requests = 1, error_ratio = 1, open_seconds = 60, probes = 1 }
        breaker.record_rule("spec-r", cfg, 0, 500, 1)
        t.truthy(breaker.admit_rule("spec-r", cfg, 1))
        t.truthy(breaker.admit_rule("spec-r", { window = 5, min_requests = 1, error_ratio = 1,
                                                open_seconds = 60, probes = 1 }, 1))
        t.falsy(breaker.admit_rule("spec-r", { window = 5, min_requests = 1, error_ratio = 1,
                                               open_seconds = 60, probes = 2 }, 1))
    end)

    t.it("the schema refuses what rulegate/schema.py refuses", function()
        local base = { window = 5, min_requests = 1, open_seconds = 1, probes = 1 }
        local function with(extra)
            local b = {}
            for k, v in pairs(base) do b[k] = v end
            for k, v in pairs(extra) do b[k] = v end
            return schema.check({ id = "b", kind = "degrade", route = { host = "a.example", path = "/" },
                                  action = { type = "reject" }, breaker = b })
        end
        t.falsy(with({}))
        t.falsy(with({ slow_ms = 5 }))
        t.falsy(with({ error_ratio = 1.5 }))
        t.falsy(with({ error_ratio = 1, window = 601 }))
        t.falsy(with({ error_ratio = 1, probes = 0.5 }))
        t.truthy(with({ slow_ms = 5, slow_ratio = 0 }))
    end)
end
