-- rulegate for nginx: init(opts) in init_by_lua, init_worker() in
-- init_worker_by_lua, access() in access_by_lua, status() as a content handler.
-- Requests are routed from memory only: zero Redis calls on the request path.
local cjson = require("cjson.safe")
local router = require("rulegate.router")
local request = require("rulegate.request")
local sync = require("rulegate.sync")
local cluster = require("rulegate.cluster")
local exposure = require("rulegate.exposure")
local breaker = require("rulegate.breaker")
local outcomes = require("rulegate.outcomes")
local loop_lag = require("rulegate.loop_lag")
local metrics = require("rulegate.metrics")

local ngx = ngx
local var = ngx.var
local header = ngx.header
local log = ngx.log
local ERR = ngx.ERR
local NOTICE = ngx.NOTICE
local now = ngx.now
local type = type
local rawget = rawget
local xpcall = xpcall
local traceback = debug.traceback
local timer_at = ngx.timer.at
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local error = error
local lower = string.lower
local match = string.match
local next = next
local sort = table.sort

local has_jit, jit = pcall(require, "jit")
local flush_traces = has_jit and type(jit) == "table" and jit.flush or function() end

local _M = { _VERSION = "0.1.0" }

local K = sync.KEYS
local conf         -- set by init(), inherited by the workers
local current = {} -- this worker's compiled rule set: { ver, rs, routes, bad_ver }

local DEFAULTS = {
    dict = "rulegate", refresh_interval = 1, max_stale = 30, heartbeat_interval = 5,
    checkpoint_delay = 1, checkpoint_max = 10, -- seconds; see sync.lua checkpoint()
    lock_ttl = 30, upstream_var = "rulegate_upstream", response_headers = true,
    connect_timeout = 500, send_timeout = 1000, read_timeout = 1000,
    max_attempts = 3, max_connections = 2, read_replica = false,
    notifications = true, listen_max = 30, listen_lock_ttl = 5, log_batch = 1000,
    background_compile_min = 2000,
    check_thread_pool = "rulegate", -- nginx thread_pool of a full load's check (sync.lua); false: none
    ssl = false, ssl_verify = true,
    exposure = true, exposure_flush_interval = 1, -- decisions per rule/upstream (exposure.lua); outcomes.lua too
    loop_lag_interval = 0.1, -- seconds between two looks at the event loop's lag (loop_lag.lua); 0 or false: none
}


local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    local data = f:read("*a")
    f:close()
    return data
end


local function hostname()
    return match(read_file("/proc/sys/kernel/hostname") or "", "^%s*(.-)%s*$") or "nginx"
end


-- The sorted, distinct upstream names of opts.upstreams (the names of the
-- upstream {} blocks, reported in the heartbeat); a bad one is a config error.
-- The pattern is the rule schema's (rulegate/schema.py): 1-128 of A-Za-z0-9_.:-
local MAX_UPSTREAMS = 512

local function check_upstreams(list)
    if list == nil then
        return {}
    end
    if type(list) ~= "table" then
        error("bad argument #1 to 'init' (opts.upstreams must be a list of upstream names)", 4)
    end
    local seen, out = {}, {}
    for i, name in ipairs(list) do
        if type(name) ~= "string" or #name > 128 or not match(name, "^[%w_.:-]+$") then
            error("bad argument #1 to 'init' (opts.upstreams[" .. i .. "] " .. cjson.encode(name)
                .. " is not an upstream name: 1-128 of A-Z a-z 0-9 _ . : -)", 4)
        end
        if not seen[name] then
            seen[name], out[#out + 1] = true, name
        end
    end
    if #out > MAX_UPSTREAMS or next(list) ~= nil and #list == 0 then
        error("bad argument #1 to 'init' (opts.upstreams must be a list of at most " .. MAX_UPSTREAMS
            .. " upstream names)", 4)
    end
    sort(out)
    return out
end


local function check_opts(opts)
    if type(opts) == "string" then
        local data, err = read_file(opts)
        if not data then
            error("rulegate: cannot read the config file " .. opts .. ": " .. tostring(err), 3)
        end
        local decoded = cjson.decode(data)
        if type(decoded) ~= "table" then
            error("rulegate: the config file " .. opts .. " is not a JSON object", 3)
        end
        opts = decoded
    end
    if type(opts) ~= "table" then
        error("bad argument #1 to 'init' (table or path expected, got " .. type(opts) .. ")", 3)
    end
    local c = {}
    for k, v in pairs(DEFAULTS) do
        c[k] = v
    end
    for k, v in pairs(opts) do
        c[k] = v
    end
    if type(c.namespace) ~= "string" or not match(c.namespace, "^[a-z0-9][a-z0-9_.-]*$") then
        error("bad argument #1 to 'init' (opts.namespace must be a namespace name)", 3)
    end
    if type(c.startup_nodes) ~= "table" or #c.startup_nodes == 0 then
        error("bad argument #1 to 'init' (opts.startup_nodes must list host:port)", 3)
    end
    if type(c.ssl) ~= "boolean" or type(c.ssl_verify) ~= "boolean" then
        error("bad argument #1 to 'init' (opts.ssl and opts.ssl_verify must be true or false)", 3)
    end
    if c.server_name ~= nil and (type(c.server_name) ~= "string" or c.server_name == "") then
        error("bad argument #1 to 'init' (opts.server_name must be a host name)", 3)
    end
    if type(c.exposure) ~= "boolean" then
        error("bad argument #1 to 'init' (opts.exposure must be true or false)", 3)
    end
    if type(c.exposure_flush_interval) ~= "number" or c.exposure_flush_interval <= 0 then
        error("bad argument #1 to 'init' (opts.exposure_flush_interval must be a number of seconds > 0)", 3)
    end
    if c.check_thread_pool ~= false and (type(c.check_thread_pool) ~= "string" or c.check_thread_pool == "") then
        error("bad argument #1 to 'init' (opts.check_thread_pool must be a thread_pool name or false)", 3)
    end
    c.check_thread_pool = c.check_thread_pool or nil
    local lag = c.loop_lag_interval
    if lag ~= false and lag ~= 0 and (type(lag) ~= "number" or lag < 0.001 or lag > 60) then
        error("bad argument #1 to 'init' (opts.loop_lag_interval must be 0.001-60 seconds, or 0 or false for none)", 3)
    end
    c.loop_lag_interval = lag ~= 0 and lag or false
    c.upstreams = check_upstreams(c.upstreams)
    c.shm = ngx.shared[c.dict]
    if not c.shm then
        error("bad argument #1 to 'init' (no lua_shared_dict named " .. tostring(c.dict) .. ")", 3)
    end
    c.gateway_id = c.gateway_id or (hostname() .. ":" .. ngx.config.prefix())
    c.keys = sync.ns_keys(c.namespace)
    c.cluster = {
        dict = c.dict, name = "cl:" .. c.namespace, startup_nodes = c.startup_nodes,
        username = c.username, password = c.password,
        connect_timeout = c.connect_timeout, send_timeout = c.send_timeout,
        read_timeout = c.read_timeout, max_attempts = c.max_attempts,
        max_connections = c.max_connections, read_replica = c.read_replica,
        ssl = c.ssl, ssl_verify = c.ssl_verify, server_name = c.server_name,
    }
    -- the listener renews its lock after every read timeout
    c.listen_lock_ttl = math.max(c.listen_lock_ttl, c.read_timeout / 1000 * 3)
    if c.ip_header then
        c.ip_header = lower(c.ip_header)
    end
    if c.now_header then
        c.now_header = lower(c.now_header)
    end
    if c.request_id_header then
        c.request_id_header = lower(c.request_id_header)
    end
    return c
end


-- The dict's current set compiled here, in the master (init_by_lua), for the
-- workers it forks to start serving at once: after a SIGHUP the dict still
-- holds the rules, and each new worker compiled them in init_worker before it
-- accepted anything, while nginx stops the old workers' accepting 100 ms after
-- the fork: requests waited ~0.55 s at 10,000 rules (bench/nginx_hup.py); at a
-- start from a snapshot every worker compiled the same set. The master keeps
-- its copy until the next reload (a worker's heap's worth). A worker forked
-- later (a crashed one replaced) brings the inherited set up to date before it
-- serves (start_from_inherited). Nothing here may fail the master's start or
-- reload: an error is logged and the workers compile as before.
local function compile_in_master(loaded)
    local shm = conf.shm
    local ver = shm:get(K.ver)
    if ver == nil then
        return
    end
    -- loaded: the set load_snapshot compiled from the file; its rules are reused (same bytes)
    local ok, rs, routes = xpcall(sync.compile_current, traceback, shm, ver, nil, loaded)
    if not ok or not rs then
        log(NOTICE, "rulegate: the workers compile the rule set themselves: ", ok and routes or rs)
        return
    end
    current.rs, current.ver, current.routes, current.inherited = rs, ver, routes, true
    shm:incr(K.master_compiles, 1, 0)
    flush_traces() -- the workers record their own
end


-- True in nginx's master (or its only process, master_process off) running
-- init_by_lua; false where init() runs per request (lua_code_cache off).
local function in_master()
    local ok, process = pcall(require, "ngx.process")
    if not ok or type(process) ~= "table" then
        return false
    end
    local kind = process.type()
    return kind == "master" or kind == "single"
end


-- init_by_lua: read the options (a table, or the path of a JSON file), claim
-- the shared dict for the namespace (sync.claim), load the snapshot so a
-- restart with Redis down routes with the last good rules, and compile the
-- dict's set for the workers (compile_in_master).
function _M.init(opts)
    conf = check_opts(opts)
    sync.claim(conf) -- a SIGHUP onto another namespace: nothing of the previous one is kept
    local loaded -- the set compiled from the snapshot file, when it was loaded
    if conf.snapshot_path then
        local ok, res = sync.load_snapshot(conf)
        if ok then
            loaded = res
            log(NOTICE, "rulegate: namespace ", conf.namespace, " revision ",
                conf.shm:get(K.rev), " loaded from ", conf.snapshot_path)
        else
            log(NOTICE, "rulegate: no snapshot loaded: ", res)
        end
    end
    if in_master() then -- not per request with lua_code_cache off (a new VM runs init() for each)
        sync.reserve_strings()
        compile_in_master(loaded)
    end
    return true
end


-- This worker's compiled rule set, rebuilt when the shared dict's version moved.
-- The dict is looked at once per millisecond of nginx's cached clock: a shared-dict
-- read takes its lock, and under load many requests share one event-loop tick.
-- A set of background_compile_min rules or more is compiled in a timer that
-- yields between slices; requests keep the current set until it is done.
local checked_at = -1
local compiling = nil -- the version a background timer is compiling (one at a time)

-- routes (id -> route) of the rules rs was compiled from; the syncing worker
-- passes its held map, which it only changes while it holds the sync lock (no
-- other worker publishes then, so this worker applies no shared delta meanwhile).
-- whole: rs was compiled from a whole rule set (not a delta onto the current
-- one). Then this worker's JIT traces are dropped: a trace keeps the closures
-- and tables it was recorded with as constants (a loader's closure, whose
-- upvalues reach the set it built or replaced), so without the flush a replaced
-- set stays alive, and resident, for as long as such a trace does (measured at
-- 20,000 rules: two replaced sets, +21-52 MiB of heap, RSS 61 -> 170 MiB after
-- three full reloads; bench/nginx_memory.py --full-reloads). The hot paths are
-- recorded again within a few requests; deltas keep every trace.
local function install(ver, rs, routes, whole)
    current.rs, current.ver, current.routes = rs, ver, routes
    if routes then
        breaker.prune(routes) -- a deleted rule's breaker leaves status, heartbeat and metrics
    end
    if whole then
        flush_traces()
    end
end


-- Compile the dict's payload (version ver); installed unless another set was
-- installed while a yielding compile ran. The compiled rules of serving (default:
-- the set this worker serves) whose bytes did not change are reused.
local function compile_ver(ver, pause, serving)
    local from = current.ver
    local rs, routes, retry = sync.compile_current(conf.shm, ver, pause, serving or current.rs)
    if not rs then
        if not retry then
            current.bad_ver = ver
        end
        log(retry and NOTICE or ERR, "rulegate: cannot compile the shared rule set: ", routes)
        return nil
    end
    conf.shm:incr(K.worker_compiles, 1, 0)
    if current.ver == from then
        install(ver, rs, routes, true)
    end
    return rs
end


local function compile_in_background(premature)
    if premature then
        return
    end
    local ok, err = xpcall(compile_ver, traceback, compiling, sync.pauser(10))
    compiling = nil
    if not ok then
        log(ERR, "rulegate: background compile failed: ", err)
    end
end


-- The published deltas from version `from` to `to` applied in a timer that
-- yields (deltas of more than INLINE_DELTA_MAX rules together to a set of
-- background_compile_min rules or more, as a set that large is compiled: ~25-80
-- us a rule here, which a request would otherwise wait for; a smaller set
-- takes it inline, at most a quarter of its rules); installed unless another set was
-- meanwhile. `compiling` holds `to` until it is done: no other catch-up runs.
-- current.routes is the map the deltas update: off current while they do (a
-- chain broken half-way leaves it for the next compile to rebuild).
local INLINE_DELTA_MAX = 32

local function apply_in_background(premature, from, to, rs, routes)
    if premature then
        compiling = nil
        return
    end
    local ok, nrs = xpcall(sync.apply_shared_deltas, traceback, conf.shm, from, to, rs, routes, sync.pauser(10))
    compiling = nil
    if not ok then
        log(ERR, "rulegate: background delta failed: ", nrs)
    elseif nrs and current.ver == from then
        install(to, nrs, routes)
        conf.shm:incr(K.worker_deltas, 1, 0)
    end
end


-- This worker's set, brought up to the dict's version: a delta applied here
-- (deltas of more than INLINE_DELTA_MAX rules together to a large set in a timer), a set of
-- background_compile_min rules or more compiled in a timer (the worker serves
-- what it served meanwhile: its previous set; before its first, requests wait
-- for it in first_set()), a smaller one compiled here.
-- inline: compile here whatever the size: true (init_worker: nothing is served
-- yet) or a pause (sync.pauser: a timer that needs the set now yields).
-- A worker with no set yet looks at the dict on every request: another worker
-- may have published the first one within the same millisecond (a request it
-- answered with the rules, then one here without them).
local function ruleset(inline)
    local t = now()
    if t == checked_at and current.rs ~= nil then -- a set is served: the dict looked at once a millisecond
        return current.rs
    end
    checked_at = t
    local shm = conf.shm
    local ver = shm:get(K.ver)
    if ver == nil or ver == current.ver or ver == current.bad_ver then
        return current.rs
    end
    if current.rs and current.routes and compiling == nil and inline == nil
            and (sync.chain_size(shm, current.ver, ver, INLINE_DELTA_MAX) or 0) > INLINE_DELTA_MAX
            and (shm:get(K.count) or 0) >= conf.background_compile_min then
        local routes = current.routes
        current.routes = nil
        local ok, err = timer_at(0, apply_in_background, current.ver, ver, current.rs, routes)
        if ok then
            compiling = ver
            return current.rs
        end
        current.routes = routes
        log(ERR, "rulegate: cannot start a background delta: ", err)
    end
    if current.rs and current.routes and compiling == nil then
        -- the syncing worker's deltas: O(changed rules), applied right here
        local rs, routes = sync.apply_shared_deltas(shm, current.ver, ver, current.rs, current.routes,
                                                    inline ~= true and inline or nil)
        if rs then
            install(ver, rs, routes)
            shm:incr(K.worker_deltas, 1, 0)
            return rs
        end
        current.routes = nil -- maybe changed half-way: the next compile rebuilds it
    end
    if not inline and (shm:get(K.count) or 0) >= conf.background_compile_min then
        if compiling == nil then
            local ok, err = timer_at(0, compile_in_background)
            if ok then
                compiling = ver
            else
                log(ERR, "rulegate: cannot start a background compile: ", err)
            end
        end
        return current.rs
    end
    return compile_ver(ver, inline ~= true and inline or nil) or current.rs
end


-- The set a request gets while its worker's first set is compiled in a timer
-- (ruleset()): it waits for it, yielding, at most FIRST_SET_WAIT seconds; in a
-- phase that cannot yield (a decide() from set_by_lua, say), or when the timer
-- has not finished by then, the set is compiled right here, the loop held, as
-- every first set was before the timer: a request never goes without the rules
-- the dict holds. nil when no first set is being compiled.
local FIRST_SET_WAIT = 2
local YIELDABLE = { rewrite = true, access = true, content = true, timer = true }

local function first_set()
    if compiling == nil then
        return nil
    end
    if YIELDABLE[ngx.get_phase()] then
        local deadline = now() + FIRST_SET_WAIT
        while compiling ~= nil and current.rs == nil and now() < deadline do
            ngx.sleep(0.002)
        end
        if current.rs or compiling == nil then -- nil: the timer's compile failed (logged), as ruleset() would
            return current.rs
        end
    end
    return compile_ver(compiling) or current.rs -- the timer's later install of the same version is skipped
end


-- This worker's compiled rule set (nil before the first one arrives).
_M.ruleset = function()
    return ruleset()
end


-- A worker forked with the master's set (compile_in_master): when the dict moved
-- on since (a change during a SIGHUP, or a worker replaced long after the
-- master's start), the published deltas bring the set up to date; when they
-- are gone, the dict's set is compiled now, reusing the inherited rules whose
-- bytes did not change. The inherited set is never served while it is older
-- than the deltas the dict keeps (ruleset() would serve it during a background
-- compile).
local function start_from_inherited()
    current.inherited = nil
    local shm = conf.shm
    local ver = shm:get(K.ver)
    if ver == current.ver or ver == nil then
        return
    end
    local rs, routes = sync.apply_shared_deltas(shm, current.ver, ver, current.rs, current.routes)
    if rs then
        install(ver, rs, routes)
        shm:incr(K.worker_deltas, 1, 0)
        return
    end
    local old = current.rs
    current.rs, current.ver, current.routes = nil, nil, nil
    compile_ver(ver, nil, old)
end


-- Log the error of a worker's timer that did not start (the worker serves without it).
local function logged(ok, err)
    if not ok then
        log(ERR, "rulegate: ", err)
    end
end


function _M.init_worker()
    if not conf then
        error("rulegate.init() must run in init_by_lua before init_worker()", 2)
    end
    if current.inherited then
        start_from_inherited()
    end
    conf.on_tick = function(pause) -- pause: compile now, yielding (sync.lua held_state)
        return ruleset(pause)
    end
    conf.on_compiled = install -- the syncing worker serves what it just compiled
    conf.serving = function() -- the set whose compiled rules a full reload reuses, its version and routes
        return current.rs, current.ver, current.routes
    end
    conf.current_rs = function(ver) -- the set a delta onto version ver can start from
        if current.ver == ver and current.routes then
            return current.rs
        end
    end
    ruleset(true)
    logged(sync.start(conf))
    if conf.exposure then
        logged(exposure.start(conf.shm, conf.exposure_flush_interval))
    end
    logged(outcomes.start(conf.shm, conf.exposure_flush_interval))
    if conf.loop_lag_interval then
        logged(loop_lag.start(conf.shm, conf.loop_lag_interval))
    end
end


local function respond(d)
    ngx.status = d.status
    for k, v in pairs(d.headers) do
        header[k] = v
    end
    local body = d.body or ""
    if d.status ~= 204 and d.status ~= 304 then
        header["Content-Length"] = #body
    end
    if d.status == 205 then
        header["Content-Type"] = nil -- no body, no type (nginx drops it itself for 204 and 304)
    end
    if body ~= "" then
        ngx.print(body)
    else
        ngx.send_headers()
    end
    return ngx.exit(ngx.HTTP_OK)
end


local outcomes_seen = false -- set once a request of this worker needs its outcome (log() skips ngx.ctx before)


-- The decision for the current request, the rule set it came from and the id of
-- the breaker rule it passed (nil when none: docs/rules.md, "Breakers").
function _M.decide()
    local rs = ruleset() or first_set()
    if not rs then
        return nil
    end
    local req = request.build(conf) -- the table is reused: build() clears an earlier request's breaker
    return router.decide(rs, req, breaker), rs, rawget(req, "breaker") -- never lazy: no __index call
end


-- access_by_lua: set the upstream variable, or answer the request itself.
function _M.access()
    local d, rs, passed = _M.decide()
    if d == nil then
        if conf.default_upstream then
            var[conf.upstream_var] = conf.default_upstream
        end
        return
    end
    if passed or d.guarded then -- a breaker rule let it through, or a guarded rule decided it: log() counts it
        local ctx = ngx.ctx
        ctx.rulegate_breaker, ctx.rulegate_outcome = passed, d
        outcomes_seen = true
    end
    if conf.exposure then
        exposure.count(d) -- a per-worker table; flushed to the shared dict by a timer
    end
    local rh = conf.response_headers
    if rh == "vars" then
        -- ~20 ns: nginx adds the headers (add_header X-Rulegate-Rule $rulegate_rule)
        var.rulegate_rev = rs.revision_text
        var.rulegate_rule = d.rule_id or ""
    elseif rh then
        -- ~600 ns per header through ngx.header
        header["X-Rulegate-Rev"] = rs.revision_text
        if d.rule_id then
            header["X-Rulegate-Rule"] = d.rule_id
        end
    end
    local action = d.action
    if action == "proxy" then
        var[conf.upstream_var] = d.upstream
        return
    end
    if action == "pass" then
        if conf.default_upstream then
            var[conf.upstream_var] = conf.default_upstream
        end
        return
    end
    return respond(d)
end


-- log_by_lua: the outcome of a request a breaker rule let through (reported to
-- the breaker) or a guarded rule decided, counted per rule and upstream
-- (docs/rules.md "Outcome counts"). Until a request of this worker needed it
-- (outcomes_seen), ngx.ctx is not touched.
function _M.log()
    if not outcomes_seen then
        return
    end
    local ctx = ngx.ctx
    local d = ctx.rulegate_outcome
    if d == nil then
        return
    end
    local t = ngx.now()
    local status, latency = ngx.status or 0, (t - ngx.req.start_time()) * 1000
    local rule_id = ctx.rulegate_breaker
    if rule_id then
        breaker.report(rule_id, t, status, latency)
    end
    local upstream = d.upstream
    if upstream == nil then -- pass: the location's default upstream
        upstream = var[conf.upstream_var]
        if upstream == nil or upstream == "" then
            upstream = "@pass"
        end
    end
    outcomes.count(d.rule_id or "", upstream, status, latency)
end


-- A JSON view of this gateway's sync state (for /rulegate/status).
function _M.state()
    local shm = conf.shm
    local t = now()
    local last_ok = shm:get(K.last_ok)
    local staleness = last_ok and (t - last_ok) or cjson.null
    local stats = sync.stats_of(shm) -- not shm:get_keys(0): every key of the dict, its lock held
    stats[tostring(ngx.worker.pid())] = cluster.stats
    local rs = current.rs
    local pub = sync.published(shm)
    return {
        namespace = conf.namespace, gateway_id = conf.gateway_id,
        revision = pub.revision or cjson.null, generation = pub.generation or cjson.null,
        rules = pub.rules or 0, source = pub.source or cjson.null,
        state = shm:get(K.state) or "starting", last_ok = last_ok or cjson.null,
        error_kind = shm:get(K.error_kind) or cjson.null,
        upstreams = #conf.upstreams > 0 and conf.upstreams or cjson.null, -- Debian's cjson has no empty array
        staleness = staleness,
        stale = sync.is_stale(shm, conf, t),
        digest = pub.digest or cjson.null,
        store_revision = shm:get(K.store_rev) or cjson.null,
        store_digest = shm:get(K.store_digest) or cjson.null,
        in_sync = sync.in_sync(shm),
        refused_revision = shm:get(K.refused_rev) or cjson.null,
        refused_reason = shm:get(K.refused_reason) or cjson.null,
        digest_mismatches = shm:get(K.digest_mismatches) or 0,
        last_error = shm:get(K.last_error) or cjson.null,
        error_since = shm:get(K.error_since) or cjson.null,
        checks = shm:get(K.checks) or 0, applies = shm:get(K.applies) or 0,
        full_reloads = shm:get(K.full_reloads) or 0, deltas_applied = shm:get(K.deltas_applied) or 0,
        reloads_skipped = shm:get(K.reloads_skipped) or 0, large_deltas = shm:get(K.large_deltas) or 0,
        worker_deltas = shm:get(K.worker_deltas) or 0, worker_compiles = shm:get(K.worker_compiles) or 0,
        master_compiles = shm:get(K.master_compiles) or 0,
        checkpoints = shm:get(K.checkpoints) or 0, payload_pending = shm:get(K.pending) or 0,
        pool_checks = shm:get(K.pool_checks) or 0, pool_one_pass = shm:get(K.pool_one_pass) or 0,
        heartbeat_error = shm:get(K.hb_error) or cjson.null,
        listener = shm:get(K.sub_lock) or cjson.null,
        listener_error = shm:get(K.sub_error) or cjson.null,
        listener_subscriptions = shm:get(K.subscriptions) or 0, listener_failures = shm:get(K.sub_failures) or 0,
        worker = { pid = ngx.worker.pid(), revision = rs and rs.revision or cjson.null,
                   compile_failures = router.compile_failures },
        cluster_stats = stats,
        exposure = conf.exposure and exposure.totals(shm) or cjson.null,
        breakers = breaker.snapshot_all(ngx.now()), -- this worker's (the one answering)
        breakers_fleet = outcomes.breakers(shm) or {}, -- every worker's, as published by its last flush
        outcomes = outcomes.totals(shm), -- cumulative outcome counts of all workers (docs/rules.md "Outcome counts")
        loop_lag = loop_lag.totals(shm) or cjson.null, -- every worker's event-loop lag histogram (loop_lag.lua)
    }
end


-- Prometheus text exposition of this gateway, all workers together (for /rulegate/metrics).
function _M.metrics()
    local text = metrics.render(_M.state())
    ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    ngx.header["Cache-Control"] = "no-store"
    ngx.print(text)
    return ngx.exit(ngx.HTTP_OK)
end


function _M.status()
    local st = _M.state()
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    ngx.say(cjson.encode(st))
    return ngx.exit(ngx.HTTP_OK)
end


return _M
