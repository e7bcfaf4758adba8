-- route_in() tries a host's first four path lengths without a loop and the
-- rest in one: the longest matching prefix whose methods accept the request
-- wins, whatever the number of lengths.
local mp = require("MessagePack")
local schema = require("rulegate.schema")
local router = require("rulegate.router")

local PATHS = { "/a", "/a/b", "/a/b/c", "/a/b/c/d", "/a/b/c/d/e", "/a/b/c/d/e/f", "/a/b/c/d/e/f/g" }

local function compiled(n, methods_of)
    local rules = {}
    for i = 1, n do
        local route = { host = "h.example.com", path = PATHS[i], methods = methods_of and methods_of[i] }
        local rule = mp.unpack(mp.pack({ id = "r" .. i, kind = "split", route = route,
                                         key = { source = "header", name = "x-uid" }, default = "u" .. i,
                                         policies = {} }))
        assert(schema.check(rule))
        rules[#rules + 1] = rule
    end
    return router.compile(rules, 1)
end

local function route_of(rs, path, method)
    local d = router.decide(rs, { host = "h.example.com", path = path, method = method or "GET", ip = "10.0.0.1",
                                  now = 100, headers = {}, cookies = {}, args = {} })
    return d.rule_id or d.action
end

return function(t)
    t.it("the longest prefix wins with 1 to 7 lengths on the host", function()
        for n = 1, #PATHS do
            local rs = compiled(n)
            for i = 1, #PATHS do
                local want = "r" .. math.min(i, n)
                t.eq(route_of(rs, PATHS[i] .. "/x"), want, n .. " lengths, " .. PATHS[i] .. "/x")
                t.eq(route_of(rs, PATHS[i]), want, n .. " lengths, " .. PATHS[i])
            end
            t.eq(route_of(rs, "/b"), "pass", n .. " lengths, no prefix")
        end
    end)

    t.it("a longer route whose methods refuse the request falls through to a shorter one", function()
        local post = { "POST" }
        for n = 1, #PATHS do
            local rs = compiled(#PATHS, { [n] = post, [#PATHS] = post })
            local deepest = PATHS[#PATHS] .. "/x"
            local want = n == #PATHS - 1 and "r" .. (#PATHS - 2) or "r" .. (#PATHS - 1)
            t.eq(route_of(rs, deepest, "GET"), want, "POST-only r" .. n .. " and r7, GET")
            t.eq(route_of(rs, deepest, "POST"), "r" .. #PATHS, "POST")
            t.eq(route_of(rs, PATHS[n], "GET"), n == 1 and "pass" or "r" .. (n - 1), "GET on " .. PATHS[n])
        end
    end)
end
