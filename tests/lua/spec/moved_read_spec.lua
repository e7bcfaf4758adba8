-- A commit that lands while a check reads the whole namespace moves the
-- revision under the read: the check reads again (a few times) instead of
-- reporting the store as failing. The store here is a stub cluster client
-- whose revision moves during the first scans (as a commit would).
local cluster = require("rulegate.cluster")
local sync = require("rulegate.sync")

local dict = ngx.shared.rulegate -- the spec harness's dict

-- A client over one namespace with no rules; `moves` scans each see a commit land.
local function stub(store)
    local keys = sync.ns_keys(store.ns)
    local client = {}
    function client:pipeline(_, cmds)
        local out = {}
        for i, c in ipairs(cmds) do
            local op = c[1]
            if op == "GET" and c[2] == keys.rev then
                out[i] = tostring(store.rev)
            elseif op == "HGET" then
                out[i] = c[3] == "gen" and "g1" or ngx.null
            elseif op == "HSCAN" then
                store.scans = store.scans + 1
                if store.moves > 0 then
                    store.moves = store.moves - 1
                    store.rev = store.rev + 1
                end
                out[i] = { "0", {} }
            else
                out[i] = {}
            end
        end
        return out
    end
    function client:command()
        return 1
    end
    return client
end

local function check(moves, state)
    dict:flush_all()
    dict:set("sync:state", state) -- (a state that does not change is not logged again)
    local conf = { shm = dict, namespace = "mv", keys = sync.ns_keys("mv"), cluster = {}, gateway_id = "spec",
                   log_batch = 1000, max_stale = 60, heartbeat_interval = 10 }
    local store = { ns = "mv", rev = 1, moves = moves, scans = 0 }
    local saved = cluster.new
    cluster.new = function()
        return stub(store)
    end
    local ok, res, err = pcall(sync.run_once, conf)
    cluster.new = saved
    assert(ok, res)
    return res, err, store, sync.stats_of(dict)
end

return function(t)
    t.it("a read a commit moved is read again: the check succeeds at the revision the store settled on", function()
        local res, err, store = check(2)
        t.eq({ res, err, store.scans }, { true, nil, 3 })
        t.eq({ dict:get("sync:state"), dict:get("rs:rev") }, { "ok", 3 })
        dict:flush_all()
    end)

    t.it("reads that keep moving are an error after three", function()
        local res, err, store = check(5, "error") -- already failing: no error line in the harness's log
        t.eq({ res, store.scans }, { nil, 3 })
        t.truthy(err:find("revision moved during the read", 1, true), err)
        t.eq(dict:get("sync:state"), "error")
        dict:flush_all()
    end)
end
