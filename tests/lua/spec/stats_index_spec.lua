-- Workers' cluster-client counters are found through the pid index K.stats_pids,
-- not by walking every key of the shared dict (shm:get_keys(0) holds the dict's
-- lock over all of its keys: payload chunks, deltas, exposure counters).
local cjson = require("cjson.safe")
local sync = require("rulegate.sync")

local dict = ngx.shared.rulegate -- the spec harness's 4m dict
local K = sync.KEYS

return function(t)
    t.it("a worker's published counters are read back through the index, once per pid", function()
        dict:flush_all()
        sync.publish_stats(dict)
        sync.publish_stats(dict) -- again: its pid is not added twice
        local pid = tostring(ngx.worker.pid())
        t.eq(dict:get(K.stats_pids), pid)
        local stats = sync.stats_of(dict)
        t.truthy(stats[pid], "this worker's counters")
        t.eq(cjson.encode(stats[pid]) ~= nil, true)
    end)

    t.it("other workers' counters are read, expired ones skipped, the index bounded", function()
        dict:flush_all()
        local pids = {}
        for i = 1, 40 do
            pids[i] = tostring(100000 + i)
            dict:set("stats:" .. pids[i], cjson.encode({ calls = i }), 3600)
        end
        dict:set(K.stats_pids, table.concat(pids, " ", 1, 35))
        dict:delete("stats:100006") -- expired
        sync.publish_stats(dict) -- this worker joins: the index keeps the newest 32 pids
        local stats = sync.stats_of(dict)
        for i = 1, 4 do
            t.eq(stats[pids[i]], nil) -- aged out of the index
        end
        t.eq(stats["100005"].calls, 5)
        t.eq(stats["100006"], nil) -- its counters expired
        t.eq(stats["100035"].calls, 35)
        t.eq(stats["100036"], nil) -- never in the index
        t.truthy(stats[tostring(ngx.worker.pid())])
        local n = 0
        for _ in string.gmatch(dict:get(K.stats_pids), "%d+") do
            n = n + 1
        end
        t.eq(n, 32)
    end)
end
