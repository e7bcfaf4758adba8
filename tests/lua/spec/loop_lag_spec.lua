-- The loop lag probe's counting (loop_lag.lua): which bucket a lateness falls
-- in, when a lag counts as held by the worker, and what a flush adds to the
-- shared dict (the gateway test runs the timer itself: test_loop_lag.py).
local loop_lag = require("rulegate.loop_lag")

local dict = ngx.shared.rulegate -- the spec harness's dict

local function counts()
    local c = { late = {}, held = {}, sum = 0 }
    for i = 1, #loop_lag.BOUNDS + 1 do
        c.late[i], c.held[i] = 0, 0
    end
    return c
end

return function(t)
    t.it("puts a lateness in the first bucket whose bound it does not pass", function()
        t.eq(loop_lag.slot(0), 1)
        t.eq(loop_lag.slot(0.001), 1)
        t.eq(loop_lag.slot(0.0011), 2)
        t.eq(loop_lag.slot(0.005), 3)
        t.eq(loop_lag.slot(0.03), 6)
        t.eq(loop_lag.slot(1), 10)
        t.eq(loop_lag.slot(5), 11)
    end)

    t.it("counts a lag as held when the worker ran for half of it or more", function()
        local c = counts()
        loop_lag.observe(c, 0.03, 0.031) -- the worker ran through it: its own work
        loop_lag.observe(c, 0.03, 0.016)
        loop_lag.observe(c, 0.03, 0.002) -- it hardly ran: the machine (or a stop) held it
        loop_lag.observe(c, 0.03, nil) -- its CPU clock unknown: not held
        loop_lag.observe(c, -0.0004, 0) -- early by the timer's rounding: no lateness
        t.eq(c.late[6], 4)
        t.eq(c.held[6], 2)
        t.eq(c.late[1], 1)
        t.eq(c.held[1], 0)
        t.eq(string.format("%.4f", c.sum), "0.1200")
    end)

    t.it("adds a flush to the shared dict's totals and starts again from zero", function()
        for _, key in ipairs(dict:get_keys(0)) do
            if key:find("^lag:") then
                dict:delete(key)
            end
        end
        t.eq(loop_lag.totals(dict), nil) -- no worker runs the probe
        dict:set(loop_lag.KEYS.interval, 0.02)
        local c = counts()
        loop_lag.observe(c, 0.07, 0.08)
        loop_lag.observe(c, 0.0005, 0.01)
        loop_lag.flush(dict, c)
        t.eq(c.late[7] + c.late[1] + c.held[7], 0)
        loop_lag.observe(c, 0.07, 0)
        loop_lag.flush(dict, c)
        local tot = loop_lag.totals(dict)
        t.eq(tot.interval, 0.02)
        t.eq(tot.samples, 3)
        t.eq(tot.late[7], 2)
        t.eq(tot.held[7], 1)
        t.eq(tot.late[1], 1)
        t.eq(string.format("%.4f", tot.sum), "0.1405")
        t.eq(#tot.late, #loop_lag.BOUNDS + 1)
    end)
end
