-- request.build() reads the request method (a call into nginx) only when a
-- route or rule restricts methods: the hot path of a route without methods
-- never asks for it, and the decision is the same either way.
local mp = require("MessagePack")
local schema = require("rulegate.schema")
local router = require("rulegate.router")
local request = require("rulegate.request")

local function compiled(rules)
    local checked = {}
    for _, rule in ipairs(rules) do
        local decoded = mp.unpack(mp.pack(rule))
        assert(schema.check(decoded))
        checked[#checked + 1] = decoded
    end
    return router.compile(checked, 7)
end

return function(t)
    -- the spec request itself: GET /spec?name=request_lazy_spec
    local host = "*"

    t.it("a route without methods decides without reading the method", function()
        local rs = compiled({ { id = "any", kind = "split", route = { host = host, path = "/" },
                                key = { source = "header", name = "x-uid" }, default = "stable",
                                policies = { { type = "uid_suffix", suffixes = { "1" }, upstream = "canary" } } } })
        local req = request.build({})
        t.eq(rawget(req, "method"), nil, "not read by build()")
        local d = router.decide(rs, req)
        t.eq(d.upstream, "stable")
        t.eq(rawget(req, "method"), nil, "not read by decide()")
        t.eq(req.method, "GET", "read on first use")
        t.eq(rawget(req, "method"), "GET", "kept for the request")
        t.eq(rawget(request.build({}), "method"), nil, "cleared by the next build()")
    end)

    t.it("a route or rule with methods reads it and decides by it", function()
        local rs = compiled({
            { id = "post", kind = "split", route = { host = host, path = "/spec", methods = { "POST" } },
              key = { source = "header", name = "x-uid" }, default = "post-only", policies = {} },
            { id = "get", kind = "degrade", route = { host = host, path = "/", methods = { "GET" } },
              action = { type = "reject", status = 429 } },
        })
        local req = request.build({})
        local d = router.decide(rs, req)
        t.eq(d.rule_id, "get")
        t.eq(d.status, 429)
        t.eq(rawget(req, "method"), "GET")
    end)

    -- A compiled store of nil into a key a table lacks inserts the key (IR
    -- NEWREF), and the table's next rehash drops it: ~3,000 instructions a
    -- request when build() cleared lazy fields no route had read. The traces
    -- LuaJIT records for hot loops of build() + decide() insert no key (the
    -- route has a degrade rule that does not apply: decide() clears
    -- req.breaker after its degrades).
    t.it("the request path's compiled code inserts no table key", function()
        local jit_util = require("jit.util")
        local irnames = require("jit.vmdef").irnames
        local rs = compiled({ { id = "any", kind = "split", route = { host = host, path = "/" },
                                key = { source = "header", name = "x-uid" }, default = "stable",
                                policies = { { type = "uid_suffix", suffixes = { "1" }, upstream = "canary" } } },
                              { id = "shed", kind = "degrade", route = { host = host, path = "/" }, percent = 0,
                                action = { type = "reject", status = 503 } } })
        local traces = {}
        local function record(what, tr)
            if what == "stop" then
                traces[#traces + 1] = tr
            end
        end
        jit.attach(record, "trace")
        local headers = { ["x-uid"] = "41" }
        local ok, err = pcall(function()
            for _ = 1, 2000 do
                router.decide(rs, request.build({}))
            end
            for _ = 1, 2000 do -- a request table that never had a breaker key (the one build() fills may have)
                router.decide(rs, { host = "spec.example.com", path = "/spec", headers = headers })
            end
        end)
        jit.attach(record)
        assert(ok, err)
        t.truthy(#traces > 0, "the loop was compiled")
        local inserted = {}
        for _, tr in ipairs(traces) do
            local info = jit_util.traceinfo(tr)
            for ref = 1, info and info.nins or 0 do
                local _, ot, _, op2 = jit_util.traceir(tr, ref)
                local at = math.floor(ot / 256) * 6
                if irnames:sub(at + 1, at + 6) == "NEWREF" then
                    inserted[#inserted + 1] = op2 < 0 and tostring(jit_util.tracek(tr, op2)) or "a computed key"
                end
            end
        end
        t.eq(table.concat(inserted, ", "), "", "keys inserted by compiled code")
    end)
end
