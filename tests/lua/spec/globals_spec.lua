-- lua-releng style: loading any rulegate module must not write a global.
local MODULES = {
    "rulegate.crc16", "rulegate.iputil", "rulegate.slots", "rulegate.cluster", "rulegate.schema", "rulegate.router",
    "rulegate.snapshot", "rulegate.payload", "rulegate.sync", "rulegate.mpdecode", "rulegate.digest", "rulegate",
    "rulegate.rule_check", "rulegate.schema_fast", "rulegate.breaker", "rulegate.crc32", "rulegate.exposure",
    "rulegate.loop_lag", "rulegate.metrics", "rulegate.node", "rulegate.outcomes", "rulegate.request",
    "rulegate.resp",
}

return function(t)
    for _, name in ipairs(MODULES) do
        t.it("loading " .. name .. " writes no global", function()
            local path = package.searchpath(name, package.path)
            if not path then
                return -- module not written yet
            end
            local saved = {}
            for k, v in pairs(package.loaded) do
                if type(k) == "string" and k:find("^rulegate") then
                    saved[k] = v
                    package.loaded[k] = nil
                end
            end
            local old_mt = getmetatable(_G)
            local written = {}
            setmetatable(_G, {
                __newindex = function(_, k)
                    written[#written + 1] = tostring(k)
                    error("global write: " .. tostring(k), 2)
                end,
                __index = old_mt and old_mt.__index or nil,
            })
            local ok, err = pcall(require, name)
            setmetatable(_G, old_mt)
            for k, v in pairs(saved) do
                package.loaded[k] = v
            end
            t.eq(written, {}, "globals written by " .. name)
            t.truthy(ok, "require " .. name .. " failed: " .. tostring(err))
        end)
    end
end
