local cluster = require("rulegate.cluster")

local null = ngx.null

return function(t)
    t.it("parse_redirect reads MOVED", function()
        local kind, slot, addr = cluster.parse_redirect("MOVED 3999 127.0.0.1:6381")
        t.eq({ kind, slot, addr }, { "MOVED", 3999, "127.0.0.1:6381" })
    end)

    t.it("parse_redirect reads ASK", function()
        local kind, slot, addr = cluster.parse_redirect("ASK 12182 10.0.0.7:7002")
        t.eq({ kind, slot, addr }, { "ASK", 12182, "10.0.0.7:7002" })
    end)

    t.it("parse_redirect keeps an IPv6 address and an empty host", function()
        local _, _, addr = cluster.parse_redirect("MOVED 1 ::1:7000")
        t.eq(addr, "::1:7000")
        t.eq(cluster.split_addr(addr), "::1")
        local _, _, addr2 = cluster.parse_redirect("MOVED 1 :7001")
        t.eq(addr2, ":7001")
    end)

    t.it("parse_redirect ignores other errors", function()
        t.eq(cluster.parse_redirect("ERR unknown command"), nil)
        t.eq(cluster.parse_redirect("TRYAGAIN Multiple keys request during rehashing"), nil)
        t.eq(cluster.parse_redirect("MOVED abc 1.2.3.4:5"), nil)
        t.eq(cluster.parse_redirect("MOVED 1 nohostport"), nil)
        t.eq(cluster.parse_redirect(nil), nil)
    end)

    t.it("split_addr splits on the last colon", function()
        local h, p = cluster.split_addr("127.0.0.1:30000")
        t.eq({ h, p }, { "127.0.0.1", 30000 })
        t.eq(cluster.split_addr("nocolon"), nil)
    end)

    t.it("parse_slots reads masters and replicas and sorts ranges", function()
        local reply = {
            { 10923, 16383, { "127.0.0.1", 7002, "id3" }, { "127.0.0.1", 7005, "id6" } },
            { 0, 5460, { "127.0.0.1", 7000, "id1", {} }, { "127.0.0.1", 7003, "id4" } },
            { 5461, 10922, { "127.0.0.1", 7001, "id2" } },
        }
        local ranges = assert(cluster.parse_slots(reply, "127.0.0.1"))
        t.eq(#ranges, 3)
        t.eq({ ranges[1].first, ranges[1].last, ranges[1].master }, { 0, 5460, "127.0.0.1:7000" })
        t.eq(ranges[1].replicas, { "127.0.0.1:7003" })
        t.eq(ranges[2].replicas, {})
        t.eq(ranges[3].master, "127.0.0.1:7002")
    end)

    t.it("parse_slots replaces an empty or unknown endpoint with the asked host", function()
        local ranges = assert(cluster.parse_slots({
            { 0, 16383, { "", 7000, "id1" }, { null, 7001, "id2" }, { "?", 7002, "id3" } },
        }, "10.1.1.1"))
        t.eq(ranges[1].master, "10.1.1.1:7000")
        t.eq(ranges[1].replicas, { "10.1.1.1:7001", "10.1.1.1:7002" })
    end)

    t.it("parse_slots rejects malformed replies", function()
        t.eq(select(2, cluster.parse_slots("nope")), "bad CLUSTER SLOTS reply")
        t.eq(select(2, cluster.parse_slots({})), "empty CLUSTER SLOTS reply")
        t.eq(select(2, cluster.parse_slots({ { 5, 1, { "h", 1 } } })), "bad CLUSTER SLOTS entry")
        t.eq(select(2, cluster.parse_slots({ { 0, 16384, { "h", 1 } } })), "bad CLUSTER SLOTS entry")
        t.eq(select(2, cluster.parse_slots({ { 0, 10, { "h" } } })), "bad CLUSTER SLOTS entry")
    end)

    t.it("build_slot_index maps every slot to its range", function()
        local ranges = assert(cluster.parse_slots({
            { 0, 99, { "h", 1 } }, { 100, 16383, { "h", 2 } },
        }))
        local idx = cluster.build_slot_index(ranges)
        t.eq(idx[0].master, "h:1")
        t.eq(idx[99].master, "h:1")
        t.eq(idx[100].master, "h:2")
        t.eq(idx[16383].master, "h:2")
        t.eq(idx[16384], nil)
    end)

    t.it("new rejects a missing shared dict and bad startup nodes", function()
        t.errors(function() cluster.new({ startup_nodes = { "h:1" } }) end, "lua_shared_dict")
        t.errors(function() cluster.new({ dict = "rulegate", startup_nodes = {} }) end, "startup_nodes")
        t.errors(function() cluster.new({ dict = "rulegate", startup_nodes = { "bad" } }) end,
            "bad startup node")
    end)
end
