-- Drives rulegate.cluster from a JSON request, for the pytest client tests.
-- POST /call {nodes, key, cmds, readonly, opts, reset_stats, poison_map, forget_map,
-- scan_reader (HSCAN replies read by resp.read_scan)}
-- -> {ok, res, err, stats, elapsed}
local cjson = require("cjson.safe")
local cluster = require("rulegate.cluster")
local resp = require("rulegate.resp")

local _M = {}

function _M.call()
    ngx.req.read_body()
    local req = assert(cjson.decode(ngx.req.get_body_data()))
    local opts = req.opts or {}
    opts.dict = "rulegate"
    opts.startup_nodes = req.nodes
    local c = cluster.new(opts)
    if req.reset_stats then
        cluster.reset_stats()
    end
    if req.forget_map then
        ngx.shared.rulegate:flush_all()
    end
    if req.poison_map then
        -- every slot on one node: calls must follow MOVED and repair the map
        assert(c:store_ranges({ { first = 0, last = 16383, master = req.poison_map, replicas = {} } }))
    end
    ngx.update_time()
    local t0 = ngx.now()
    local res, err
    local n = req.repeat_n or 1
    for _ = 1, n do
        if req.key then
            res, err = c:pipeline(req.key, req.cmds,
                { readonly = req.readonly, reader = req.scan_reader and resp.read_scan or nil })
        end
    end
    if res and req.scan_reader then -- resp.read_scan's replies as {cursor, pairs = {field, value, ...}}
        for i, r in ipairs(res) do
            if type(r) == "table" and r.s then
                local flat = {}
                for k = 1, r.n do
                    flat[#flat + 1] = r.ids[k]
                    flat[#flat + 1] = r.s:sub(r.first[k], r.last[k])
                end
                res[i] = { cursor = r.cursor, pairs = flat }
            end
        end
    end
    ngx.update_time()
    local out = {
        ok = res ~= nil, res = res, err = err, stats = cluster.stats,
        elapsed = ngx.now() - t0,
    }
    if req.show_map then
        local idx = c:slot_index()
        out.map = {}
        for _, s in ipairs(req.show_map) do
            local r = idx and idx[s]
            out.map[#out.map + 1] = r and { r.master, r.replicas } or cjson.null
        end
    end
    ngx.say(cjson.encode(out))
end

-- POST /decide {rules, revision, request} -> the router's decision (no Redis)
function _M.decide()
    local router = require("rulegate.router")
    ngx.req.read_body()
    local body = assert(cjson.decode(ngx.req.get_body_data()))
    local rs = router.compile(body.rules, body.revision)
    local r = body.request
    local req = {
        host = r.host, path = r.path, method = r.method, ip = r.ip, now = r.now,
        headers = r.headers or {}, cookies = r.cookies or {}, args = r.args or {},
    }
    local d = router.decide(rs, req)
    ngx.say(cjson.encode(d))
end

return _M
