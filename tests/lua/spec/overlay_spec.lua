-- with_changes keeps a set's exact-host map as an overlay of the hosts deltas
-- changed over a shared base, flattened once it holds more than OVERLAY_MIN
-- hosts (or an eighth of the base): after every delta of a random sequence of
-- puts, host moves, disables and deletes, the set decides every host as a full
-- compile of the same rules, items() lists the same rules, and the set the
-- delta started from still decides as before.
local mp = require("MessagePack")
local schema = require("rulegate.schema")
local router = require("rulegate.router")

local HOSTS, RULES, STEPS = 40, 120, 150

local function rule(i, host, version, enabled)
    local r = mp.unpack(mp.pack({
        id = "r" .. i, kind = "split", enabled = enabled,
        route = { host = "h" .. host .. ".example.com", path = (i % 3 == 0) and "/p" or "/" },
        key = { source = "header", name = "x-uid" }, default = "stable",
        policies = { { type = "uid_suffix", suffixes = { "7" }, upstream = "u" .. version } },
    }))
    assert(schema.check(r))
    return r
end

local function lcg(seed)
    local x = seed
    return function(n)
        x = (x * 1103515245 + 12345) % 2147483648
        return x % n + 1
    end
end

local function answers(rs)
    local out = {}
    for h = 0, HOSTS + 1 do
        for _, path in ipairs({ "/", "/p/x" }) do
            local d = router.decide(rs, { host = "h" .. h .. ".example.com", path = path, method = "GET",
                                          ip = "10.0.0.1", now = 100, headers = { ["x-uid"] = "7" },
                                          cookies = {}, args = {} })
            out[#out + 1] = tostring(d.action) .. ":" .. tostring(d.rule_id) .. ":" .. tostring(d.upstream)
        end
    end
    return table.concat(out, " ")
end

local function ids(items)
    local out = {}
    for id in pairs(items) do
        out[#out + 1] = id
    end
    table.sort(out)
    return table.concat(out, ",")
end

local function run(overlay_min, seed)
    local saved = router.OVERLAY_MIN
    router.OVERLAY_MIN = overlay_min
    local ok, overlays, flattened = pcall(function()
        local pick = lcg(seed)
        local current, before = {}, {}
        for i = 1, RULES do
            current["r" .. i] = rule(i, i % HOSTS, 0)
        end
        local function list()
            local out = {}
            for _, r in pairs(current) do
                out[#out + 1] = r
            end
            return out
        end
        for id, r in pairs(current) do
            before[id] = r.route
        end
        local rs = router.compile(list(), 1)
        local overlays, flattened = 0, 0
        for step = 1, STEPS do
            local changes = {}
            for _ = 1, pick(3) do
                local i = pick(RULES + 20) -- ids above RULES are new rules
                local what = pick(10)
                if what <= 2 then
                    changes["r" .. i] = false -- deleted (or never there)
                else
                    changes["r" .. i] = rule(i, pick(HOSTS + 10) - 1, step, what ~= 3 and nil or false)
                end
            end
            local old_rs, old_answers = rs, answers(rs)
            rs = router.with_changes(rs, before, changes, step + 1)
            for id, r in pairs(changes) do
                current[id] = r or nil
                before[id] = r and r.route or nil
            end
            if getmetatable(rs.exact) then
                overlays = overlays + 1
            else
                flattened = flattened + 1
            end
            local full = router.compile(list(), step + 1)
            assert(answers(rs) == answers(full), "step " .. step .. ": decisions differ from a full compile")
            assert(ids(router.items(rs)) == ids(router.items(full)), "step " .. step .. ": items differ")
            assert(answers(old_rs) == old_answers, "step " .. step .. ": the set the delta started from changed")
        end
        return overlays, flattened
    end)
    router.OVERLAY_MIN = saved
    if not ok then
        error(overlays, 0)
    end
    return overlays, flattened
end

return function(t)
    t.it("overlays that flatten after every few hosts decide as a full compile", function()
        local overlays, flattened = run(3, 7)
        assert(overlays > 0 and flattened > 0, "both overlays and flat maps were exercised")
    end)
    t.it("a set flattened at every delta decides as a full compile", function()
        run(0, 11)
    end)
    t.it("overlays never flattened in the sequence decide as a full compile", function()
        local overlays, flattened = run(1000, 13)
        assert(overlays == STEPS and flattened == 0)
    end)
end
