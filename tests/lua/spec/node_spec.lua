local node = require("rulegate.node")
local cluster = require("rulegate.cluster")

return function(t)
    t.it("pool_suffix separates plain, TLS, unverified TLS and each server name", function()
        local base = { username = "u", password = "p" }
        local seen = {}
        for _, extra in ipairs({
            {}, { ssl = true, ssl_verify = true }, { ssl = true, ssl_verify = false },
            { ssl = true, ssl_verify = true, server_name = "a.example" },
            { ssl = true, ssl_verify = true, server_name = "b.example" },
        }) do
            local c = { username = base.username, password = base.password }
            for k, v in pairs(extra) do
                c[k] = v
            end
            local suffix = node.pool_suffix(c)
            t.falsy(seen[suffix], "pool suffix " .. suffix .. " used twice")
            seen[suffix] = true
        end
    end)

    t.it("pool_suffix separates credentials and never holds the password", function()
        local a = node.pool_suffix({ username = "u", password = "secret-one" })
        local b = node.pool_suffix({ username = "u", password = "secret-two" })
        t.truthy(a ~= b)
        t.falsy(a:find("secret", 1, true))
        t.eq(node.pool_suffix({}), "")
    end)

    t.it("new() verifies by default and rejects bad TLS options", function()
        local c = cluster.new({ dict = "rulegate", startup_nodes = { "127.0.0.1:1" }, ssl = true })
        t.eq({ c.ssl, c.ssl_verify }, { true, true })
        t.errors(function()
            cluster.new({ dict = "rulegate", startup_nodes = { "127.0.0.1:1" }, ssl = "yes" })
        end, "booleans")
        t.errors(function()
            cluster.new({ dict = "rulegate", startup_nodes = { "127.0.0.1:1" }, ssl = true, server_name = "" })
        end, "server_name")
    end)
end
