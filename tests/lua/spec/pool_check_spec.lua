-- A full load whose chunks are checked in nginx's thread pool (the harness's
-- nginx has `thread_pool rulegate`): the syncing worker places the rules
-- pending and a worker thread checks each chunk (a split rule stored
-- canonically in one pass of its bytes, rulegate.schema_fast; any other rule
-- decoded, checked and compiled); the set decides as a load checked in the
-- worker, and a rule that fails is refused with the same words, the first
-- failing rule first. Without the pool, the load checks in the worker.
local canonical = require("canonical_mp")
local mp = require("MessagePack")
local mpdecode = require("rulegate.mpdecode")
local payload = require("rulegate.payload")
local router = require("rulegate.router")
local rule_check = require("rulegate.rule_check")
local snapshot = require("rulegate.snapshot")
local sync = require("rulegate.sync")

local dict = ngx.shared.rulegate -- the spec harness's 4m dict

local function split(id, overrides)
    local rule = { id = id, kind = "split", route = { host = "a.example.com", path = "/" .. id },
                   key = { source = "header", name = "x-uid" }, default = "stable",
                   policies = { { type = "uid_suffix", suffixes = { "1" }, upstream = "canary" } } }
    for k, v in pairs(overrides or {}) do
        rule[k] = v
    end
    return canonical.pack(rule) -- as ruleadmin stores it: the pool checks it in one pass
end

local function conf(pool)
    return { shm = dict, dict = "rulegate", namespace = "prod", check_thread_pool = pool }
end

local function load(c, rules)
    local L = sync.new_loader(c, 7, "g")
    for _, pair in ipairs(rules) do
        sync.loader_add(L, pair[1], pair[2])
    end
    return sync.loader_finish(L)
end

local function pending_count(rs)
    local n = 0
    for _, item in pairs(router.items(rs)) do
        if router.is_pending(item) then
            n = n + 1
        end
    end
    return n
end

local function decisions(rs, n)
    local out = {}
    for i = 1, n do
        for _, uid in ipairs({ "11", "12" }) do
            local d = router.decide(rs, { host = "a.example.com", path = "/r" .. i, method = "GET", ip = "10.0.0.1",
                                          now = 100, headers = { ["x-uid"] = uid }, cookies = {}, args = {} })
            out[#out + 1] = table.concat({ d.action, tostring(d.upstream), tostring(d.rule_id) }, " ")
        end
    end
    return out
end

-- n valid rules r1 .. rn ({id, bytes}; bad[i]: bytes for rule i instead)
local function rules_of(n, bad)
    local rules = {}
    for i = 1, n do
        rules[i] = { "r" .. i, bad and bad[i] or split("r" .. i) }
    end
    return rules
end

-- Run fn with payload chunks of 8 rules and an empty dict; restore both after.
local function small_chunks(fn)
    dict:flush_all()
    local saved = payload.CHUNK
    payload.CHUNK = 8
    fn()
    payload.CHUNK = saved
    dict:flush_all()
end

return function(t)
    t.it("checked in the pool: placed pending, decides as a load checked here", function() small_chunks(function()
        local rules = rules_of(30)
        local pooled = assert(load(conf("rulegate"), rules))
        t.eq(dict:get("sync:pool_checks"), 4) -- 30 rules in chunks of 8
        t.eq(pending_count(pooled.rs), 30)
        pooled.writer:abort()
        local here = assert(load(conf(nil), rules))
        t.eq(pending_count(here.rs), 30, "checked here in one pass of their bytes (schema_fast): placed pending")
        here.writer:abort()
        t.eq({ pooled.digest, pooled.rs.count }, { here.digest, here.rs.count })
        t.eq(decisions(pooled.rs, 30), decisions(here.rs, 30))
        -- the same rules in lua-MessagePack's order: decoded, checked and compiled here, decided alike
        local other = {}
        for i, pair in ipairs(rules) do
            other[i] = { pair[1], mp.pack(mp.unpack(pair[2])) }
        end
        local compiled = assert(load(conf(nil), other))
        t.eq(pending_count(compiled.rs), 0)
        compiled.writer:abort()
        t.eq(decisions(compiled.rs, 30), decisions(here.rs, 30))
    end) end)

    t.it("a chunk whose every rule is served with the same bytes is not checked again",
         function() small_chunks(function()
        local rules = rules_of(24)
        local c = conf("rulegate")
        local first = assert(load(c, rules))
        first.writer:abort()
        t.eq(dict:get("sync:pool_checks"), 3)
        c.serving = function()
            return first.rs
        end
        local again = assert(load(c, rules))
        again.writer:abort()
        t.eq(dict:get("sync:pool_checks"), 3, "all served: no chunk checked")
        rules[10] = { "r10", split("r10", { default = "blue" }) }
        local changed = assert(load(c, rules))
        changed.writer:abort()
        t.eq(dict:get("sync:pool_checks"), 4, "only the chunk of the changed rule")
        rules[17] = { "r17", split("r17", { default = 7 }) }
        local _, err = load(c, rules)
        t.eq(err, "rule r17: default is invalid")
    end) end)

    t.it("a rule the pool refuses fails the load with the words of a check made here, the first one first",
         function() small_chunks(function()
        local cases = {
            { at = 3, value = split("r3", { default = 7 }) }, -- the schema refuses it
            { at = 7, value = split("r7") .. "\1" }, -- a rule, then a byte more: read in place, it ends early
            { at = 9, value = split("r9"):sub(1, -2) }, -- cut short: read in place, it runs into the next rule
            { at = 12, value = "\193" }, -- not msgpack
            { at = 20, value = split("r20", { weights = { canary = "x" } }) },
            { at = 29, value = split("r29", { route = { host = "a.example.com", path = "no-slash" } }) },
        }
        for _, case in ipairs(cases) do
            local rules = rules_of(30, { [case.at] = case.value })
            rules[#rules + 1] = { "r31", "\193" } -- a later bad rule: not the one reported
            dict:flush_all()
            local got, err = load(conf("rulegate"), rules)
            t.eq(got, nil)
            dict:flush_all()
            local _, want = load(conf(nil), rules)
            t.truthy(want, "the check here refuses it too")
            t.eq(err, want)
            t.eq(#dict:get_keys(0) <= 1, true, "nothing left of the payload but the counter")
        end
        -- a rule the worker itself refuses (its id is not its hash field), after a bad one the pool finds
        local rules = { { "r1", split("r1") }, { "r2", split("r2", { default = 7 }) }, { "r3", split("other") } }
        dict:flush_all()
        local _, err = load(conf("rulegate"), rules)
        local _, want = load(conf(nil), rules)
        t.eq(err, want)
        t.truthy(err:find("rule r2", 1, true), err)
    end) end)

    t.it("the pool decodes no split rule stored canonically, and decodes one in another order", function()
        dict:flush_all()
        local sure, other = {}, {}
        for i = 1, 5 do
            snapshot.pack_rule(sure, "s" .. i, split("s" .. i))
            local rule = mp.unpack(split("o" .. i))
            snapshot.pack_rule(other, "o" .. i, mp.pack(rule)) -- lua-MessagePack's order: not canonical
        end
        dict:set("sure", table.concat(sure))
        dict:set("other", table.concat(other))
        local at, decoded = mpdecode.at, 0
        mpdecode.at = function(...)
            decoded = decoded + 1
            return at(...)
        end
        local ok, res = pcall(function()
            return { rule_check.chunk("rulegate", "sure"), decoded, rule_check.chunk("rulegate", "other"), decoded }
        end)
        mpdecode.at = at
        t.truthy(ok, res)
        t.eq(res, { 0, 0, 0, 5 })
        dict:flush_all()
    end)

    t.it("rule_check.chunks in this worker gives what the pool gives", function()
        dict:flush_all()
        local good, bad = {}, {}
        for i = 1, 5 do
            snapshot.pack_rule(good, "g" .. i, split("g" .. i))
            snapshot.pack_rule(bad, "r" .. i, i == 4 and split("r4", { default = 7 }) or split("r" .. i))
        end
        dict:set("good", table.concat(good))
        dict:set("bad", table.concat(bad))
        for _, keys in ipairs({ { "good" }, { "good", "bad" }, { "bad", "good" }, { "good", "gone" } }) do
            local here = { rule_check.chunks("rulegate", keys) }
            local ok, b, why = ngx.run_worker_thread("rulegate", "rulegate.rule_check", "chunks", "rulegate", keys)
            t.eq(ok, true)
            t.eq({ b, why }, here)
        end
        t.eq({ rule_check.chunks("rulegate", { "good", "bad" }) }, { 4, "rule r4: default is invalid" })
        t.eq({ rule_check.chunk("rulegate", "gone") }, { -1, "payload chunk gone is not in the shared dict" })
        dict:flush_all()
    end)
end
