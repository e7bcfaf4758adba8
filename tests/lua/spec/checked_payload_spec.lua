-- A payload this code wrote (its rules passed schema.check in the syncing
-- worker) is compiled without checking the rules again; one written by
-- another load of the code, or without the mark, is checked.
local mp = require("MessagePack")
local payload = require("rulegate.payload")
local sync = require("rulegate.sync")

local dict = ngx.shared.rulegate -- the spec harness's 4m dict

local function rule(id, host)
    return mp.pack({ id = id, kind = "split", route = { host = host, path = "/" },
                     key = { source = "header", name = "x-uid" }, default = "stable",
                     policies = { { type = "uid_suffix", suffixes = { "1" }, upstream = "canary" } } })
end

local function write(checked, raw)
    dict:flush_all()
    dict:flush_expired()
    return assert(payload.write(dict, { ver = "v1", namespace = "prod", generation = "g", revision = 3,
                                        written_at = 9, checked = checked }, raw))
end

return function(t)
    -- "BAD HOST" is refused by schema.check: a rule only a skipped check lets through
    local raw = { r1 = rule("r1", "a.example.com"), r2 = rule("r2", "BAD HOST") }

    t.it("rules of a payload marked by this code are not checked again", function()
        t.eq(write(sync.CHECKED_BY, raw).checked, sync.CHECKED_BY)
        local rs, routes = sync.compile_current(dict, "v1")
        t.truthy(rs, "compiled: " .. tostring(routes))
        t.eq({ rs.count, rs.revision, routes.r2.host }, { 2, 3, "BAD HOST" })
    end)

    t.it("a checked payload's rules are placed pending on their chunk, not cut into strings", function()
        local many = {}
        for i = 1, 40 do
            many["r" .. i] = rule("r" .. i, "h" .. i .. ".example.com")
        end
        write(sync.CHECKED_BY, many)
        local rs = assert(sync.compile_current(dict, "v1"))
        local router = require("rulegate.router")
        local request = require("rulegate.request")
        local items = router.items(rs)
        local item = items.r7
        t.truthy(router.is_pending(item), "placed pending")
        local chunk = item[2]
        t.truthy(#chunk > #many.r7 and chunk:sub(item[4], item[5]) == many.r7,
                 "the chunk, with the rule's bytes at item[4]..item[5]")
        local digest = require("rulegate.digest")
        t.eq(item.sig, digest.sig("r7", many.r7), "the sig of its bytes")
        local d = router.decide(rs, request.from_raw({ host = "h7.example.com", target = "/x", method = "GET",
                                                       headers = { { "x-uid", "41" } } }))
        t.eq({ d.rule_id, d.upstream }, { "r7", "canary" }, "its route's first request compiles it")
        t.truthy(not router.is_pending(item) and item[2] ~= chunk and item[5] == nil, "compiled: the chunk is let go")
    end)

    t.it("rules of a payload with another mark or none are checked", function()
        for _, mark in ipairs({ "rulegate:1:2:0x0", false }) do
            write(mark or nil, raw)
            local rs, err = sync.compile_current(dict, "v1")
            t.eq(rs, nil)
            t.eq(err, "rule r2: route.host is invalid")
        end
    end)

    t.it("the id still has to match its field when the check is skipped", function()
        write(sync.CHECKED_BY, { r1 = rule("r9", "a.example.com") })
        local rs, err = sync.compile_current(dict, "v1")
        t.eq(rs, nil)
        t.eq(err, "rule r1: id does not match its hash field")
    end)

    t.it("publish marks the payload it writes", function()
        dict:flush_all()
        local ver = assert(sync.publish(dict, { namespace = "prod", raw = { r1 = raw.r1 } }, 4, "g", 1, "redis",
                                        "0000000000000000000000000000000000000000"))
        t.eq(payload.head(dict).checked, sync.CHECKED_BY)
        t.eq(payload.head(dict).ver, ver)
        dict:flush_all()
    end)
end
