-- A split is compiled cold (its checks and default hold upstream names, the
-- item its route's host and path) and warmed by the first request it decides: a load makes no decision tables for
-- rules no request reaches, and a warmed rule returns the same decision table
-- on every later request, in every set that shares its compiled item.
local mp = require("MessagePack")
local schema = require("rulegate.schema")
local router = require("rulegate.router")

local GUARD = { control = "stable", min_requests = 100, window = 60, max_p95_ratio = 2, on_breach = "freeze" }

local function rule(id, policies, extra)
    local r = { id = id, kind = "split", route = { host = id .. ".example.com", path = "/" },
                key = { source = "header", name = "x-uid" }, default = "stable", policies = policies }
    for k, v in pairs(extra or {}) do
        r[k] = v
    end
    r = mp.unpack(mp.pack(r))
    assert(schema.check(r))
    return r
end

local RULES = {
    rule("suffix", { { type = "uid_suffix", suffixes = { "1", "7" }, upstream = "canary" } }),
    rule("range", { { type = "uid_range", ranges = { { 100, 199 } }, upstream = "beta" } }),
    rule("cidr", { { type = "ip_cidr", cidrs = { "10.0.0.0/8" }, upstream = "inside" } }),
    rule("value", { { type = "header", name = "X-Tier", values = { "gold" }, upstream = "gold" } }),
    rule("percent", { { type = "percent", buckets = { { upstream = "a", weight = 5000 },
                                                     { upstream = "b", weight = 5000 } } } }),
    rule("ramped", { { type = "percent", buckets = { { upstream = "canary", weight = 1 } },
                       ramp = { start = 1, ["end"] = 2, from = 10000, to = 10000, mode = "linear",
                                guard = GUARD } } }),
    rule("two", { { type = "uid_suffix", suffixes = { "9" }, upstream = "nine" },
                  { type = "uid_range", ranges = { { 0, 5 } }, upstream = "low" } }),
}

local function request(host, uid, ip, tier)
    return { host = host .. ".example.com", path = "/", method = "GET", ip = ip or "192.0.2.1", now = 100,
             headers = { ["x-uid"] = uid, ["x-tier"] = tier }, cookies = {}, args = {} }
end

-- every decision slot of a compiled split: its checks' (split[4..]) and its
-- default (split[3])
local function slots(split)
    local out = {}
    for j = 4, #split do
        local c = split[j]
        for k = 2, #c do
            local v = c[k]
            if type(v) == "string" and (v == "canary" or v == "beta" or v == "inside" or v == "gold" or v == "a"
                                        or v == "b" or v == "nine" or v == "low") then
                out[#out + 1] = v
            elseif type(v) == "table" and v.action == "proxy" then
                out[#out + 1] = v
            end
        end
    end
    out[#out + 1] = split[3]
    return out
end

local function kinds(list)
    local out = {}
    for i, v in ipairs(list) do
        out[i] = type(v)
    end
    return table.concat(out, ",")
end

return function(t)
    t.it("a compiled split holds upstream names until it decides a request", function()
        local rs = router.compile(RULES, 4)
        for id, item in pairs(router.items(rs)) do
            -- an item keeps its route's host and path, not the decoded route table
            t.eq({ item.route, item.host, item.path }, { nil, id .. ".example.com", "/" })
            local s = slots(item)
            t.truthy(#s >= 2, id .. " has decision slots")
            t.eq(kinds(s), (kinds(s):gsub("[a-z]+", "string")), id .. " is cold after the compile")
        end
    end)

    t.it("the first decision warms the whole split; later ones return the same tables", function()
        local rs = router.compile(RULES, 4)
        local items = router.items(rs)
        local cases = {
            { "suffix", request("suffix", "41"), "canary" }, { "suffix", request("suffix", "42"), "stable" },
            { "range", request("range", "150"), "beta" }, { "range", request("range", "250"), "stable" },
            { "cidr", request("cidr", "1", "10.1.2.3"), "inside" }, { "cidr", request("cidr", "1"), "stable" },
            { "value", request("value", "1", nil, "gold"), "gold" }, { "value", request("value", "1"), "stable" },
            { "ramped", request("ramped", "1"), "canary" },
            { "two", request("two", "19"), "nine" }, { "two", request("two", "3"), "low" },
            { "two", request("two", "50"), "stable" },
        }
        for _, case in ipairs(cases) do
            local id, req, upstream = case[1], case[2], case[3]
            local d = router.decide(rs, req)
            t.eq({ d.action, d.upstream, d.rule_id, d.revision, d.guarded },
                 { "proxy", upstream, id, 4, id == "ramped" or nil }, id .. " -> " .. upstream)
            t.eq(kinds(slots(items[id])), (kinds(slots(items[id])):gsub("[a-z]+", "table")), id .. " is warm")
            t.truthy(rawequal(router.decide(rs, req), d), id .. ": the same decision table again")
        end
        -- percent: both buckets are decisions after one request, whichever it hit
        router.decide(rs, request("percent", "1"))
        t.eq(kinds(slots(items.percent)), "table,table,table")
    end)

    t.it("a set derived by a delta shares the warmed items and stamps its own revision", function()
        local rs = router.compile(RULES, 4)
        local d4 = router.decide(rs, request("suffix", "41"))
        local changed = rule("range", { { type = "uid_range", ranges = { { 100, 199 } }, upstream = "gamma" } })
        local rs5 = router.with_changes(rs, { range = RULES[2].route }, { range = changed }, 5)
        local d5 = router.decide(rs5, request("suffix", "41"))
        t.truthy(rawequal(d4, d5), "the suffix rule's decision is shared")
        t.eq({ d5.revision, router.decide(rs5, request("range", "150")).upstream }, { 5, "gamma" })
        t.eq(kinds(slots(router.items(rs5).range)), "table,table")
    end)
end
