-- A worker that loads the payload its gateway's syncing worker checked places
-- each rule pending by its route (mpdecode.route_of, router.add_pending); the
-- first request that reaches a route compiles that route's rules, and the set
-- decides as a compile of the whole set does. route_of reads what unpack gives.
local mp = require("MessagePack")
local mpdecode = require("rulegate.mpdecode")
local payload = require("rulegate.payload")
local router = require("rulegate.router")
local sync = require("rulegate.sync")

local dict = ngx.shared.rulegate -- the spec harness's 4m dict
local char = string.char

local function be(n, bytes)
    local out = {}
    for i = bytes, 1, -1 do
        out[i] = char(n % 256)
        n = math.floor(n / 256)
    end
    return table.concat(out)
end

local function str(s, wide) -- fixstr, or str8 when wide
    if wide or #s > 31 then
        return "\xd9" .. char(#s) .. s
    end
    return char(0xa0 + #s) .. s
end

local function map(pairs_list, width) -- msgpack map of already encoded {key, value} pairs
    local n = #pairs_list
    local head
    if width == 2 then
        head = "\xde" .. be(n, 2)
    elseif width == 4 then
        head = "\xdf" .. be(n, 4)
    else
        head = char(0x80 + n)
    end
    local parts = { head }
    for _, kv in ipairs(pairs_list) do
        parts[#parts + 1] = kv[1] .. kv[2]
    end
    return table.concat(parts)
end

-- Filler values route_of skips (every msgpack family, nested).
local FILLERS = {
    "\x05", "\xe3", "\xc0", "\xc2", "\xc3", "\xcc\xff", "\xcd\x01\x02", "\xce\0\1\0\0", "\xd0\x80", "\xd1\x80\0",
    "\xd2\xff\xff\xff\xfe", "\xcb\x3f\xf0\0\0\0\0\0\0", "\xcf\0\0\0\0\0\0\0\x07", "\xa3abc", "\xd9\x03xyz",
    "\xda\0\x02hi", "\xc4\x02\0\1", "\xc5\0\x01z", "\x92\x01\xa1a", "\xdc\0\x02\x81\xa1k\x90\xc0",
    "\x81\xa4host\xa3bad", "\xde\0\x01\xa4path\x92\x01\x02", "\x91\x91\x91\x91\x80",
}
-- Values only lua-MessagePack decodes (mpdecode hands them to it): route_of skips
-- the numbers by their size, and gives nil for ext types and 0xc1.
local LIBRARY = { "\xca\x3f\xc0\0\0", "\xd4\x01\x02", "\xd3\0\0\0\0\0\0\0\1", "\xc1", "\xcb\x7f\xf0\0\0\0\0\0\0" }

local function pick(list)
    return list[math.random(#list)]
end

-- A rule-like map in random encodings: keys repeated, in any order, with fillers.
local function gen_rule()
    local entries = {}
    local function add(k, v)
        table.insert(entries, math.random(#entries + 1), { str(k, math.random(30) == 1), v })
    end
    for _ = 1, math.random(0, 2) do
        add(pick({ "id", "kind", "enabled" }), pick({ str("r" .. math.random(9)), str("split"), str("degrade"),
                                                     "\xc3", "\xc2", "\xc0", str("split", true) }))
    end
    add("id", str("r" .. math.random(99), math.random(8) == 1))
    add("kind", str(pick({ "split", "degrade", "other" })))
    if math.random(2) == 1 then
        add("enabled", pick({ "\xc3", "\xc2", "\x01", "\xc0" }))
    end
    for _ = 1, math.random(1, 2) do
        local route = {}
        local function radd(k, v)
            table.insert(route, math.random(#route + 1), { str(k, math.random(30) == 1), v })
        end
        radd("host", str(pick({ "a.example.com", "*.example.com", "*" }), math.random(6) == 1))
        radd("path", str(pick({ "/", "/api", "/api/v2" })))
        if math.random(3) == 1 then
            radd(pick({ "host", "path" }), pick({ str("/x"), "\xc0", "\x90", "\x01" }))
        end
        if math.random(2) == 1 then
            radd("methods", "\x92\xa3GET\xa4POST")
        end
        if math.random(4) == 1 then
            radd("x", pick(FILLERS))
        end
        add("route", map(route, pick({ 0, 0, 2, 4 })))
    end
    for _ = 1, math.random(0, 4) do
        add(pick({ "key", "policies", "default", "path", "host", "salt", "percent", "window" }),
            math.random(12) == 1 and pick(LIBRARY) or pick(FILLERS))
    end
    return map(entries, pick({ 0, 0, 0, 2, 4 }))
end

local function split(id, host, path, extra)
    local rule = { id = id, kind = "split", route = { host = host, path = path },
                   key = { source = "header", name = "x-uid" }, default = "stable",
                   policies = { { type = "uid_suffix", suffixes = { "1" }, upstream = "canary" } } }
    for k, v in pairs(extra or {}) do
        rule[k] = v
    end
    return mp.pack(rule)
end

local function degrade(id, host, path, methods)
    return mp.pack({ id = id, kind = "degrade", route = { host = host, path = path, methods = methods },
                     action = { type = "reject", status = 429 } })
end

local function write(ver, raw, checked)
    dict:flush_all()
    dict:flush_expired()
    return assert(payload.write(dict, { ver = ver, namespace = "prod", generation = "g", revision = 3,
                                        written_at = 9, checked = checked }, raw))
end

local function req(host, path, method, uid)
    return { host = host, path = path, method = method or "GET", ip = "10.0.0.1", now = 100,
             headers = { ["x-uid"] = uid or "11" }, cookies = {}, args = {} }
end

local function summary(d)
    return table.concat({ d.action, tostring(d.upstream), tostring(d.status), tostring(d.rule_id),
                          tostring(d.revision) }, " ")
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

local RAW = {
    s1 = split("s1", "a.example.com", "/one"),
    s2 = split("s2", "a.example.com", "/one", { default = "blue" }),
    s3 = split("s3", "*.example.com", "/two",
               { route = { host = "*.example.com", path = "/two", methods = { "PUT" } } }),
    d1 = degrade("d1", "*", "/three", { "POST" }),
    d2 = degrade("d2", "a.example.com", "/one"),
    off = split("off", "a.example.com", "/four", { enabled = false }),
}
local REQUESTS = {
    req("a.example.com", "/one/x"), req("a.example.com", "/one", "POST", "21"), req("b.example.com", "/two/y", "PUT"),
    req("b.example.com", "/two/y", "GET"), req("c.org", "/three", "POST"), req("c.org", "/three", "GET"),
    req("a.example.com", "/four"), req("a.example.com", "/three/z", "POST"), req("z", "/"),
}

return function(t)
    t.it("route_of gives what unpack gives, or nil (random encodings, cut and flipped bytes)", function()
        math.randomseed(7)
        local placed, cases = 0, 0
        local function check(s)
            cases = cases + 1
            local id, host, path, kind, enabled = mpdecode.route_of(s)
            if host == nil then
                return
            end
            placed = placed + 1
            local ok, v = pcall(mpdecode.unpack, s)
            t.truthy(ok and type(v) == "table" and type(v.route) == "table", "route_of read undecodable bytes")
            t.eq({ id, host, path, kind, enabled }, { v.id, v.route.host, v.route.path, v.kind, v.enabled })
        end
        for _ = 1, 3000 do
            local s = gen_rule()
            check(s)
            check(s:sub(1, math.random(0, #s - 1)))
            check(s .. "\xc0")
            local at = math.random(#s)
            check(s:sub(1, at - 1) .. char(math.random(0, 255)) .. s:sub(at + 1))
        end
        t.truthy(placed > cases / 16, "placed " .. placed .. " of " .. cases)
    end)

    t.it("route_of reads every stored rule lua-MessagePack packs", function()
        for id, raw in pairs(RAW) do
            local rid, host, path, kind, enabled = mpdecode.route_of(raw)
            local v = mp.unpack(raw)
            t.eq({ rid, host, path, kind, enabled }, { id, v.route.host, v.route.path, v.kind, v.enabled })
        end
        t.eq(mpdecode.route_of(mp.pack({ "a" })), nil)
        t.eq(mpdecode.route_of(mp.pack({ id = "x", kind = "split", route = "/" })), nil)
        t.eq(mpdecode.route_of(42), nil)
    end)

    t.it("a checked payload is placed pending; a request compiles its route only; decisions are a compile's", function()
        write("v1", RAW, sync.CHECKED_BY)
        local rs, routes = assert(sync.compile_current(dict, "v1"))
        t.eq({ rs.count, pending_count(rs) }, { 6, 5 }) -- the disabled rule is counted, not placed
        t.eq({ routes.s1.host, routes.s1.path, routes.d1.host, routes.off.path },
             { "a.example.com", "/one", "*", "/four" })
        local compiled = router.compile((function()
            local list = {}
            for _, raw in pairs(RAW) do
                list[#list + 1] = mp.unpack(raw)
            end
            return list
        end)(), 3)
        t.eq(summary(router.decide(rs, req("a.example.com", "/one/x"))), "respond nil 429 d2 3")
        t.eq(pending_count(rs), 2, "the route /one (s1, s2, d2) compiled, the others not")
        for _, r in ipairs(REQUESTS) do
            t.eq(summary(router.decide(rs, r)), summary(router.decide(compiled, r)), r.host .. r.path .. r.method)
        end
        t.eq(pending_count(rs), 0)
    end)

    t.it("a route's methods are known before its first request is matched", function()
        write("v1", { d1 = RAW.d1 }, sync.CHECKED_BY)
        local rs = assert(sync.compile_current(dict, "v1"))
        t.eq(summary(router.decide(rs, req("x", "/three", "GET"))), "pass nil nil nil 3")
        t.eq(summary(router.decide(rs, req("x", "/three", "POST"))), "respond nil 429 d1 3")
    end)

    t.it("a delta over pending routes and a reload reusing pending items decide as compiles", function()
        write("v1", RAW, sync.CHECKED_BY)
        local rs, routes = assert(sync.compile_current(dict, "v1"))
        local s2b = split("s2", "a.example.com", "/one", { default = "green" })
        local changes = { s2 = mp.unpack(s2b), d1 = false, n1 = mp.unpack(split("n1", "*", "/three")) }
        local before = { s2 = routes.s2, d1 = routes.d1 }
        local moved = router.with_changes(rs, before, changes, 4)
        local after = {}
        for id, raw in pairs(RAW) do
            after[id] = raw
        end
        after.s2, after.d1, after.n1 = s2b, nil, split("n1", "*", "/three")
        local list = {}
        for _, raw in pairs(after) do
            list[#list + 1] = mp.unpack(raw)
        end
        local compiled = router.compile(list, 4)
        for _, r in ipairs(REQUESTS) do
            t.eq(summary(router.decide(moved, r)), summary(router.decide(compiled, r)), r.host .. r.path .. r.method)
        end
        -- a reload of the same bytes reuses the items, pending or compiled, of the set served
        write("v2", RAW, sync.CHECKED_BY)
        local again = assert(sync.compile_current(dict, "v2", nil, rs))
        local items, reused = router.items(again), 0
        for id, item in pairs(router.items(rs)) do
            if items[id] == item then
                reused = reused + 1
            end
        end
        t.eq(reused, 5)
        local first = router.items(rs).s3
        router.decide(again, req("b.example.com", "/two/y", "PUT"))
        t.eq(router.is_pending(first), false, "compiled once, for both sets")
        t.eq(summary(router.decide(rs, req("b.example.com", "/two/y", "PUT"))), "proxy canary nil s3 3")
    end)

    t.it("a route of more than PENDING_MAX rules is compiled with the load, not by a request", function()
        local raw = { small = split("small", "a.example.com", "/small") }
        for i = 1, router.PENDING_MAX + 1 do
            local id = string.format("big%02d", i)
            raw[id] = split(id, "a.example.com", "/big", { default = "u" .. i })
        end
        write("v1", raw, sync.CHECKED_BY)
        local rs = assert(sync.compile_current(dict, "v1"))
        t.eq(pending_count(rs), 1, "only the small route's rule is left pending")
        t.eq(router.is_pending(router.items(rs).small), true)
        t.eq(summary(router.decide(rs, req("a.example.com", "/big/x", "GET", "22"))), "proxy u1 nil big01 3")
    end)

    t.it("a request that compiles shared items while a load compiles a big route in slices is no harm", function()
        local function place(rs, id, default)
            local raw = split(id, "a.example.com", "/r", { default = default })
            local rid, host, path, kind = mpdecode.route_of(raw)
            return router.add_pending(rs, rid, raw, nil, host, path, kind)
        end
        local served = router.new_set(3)
        local shared = {}
        for i = 1, 30 do
            shared[i] = place(served, string.format("s%02d", i), "u" .. i)
        end
        router.finish(served)
        t.eq(router.is_pending(shared[1]), true, "30 rules: left pending")
        local new = router.new_set(4)
        for i = 1, 30 do
            router.add_compiled(new, shared[i]) -- reused from the set served
        end
        for i = 31, 35 do
            place(new, string.format("s%02d", i), "u" .. i)
        end
        local calls = 0
        router.finish(new, function() -- a request to the served set's route while the big route compiles
            calls = calls + 1
            if calls == 2 then -- the first pause is finish()'s, before the route
                router.decide(served, req("a.example.com", "/r/x", "GET", "22"))
            end
        end)
        t.eq({ router.is_pending(shared[1]), router.is_pending(router.items(new).s35) }, { false, false })
        t.eq(summary(router.decide(new, req("a.example.com", "/r/x", "GET", "22"))), "proxy u1 nil s01 4")
    end)

    t.it("a payload another load of the code wrote is compiled whole; an id not its field is refused", function()
        write("v1", RAW, "rulegate:1:2:0x0")
        local rs = assert(sync.compile_current(dict, "v1"))
        t.eq(pending_count(rs), 0)
        write("v1", { s1 = split("s9", "a.example.com", "/one") }, sync.CHECKED_BY)
        local none, err = sync.compile_current(dict, "v1")
        t.eq({ none, err }, { nil, "rule s1: id does not match its hash field" })
        dict:flush_all()
    end)
end
