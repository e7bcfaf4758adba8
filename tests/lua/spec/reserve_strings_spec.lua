-- sync.reserve_strings: a worker keeps a reserve of strings alive so that
-- LuaJIT's string table does not halve after a reload and double during the
-- next one (sync.lua; bench/REPORT.md, "nginx request waits during a full reload").
local sync = require("rulegate.sync")

return function(t)
    t.it("keeps its strings alive across collections, once per worker", function()
        sync.reserve_strings()
        local kept = sync.reserved_strings()
        collectgarbage()
        collectgarbage()
        sync.reserve_strings() -- a second call keeps the first reserve
        local n = #kept
        t.eq({ sync.reserved_strings() == kept, n >= 65537, type(kept[n]), kept[1] ~= kept[n] },
             { true, true, "string", true })
    end)
end
