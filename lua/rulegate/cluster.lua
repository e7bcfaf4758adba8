-- A bounded Redis Cluster client on cosockets (lua-resty-redis).
--
-- Every call has a budget: at most `max_attempts` command attempts and at
-- most `max_connections` redis instances created, whatever happens (timeouts,
-- redirects, failover). The slot map lives in a lua_shared_dict, each worker
-- keeps a decoded copy keyed on the dict's version counter.
-- Connections come from rulegate.node; with `ssl` each is TLS, verified against
-- nginx's lua_ssl_trusted_certificate unless `ssl_verify` is false.
local cjson = require("cjson.safe")
local crc16 = require("rulegate.crc16")
local node = require("rulegate.node")
local resp = require("rulegate.resp")
local topology = require("rulegate.slots")

local ngx = ngx
local shared = ngx.shared
local now = ngx.now
local update_time = ngx.update_time
local sleep = ngx.sleep
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local error = error
local unpack = unpack
local remove = table.remove
local sub = string.sub
local match = string.match
local lower = string.lower
local min = math.min
local rawget = rawget

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

-- per-worker counters; tests and the status endpoint read them
local stats = {
    calls = 0, attempts = 0, connections = 0, redirects = 0, moved = 0,
    ask = 0, retries = 0, failures = 0, refreshes = 0, budget_exhausted = 0,
    max_attempts_per_call = 0, max_connections_per_call = 0,
}
_M.stats = stats

-- per-worker decoded slot maps: name -> { ver = n, slots = { [0..16383] = range } }
local worker_maps = {}
local store_seq = 0

local ASKING = resp.encode({ "ASKING" })
local RETRYABLE = { TRYAGAIN = true, CLUSTERDOWN = true, LOADING = true, MASTERDOWN = true }

local DEFAULTS = {
    name = "default", connect_timeout = 500, send_timeout = 1000, read_timeout = 1000,
    keepalive_timeout = 60000, keepalive_pool_size = 16, max_attempts = 3,
    max_connections = 2, read_replica = false, refresh_interval = 1, lock_ttl = 5,
    slots_ttl = 10, deadline = 3000, ssl = false, ssl_verify = true,
}


function _M.reset_stats()
    for k in pairs(stats) do
        stats[k] = 0
    end
end


local split_addr = topology.split_addr
_M.split_addr = split_addr
_M.parse_redirect = topology.parse_redirect
_M.parse_slots = topology.parse_slots
_M.build_slot_index = topology.build_slot_index


function _M.new(opts)
    if type(opts) ~= "table" then
        error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
    end
    local dict = opts.dict and shared[opts.dict]
    if not dict then
        error("bad argument #1 to 'new' (opts.dict must name a lua_shared_dict)", 2)
    end
    local nodes = opts.startup_nodes
    if type(nodes) ~= "table" or #nodes == 0 then
        error("bad argument #1 to 'new' (opts.startup_nodes must be a non-empty list)", 2)
    end
    local self = { dict = dict, startup_nodes = {} }
    for k, v in pairs(DEFAULTS) do
        local o = opts[k]
        if o == nil then
            o = v
        end
        self[k] = o
    end
    for i, n in ipairs(nodes) do
        if type(n) == "table" then
            n = n[1] .. ":" .. tostring(n[2])
        end
        if not split_addr(n) then
            error("bad argument #1 to 'new' (bad startup node " .. tostring(n) .. ")", 2)
        end
        self.startup_nodes[i] = n
    end
    if type(self.ssl) ~= "boolean" or type(self.ssl_verify) ~= "boolean" then
        error("bad argument #1 to 'new' (opts.ssl and opts.ssl_verify must be booleans)", 2)
    end
    if opts.server_name ~= nil and (type(opts.server_name) ~= "string" or opts.server_name == "") then
        error("bad argument #1 to 'new' (opts.server_name must be a non-empty string)", 2)
    end
    self.server_name = opts.server_name
    self.username = opts.username
    self.password = opts.password
    self.pool_suffix = node.pool_suffix(self)
    self.key_slots = self.name .. ":slots"
    self.key_ver = self.name .. ":slots_ver"
    self.key_lock = self.name .. ":slots_lock"
    self.key_last = self.name .. ":slots_last"
    self.key_stale = self.name .. ":slots_stale"
    return setmetatable(self, mt)
end


-- The worker's decoded slot index, refreshed from the shared dict when its version moved.
function _M.slot_index(self)
    local ver = self.dict:get(self.key_ver)
    if not ver then
        return nil
    end
    local cached = worker_maps[self.name]
    if cached and cached.ver == ver then
        return cached.slots
    end
    local ranges = cjson.decode(self.dict:get(self.key_slots) or "")
    if type(ranges) ~= "table" then
        return nil
    end
    local slots = _M.build_slot_index(ranges)
    worker_maps[self.name] = { ver = ver, slots = slots }
    return slots
end


function _M.store_ranges(self, ranges)
    local ok, err = self.dict:set(self.key_slots, cjson.encode(ranges))
    if not ok then
        return nil, "failed to store the slot map: " .. tostring(err)
    end
    -- a version unique across flushes and workers, so no worker keeps a stale copy
    store_seq = store_seq + 1
    self.dict:set(self.key_ver, now() .. ":" .. ngx.worker.pid() .. ":" .. store_seq)
    self.dict:set(self.key_last, now())
    self.dict:delete(self.key_stale)
    return true
end


-- ---------------------------------------------------------------------------
-- one call's state: its budget and the connections it opened

local function budget_new(self)
    return {
        attempts = 0, conns = 0, pool = {}, failed = {},
        deadline = now() + self.deadline / 1000,
    }
end


-- An open connection to addr for this call: reused within the call, else a
-- new redis instance (counted against max_connections).
local function connect(self, b, addr, readonly)
    local key = readonly and addr .. "#ro" or addr
    local red = b.pool[key]
    if red then
        return red
    end
    if b.conns >= self.max_connections then
        return nil, "connection budget exhausted (" .. self.max_connections .. ")", true
    end
    local host, port = split_addr(addr)
    if not host then
        return nil, "bad node address " .. tostring(addr)
    end
    b.conns = b.conns + 1
    stats.connections = stats.connections + 1
    local err
    red, err = node.open(self, addr, host, port, readonly)
    if not red then
        return nil, err
    end
    b.pool[key] = red
    return red
end


local function drop(b, addr, red)
    red:close()
    if b.pool[addr] == red then
        b.pool[addr] = nil
    end
    if b.pool[addr .. "#ro"] == red then
        b.pool[addr .. "#ro"] = nil
    end
end


local function release(self, b)
    for key, red in pairs(b.pool) do
        local ok = red:set_keepalive(self.keepalive_timeout, self.keepalive_pool_size)
        if not ok then
            red:close()
        end
        b.pool[key] = nil
    end
end


-- cmds sent on sock as one pipeline (each behind ASKING with asking), each
-- reply read by reader (resp.read_scan) off one resp.stream: the replies, or nil, err.
local function run_read(sock, cmds, asking, reader)
    local out = {}
    for _, c in ipairs(cmds) do
        if asking then
            out[#out + 1] = ASKING
        end
        out[#out + 1] = resp.encode(c)
    end
    local ok, err = sock:send(out)
    if not ok then
        return nil, err
    end
    local res, st = {}, resp.stream(sock)
    for i = 1, #cmds do
        local r
        if asking then
            r, err = reader(st)
            if r == nil then
                return nil, err
            end
        end
        r, err = reader(st)
        if r == nil then
            return nil, err
        end
        res[i] = r
    end
    return res
end


-- Send cmds (a list of argument lists) on red as one pipeline; with asking,
-- each command goes behind its own ASKING (it covers only the next command).
-- Returns the list of replies (error replies as {false, err}) or nil, err.
local function run_pipeline(red, cmds, asking, reader)
    local sock = reader and rawget(red, "_sock")
    if sock and resp.usable(sock) then
        return run_read(sock, cmds, asking, reader)
    end
    red:init_pipeline(asking and 2 * #cmds or #cmds)
    for _, c in ipairs(cmds) do
        if asking then
            red:asking()
        end
        red[lower(c[1])](red, unpack(c, 2))
    end
    local res, err = red:commit_pipeline()
    if not res then
        return nil, err
    end
    if asking then
        local out = {}
        for i = 2, #res, 2 do
            out[#out + 1] = res[i]
        end
        return out
    end
    return res
end


-- Indexes of the replies that are ASK redirects.
local function asked_indexes(res)
    local out = {}
    for i, r in ipairs(res) do
        if type(r) == "table" and r[1] == false and match(r[2] or "", "^ASK ") then
            out[#out + 1] = i
        end
    end
    return out
end


-- The first redirect / retryable error among the replies, if any.
local function reply_error(res)
    for _, r in ipairs(res) do
        if type(r) == "table" and r[1] == false then
            local e = r[2]
            local kind = match(e or "", "^(%u+)")
            if kind == "MOVED" or kind == "ASK" or RETRYABLE[kind] then
                return e, kind
            end
        end
    end
    return nil
end


-- Startup nodes, then every node of the current slot map, without duplicates.
local function known_nodes(self)
    local out, seen = {}, {}
    local function add(a)
        if not seen[a] then
            seen[a] = true
            out[#out + 1] = a
        end
    end
    for _, a in ipairs(self.startup_nodes) do
        add(a)
    end
    local ranges = cjson.decode(self.dict:get(self.key_slots) or "")
    if type(ranges) == "table" then
        for _, r in ipairs(ranges) do
            add(r.master)
            for _, rep in ipairs(r.replicas or {}) do
                add(rep)
            end
        end
    end
    return out
end


-- Refresh the slot map over conn (or a new connection when conn is nil and the
-- budget allows). Single-flight through a shared-dict lock and rate-limited.
local function refresh(self, b, conn, conn_addr, force)
    local dict = self.dict
    local last = dict:get(self.key_last)
    if not force and last and now() - last < self.refresh_interval then
        return nil, "rate-limited"
    end
    local ok = dict:add(self.key_lock, true, self.lock_ttl)
    if not ok then
        return nil, "refresh in progress"
    end
    local red, addr, err = conn, conn_addr, nil
    if not red then
        for _, a in ipairs(known_nodes(self)) do
            if not b.failed[a] then
                red, err = connect(self, b, a, false)
                if red then
                    addr = a
                    break
                end
                b.failed[a] = true
                if b.conns >= self.max_connections then
                    break
                end
            end
        end
    end
    if not red then
        dict:delete(self.key_lock)
        return nil, err or "no node to ask for the slot map"
    end
    local reply
    reply, err = red:cluster("slots")
    if not reply then
        drop(b, addr, red)
        dict:delete(self.key_lock)
        return nil, "CLUSTER SLOTS failed on " .. addr .. ": " .. tostring(err)
    end
    local ranges
    ranges, err = _M.parse_slots(reply, (split_addr(addr)))
    if ranges then
        ok, err = self:store_ranges(ranges)
        stats.refreshes = stats.refreshes + 1
    end
    dict:delete(self.key_lock)
    if not ranges or not ok then
        return nil, err
    end
    return self:slot_index()
end


-- Wait (briefly) for the slot map another worker is fetching.
local function await_map(self)
    local deadline = now() + (self.connect_timeout + self.read_timeout) / 1000
    while now() < deadline do
        if not self.dict:get(self.key_lock) then
            break
        end
        sleep(0.01)
        update_time()
    end
    return self:slot_index()
end


function _M.refresh_slots(self)
    local b = budget_new(self)
    local slots, err = refresh(self, b, nil, nil, true)
    release(self, b)
    return slots, err
end


-- The master address serving the slot of key (fetching the slot map when
-- this worker has none), or nil, err.
function _M.master_of(self, key)
    local idx = self:slot_index()
    if not idx then
        local err
        idx, err = self:refresh_slots()
        if not idx then
            idx = await_map(self)
            if not idx then
                return nil, err
            end
        end
    end
    local range = idx[crc16.slot(key)]
    if not range then
        return nil, "no node serves the slot of " .. key
    end
    return range.master
end


-- A dedicated connection to addr for a long-lived use (a subscription): one
-- connection, authenticated, with this client's timeouts; the caller closes it.
function _M.open(self, addr)
    stats.calls = stats.calls + 1
    local b = budget_new(self)
    b.attempts = 1
    stats.attempts = stats.attempts + 1
    local red, err = connect(self, b, addr, false)
    b.pool = {}
    if b.conns > stats.max_connections_per_call then
        stats.max_connections_per_call = b.conns
    end
    if stats.max_attempts_per_call < 1 then
        stats.max_attempts_per_call = 1
    end
    if not red then
        stats.failures = stats.failures + 1
        return nil, err
    end
    return red
end


-- Candidate nodes for a slot in the order this call should try them.
local function candidates(range, readonly, read_replica)
    local list = {}
    if readonly and read_replica then
        for _, r in ipairs(range.replicas) do
            list[#list + 1] = { r, true }
        end
        list[#list + 1] = { range.master, false }
    else
        list[1] = { range.master, false }
        if readonly then
            for _, r in ipairs(range.replicas) do
                list[#list + 1] = { r, true }
            end
        end
    end
    return list
end


local function pick(b, range, readonly, read_replica)
    if not range then
        return nil
    end
    for _, c in ipairs(candidates(range, readonly, read_replica)) do
        if not b.failed[c[1]] then
            return c[1], c[2]
        end
    end
    return nil
end


local function finish(self, b, res, err)
    if b.attempts > stats.max_attempts_per_call then
        stats.max_attempts_per_call = b.attempts
    end
    if b.conns > stats.max_connections_per_call then
        stats.max_connections_per_call = b.conns
    end
    if not res then
        stats.failures = stats.failures + 1
    end
    -- a redirect or a dead node marked the map stale: refresh it over an open
    -- connection (no new instance), single-flight and rate-limited
    local dict = self.dict
    local last = dict:get(self.key_last) or 0
    if dict:get(self.key_stale) or now() - last > self.slots_ttl then
        for key, red in pairs(b.pool) do
            local addr = match(key, "^([^#]+)")
            refresh(self, b, red, addr, false)
            break
        end
    end
    release(self, b)
    return res, err
end


-- Run cmds (a list of argument lists, all on the slot of `key`) as one pipeline.
-- opts.readonly allows replicas (READONLY); opts.reader (resp.read_scan) reads
-- each reply instead of lua-resty-redis when this nginx can (its shapes, with
-- lua-resty-redis's otherwise: the caller takes both). Returns the list of replies, error
-- replies as {false, err}, or nil, err.
function _M.pipeline(self, key, cmds, opts)
    if type(key) ~= "string" then
        error("bad argument #1 to 'pipeline' (string expected, got " .. type(key) .. ")", 2)
    end
    local readonly = opts and opts.readonly or false
    local reader = opts and opts.reader
    local slot = crc16.slot(key)
    local b = budget_new(self)
    stats.calls = stats.calls + 1

    local slots = self:slot_index()
    if not slots then
        local err
        slots, err = refresh(self, b, nil, nil, true)
        if not slots then
            slots = await_map(self) -- another worker may be fetching one
            if not slots then
                return finish(self, b, nil, "no slot map: " .. tostring(err))
            end
        end
    end

    -- during a slot migration the source answers ASK for the keys already moved:
    -- only those commands go to the target, and their replies are merged in
    local target, target_ro, asking, pending, asked
    local last_err = "no node serves slot " .. slot
    local backoff = 0.01
    while b.attempts < self.max_attempts do
        update_time()
        if now() >= b.deadline then
            last_err = "deadline exceeded: " .. last_err
            break
        end
        local addr, ro = target, target_ro
        if not addr then
            addr, ro = pick(b, slots[slot], readonly, self.read_replica)
        end
        if not addr and not b.refreshed and b.conns < self.max_connections then
            -- every known node of the slot failed: ask another node for the map
            b.refreshed = true
            local fresh = refresh(self, b, nil, nil, false)
            if fresh then
                slots = fresh
                addr, ro = pick(b, slots[slot], readonly, self.read_replica)
            end
        end
        if not addr then
            break
        end
        local red, err, exhausted = connect(self, b, addr, ro)
        if exhausted then
            stats.budget_exhausted = stats.budget_exhausted + 1
            last_err = err .. "; last error: " .. last_err
            break
        end
        b.attempts = b.attempts + 1
        stats.attempts = stats.attempts + 1
        if not red then
            last_err = err
            b.failed[addr] = true
            self.dict:set(self.key_stale, true)
            target, asking = nil, nil
        else
            local res
            if asking then
                local sub_cmds = {}
                for j, i in ipairs(asked) do
                    sub_cmds[j] = cmds[i]
                end
                local more
                more, err = run_pipeline(red, sub_cmds, true, reader)
                if more then
                    res = {}
                    for i, r in ipairs(pending) do
                        res[i] = r
                    end
                    for j, i in ipairs(asked) do
                        res[i] = more[j]
                    end
                end
            else
                res, err = run_pipeline(red, cmds, false, reader)
            end
            asking = nil
            if not res then
                drop(b, addr, red)
                b.failed[addr] = true
                self.dict:set(self.key_stale, true)
                last_err = "redis " .. addr .. ": " .. tostring(err)
                target = nil
            else
                local rerr, kind = reply_error(res)
                if not rerr then
                    return finish(self, b, res)
                end
                last_err = "redis " .. addr .. ": " .. rerr
                if kind == "MOVED" or kind == "ASK" then
                    local _, _, to = _M.parse_redirect(rerr)
                    if sub(to, 1, 1) == ":" then
                        to = (split_addr(addr)) .. to
                    end
                    stats.redirects = stats.redirects + 1
                    target, target_ro = to, false
                    if kind == "MOVED" then
                        stats.moved = stats.moved + 1
                        self.dict:set(self.key_stale, true)
                    else
                        stats.ask = stats.ask + 1
                        asking, pending, asked = true, res, asked_indexes(res)
                    end
                else
                    stats.retries = stats.retries + 1
                    target = nil
                    sleep(backoff)
                    backoff = min(backoff * 2, 0.2)
                end
            end
        end
    end
    if b.attempts >= self.max_attempts then
        stats.budget_exhausted = stats.budget_exhausted + 1
        last_err = "attempt budget exhausted (" .. self.max_attempts .. "): " .. last_err
    end
    return finish(self, b, nil, last_err)
end


-- Run one command on the slot of `key`. Returns the reply or nil, err
-- (an error reply comes back as nil, "<redis error>").
function _M.command(self, key, cmd, opts)
    local res, err = self:pipeline(key, { cmd }, opts)
    if not res then
        return nil, err
    end
    local r = res[1]
    if type(r) == "table" and r[1] == false then
        return nil, r[2]
    end
    return r
end


function _M.slot_of(key)
    return crc16.slot(key)
end


return _M
