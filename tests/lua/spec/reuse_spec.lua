-- A full reload reuses the compiled rules of the set a worker serves for the
-- rules whose bytes did not change, and compiles the others: it decides as a
-- compile of the whole new set does.
local mp = require("MessagePack")
local payload = require("rulegate.payload")
local router = require("rulegate.router")
local snapshot = require("rulegate.snapshot")
local sync = require("rulegate.sync")

local dict = ngx.shared.rulegate -- the spec harness's 4m dict

local function split(id, host, upstream, extra)
    local rule = { id = id, kind = "split", route = { host = host, path = "/" .. id },
                   key = { source = "header", name = "x-uid" }, default = upstream,
                   policies = { { type = "uid_suffix", suffixes = { "1" }, upstream = "canary" } } }
    for k, v in pairs(extra or {}) do
        rule[k] = v
    end
    return mp.pack(rule)
end

local function degrade(id)
    return mp.pack({ id = id, kind = "degrade", route = { host = "*", path = "/" .. id, methods = { "POST" } },
                     action = { type = "reject", status = 429 } })
end

local function write(ver, raw)
    return assert(payload.write(dict, { ver = ver, namespace = "prod", generation = "g", revision = 3,
                                        written_at = 9 }, raw))
end

local function decisions(rs, ids)
    local out = {}
    for _, id in ipairs(ids) do
        for _, host in ipairs({ "a.example.com", "b.example.com" }) do
            for _, method in ipairs({ "GET", "POST" }) do
                for _, uid in ipairs({ "11", "12" }) do
                    local d = router.decide(rs, { host = host, path = "/" .. id, method = method, ip = "10.0.0.1",
                                                  now = 100, headers = { ["x-uid"] = uid }, cookies = {}, args = {} })
                    out[#out + 1] = table.concat({ id, host, method, uid, d.action, tostring(d.upstream),
                                                   tostring(d.status), tostring(d.rule_id) }, " ")
                end
            end
        end
    end
    return out
end

return function(t)
    t.it("unchanged bytes reuse the served rule, changed ones are compiled again", function()
        dict:flush_all()
        local v1 = { a = split("a", "a.example.com", "stable"), b = split("b", "a.example.com", "stable"),
                     c = split("c", "b.example.com", "stable", { enabled = false }), d = degrade("d") }
        write("v1", v1)
        local rs1, routes1 = assert(sync.compile_current(dict, "v1"))
        local v2 = { a = v1.a, b = split("b", "b.example.com", "other"), c = v1.c, d = v1.d,
                     e = split("e", "a.example.com", "stable") }
        write("v2", v2)
        local rs2, routes2 = assert(sync.compile_current(dict, "v2", nil, rs1))
        local old, new = router.items(rs1), router.items(rs2)
        t.truthy(new.a == old.a and new.d == old.d, "a and d reused")
        t.truthy(new.b ~= old.b and new.e ~= nil, "b and e compiled")
        t.eq({ new.c, rs2.count, routes2.c.host, routes2.b.host, routes1.b.host },
             { nil, 5, "b.example.com", "b.example.com", "a.example.com" })
        -- the same decisions as the new set compiled from scratch
        local fresh = assert(sync.compile_current(dict, "v2"))
        local ids = { "a", "b", "c", "d", "e", "x" }
        t.eq(decisions(rs2, ids), decisions(fresh, ids))
        t.truthy(table.concat(decisions(rs1, { "b" }), "\n") ~= table.concat(decisions(rs2, { "b" }), "\n"),
                 "b decides otherwise")
        dict:flush_all()
    end)

    t.it("a set compiled from a snapshot payload is reused by the compile of the same bytes from the dict", function()
        -- init_by_lua: load_snapshot compiles the file's payload, then the master's compile of the dict reuses it
        dict:flush_all()
        local raw = { a = split("a", "a.example.com", "stable"), b = split("b", "b.example.com", "other"),
                      c = split("c", "b.example.com", "stable", { enabled = false }), d = degrade("d") }
        local from_file = assert(sync.compile_payload(snapshot.encode_payload("prod", "g", 3, 9, raw)))
        write("v1", raw)
        local rs = assert(sync.compile_current(dict, "v1", nil, from_file))
        local file_items, items = router.items(from_file), router.items(rs)
        for _, id in ipairs({ "a", "b", "d" }) do
            t.truthy(items[id] == file_items[id], id .. " is the file's compiled rule")
        end
        local fresh = assert(sync.compile_current(dict, "v1"))
        local ids = { "a", "b", "c", "d", "x" }
        t.eq(decisions(rs, ids), decisions(fresh, ids))
        dict:flush_all()
    end)

    t.it("bytes under another id, or a set without the rule, are decoded and checked", function()
        dict:flush_all()
        write("v1", { a = split("a", "a.example.com", "stable") })
        local rs1 = assert(sync.compile_current(dict, "v1"))
        write("v2", { z = split("a", "a.example.com", "stable") }) -- a's bytes stored under z
        local rs, err = sync.compile_current(dict, "v2", nil, rs1)
        t.eq({ rs, err }, { nil, "rule z: id does not match its hash field" })
        dict:flush_all()
    end)
end
