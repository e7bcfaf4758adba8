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
end
