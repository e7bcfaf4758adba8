-- The syncing worker keeps no copy of the rules' bytes: a delta's digest is
-- checked with each rule's sig, its route from the held routes. A worker that
-- takes over the syncing builds that state from the set it serves (items'
-- sigs, its routes; a rule without a known sig, e.g. a disabled one, looked up
-- in the shared payload) or, when it does not serve the dict's version, from
-- the payload: either way the digest after the delta is the store's.
local mp = require("MessagePack")
local digest = require("rulegate.digest")
local payload = require("rulegate.payload")
local sync = require("rulegate.sync")

local dict = ngx.shared.rulegate -- the spec harness's 4m dict
local K = sync.KEYS

local function split(id, upstream, extra)
    local rule = { id = id, kind = "split", route = { host = "a.example.com", path = "/" .. id },
                   key = { source = "header", name = "x-uid" }, default = upstream,
                   policies = { { type = "uid_suffix", suffixes = { "1" }, upstream = "canary" } } }
    for k, v in pairs(extra or {}) do
        rule[k] = v
    end
    return mp.pack(rule)
end

-- the dict at version v1: a payload of raw, its digest
local function publish_v1(raw)
    dict:flush_all()
    payload.CHUNK = 2
    assert(payload.write(dict, { ver = "v1", namespace = "prod", generation = "g", revision = 1, written_at = 9 }, raw))
    dict:set(K.ver, "v1")
    dict:set(K.digest, digest.of(raw))
end

local function entry(rev, changes, after_raw)
    local list = {}
    for _, c in ipairs(changes) do
        list[#list + 1] = { c[1], "", c[2] or nil } -- id, before (unused), after bytes (nil: deleted)
    end
    return { rev = rev, changes = mp.pack(list), digest = digest.of(after_raw) }
end

return function(t)
    t.it("a delta's digest and routes follow from the served set or from the payload", function()
        local saved = payload.CHUNK
        local raw = { a = split("a", "stable"), b = split("b", "stable"), c = split("c", "stable", { enabled = false }),
                      d = split("d", "stable"), e = split("e", "stable") }
        for _, serving in ipairs({ true, false }) do
            publish_v1(raw)
            local rs, routes = assert(sync.compile_current(dict, "v1"))
            local conf = { serving = function()
                if serving then
                    return rs, "v1", routes
                end
            end }
            local new = {}
            for id, v in pairs(raw) do
                new[id] = v
            end
            new.c, new.b, new.d, new.f = split("c", "other"), split("b", "other"), nil, split("f", "stable")
            local e1 = entry(2, { { "c", new.c }, { "b", new.b } }, { a = raw.a, b = new.b, c = new.c, d = raw.d,
                                                                        e = raw.e })
            local e2 = entry(3, { { "d", false }, { "f", new.f } }, new)
            local h, sum = sync.apply_entries(dict, { e1, e2 }, conf)
            t.truthy(h, sum)
            t.eq(sum, digest.of(new))
            t.eq({ h.routes.d, h.routes.f.path, h.overlay.d, h.overlay.c }, { nil, "/f", false, new.c })
            -- a delta whose digest is not the store's is refused and changes nothing
            dict:set(K.ver, "v1")
            local bad = entry(2, { { "a", split("a", "other") } }, raw)
            local none, err = sync.apply_entries(dict, { bad }, conf)
            t.eq(none, nil)
            t.truthy(err:find("the delta gives", 1, true), err)
        end
        payload.CHUNK = saved
        dict:flush_all()
    end)

    t.it("a worker that serves no set of the dict's version yet catches up first, then builds from that set", function()
        local saved = payload.CHUNK
        local raw = { a = split("a", "stable"), b = split("b", "stable") }
        publish_v1(raw)
        local rs, routes = assert(sync.compile_current(dict, "v1"))
        local caught_up = false
        local conf = {
            serving = function()
                if caught_up then
                    return rs, "v1", routes
                end
            end,
            on_tick = function() -- the worker's own catch-up (rulegate.init's ruleset): here, installs rs
                caught_up = true
            end,
        }
        local new = { a = raw.a, b = split("b", "other") }
        local h, sum = sync.apply_entries(dict, { entry(2, { { "b", new.b } }, new) }, conf)
        t.truthy(h, sum)
        t.eq({ caught_up, h.routes == routes, h.where, sum }, { true, true, nil, digest.of(new) })
        payload.CHUNK = saved
        dict:flush_all()
    end)

    t.it("a listening worker's compile of the payload tells its delta state which chunk holds each rule", function()
        local saved = payload.CHUNK
        local raw = { a = split("a", "stable"), b = split("b", "stable"), c = split("c", "stable") }
        publish_v1(raw)
        sync.keep_where(true)
        local rs, routes = assert(sync.compile_current(dict, "v1"))
        sync.keep_where(false)
        local conf = { serving = function() return rs, "v1", routes end }
        local new = { a = raw.a, b = split("b", "other"), c = raw.c }
        local h, sum = sync.apply_entries(dict, { entry(2, { { "b", new.b } }, new) }, conf)
        t.truthy(h, sum)
        local head = payload.head(dict)
        local keys = {}
        for i = 1, head.n do
            keys[payload.key_of(head, i)] = true
        end
        for id in pairs(raw) do
            t.truthy(keys[h.where[id]], id)
        end
        payload.CHUNK = saved
        dict:flush_all()
    end)
end
