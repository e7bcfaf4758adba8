-- Background sync of one namespace's rules from the Redis Cluster into a
-- lua_shared_dict: a timer in every worker, one worker at a time (shared-dict
-- lock), rev compare, log deltas (full reload on a gap, a new generation, a
-- digest mismatch or an undecodable entry), validation, snapshot file,
-- stale-if-error, fleet heartbeat. Never on the request path.
local mp = require("MessagePack")
local mpdecode = require("rulegate.mpdecode")
local cjson = require("cjson.safe")
local cluster = require("rulegate.cluster")
local resp = require("rulegate.resp")
local rule_check = require("rulegate.rule_check")
local router = require("rulegate.router")
local is_sure = require("rulegate.schema_fast").sure
local snapshot = require("rulegate.snapshot")
local payload = require("rulegate.payload")
local digest = require("rulegate.digest")
local exposure = require("rulegate.exposure")
local outcomes = require("rulegate.outcomes")
local has_new_tab, table_new = pcall(require, "table.new")
local new_tab = has_new_tab and table_new or function()
    return {}
end

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local NOTICE = ngx.NOTICE
local now = ngx.now
local update_time = ngx.update_time
local timer_at = ngx.timer.at
local worker_pid = ngx.worker.pid
local null = ngx.null
local type = type
local pairs = pairs
local next = next
local ipairs = ipairs
local pcall = pcall
local xpcall = xpcall
local tonumber = tonumber
local tostring = tostring
local traceback = debug.traceback
local random = math.random
local floor = math.floor
local find = string.find
local sub = string.sub
local match = string.match
local gmatch = string.gmatch
local concat = table.concat
local max = math.max
local select = select

local _M = { _VERSION = "0.1.0" }

-- shared-dict keys
local K = {
    rev = "rs:rev", gen = "rs:gen", ver = "rs:ver",
    source = "rs:source", count = "rs:count", applied_at = "rs:applied_at", digest = "rs:digest",
    published = "rs:published",
    store_rev = "store:rev", store_digest = "store:digest",
    refused_rev = "refused:rev", refused_reason = "refused:reason",
    lock = "sync:lock", last_check = "sync:last_check", last_ok = "sync:last_ok",
    state = "sync:state", last_error = "sync:last_error", error_since = "sync:error_since",
    error_kind = "sync:error_kind",
    notice = "sync:notice", hb_last = "sync:hb_last", hb_error = "sync:hb_error",
    checks = "sync:checks", applies = "sync:applies", digest_mismatches = "sync:digest_mismatches",
    sub_lock = "sync:sub_lock", sub_error = "sync:sub_error",
    sub_failures = "sync:sub_failures", subscriptions = "sync:subscriptions",
    full_reloads = "sync:full_reloads", deltas_applied = "sync:deltas_applied",
    large_deltas = "sync:large_deltas", -- log deltas read whole instead (DELTA_FULL_MIN)
    reloads_skipped = "sync:reloads_skipped", -- new generations of the held rules (same digest): nothing read
    worker_deltas = "sync:worker_deltas", -- shared deltas applied by workers (not the syncing one)
    worker_compiles = "sync:worker_compiles", -- whole payloads decoded and compiled by workers
    master_compiles = "sync:master_compiles", -- sets compiled in init_by_lua for the workers to inherit
    namespace = "sync:namespace", -- the namespace whose rules the dict holds (claim())
    -- the payload (payload.lua; its header names the version it holds) is
    -- rewritten, and the snapshot file written, after changes settle, not per
    -- change: pending counts the deltas published since; workers reach the
    -- current version from it
    payload_at = "rs:payload_at", pending = "rs:pending",
    checkpoints = "sync:checkpoints",
    pool_checks = "sync:pool_checks", -- payload chunks a full load had checked in the thread pool
    pool_one_pass = "sync:pool_one_pass", -- rules of those the pool checked in one pass of their bytes (schema_fast)
    -- "stats:<pid>": a worker's cluster-client counters; stats_pids: the pids that
    -- wrote them (space-separated, newest last), so reading them needs no get_keys
    stats_pids = "stats:pids",
}
_M.KEYS = K

local STATS_PIDS = 32 -- worker pids kept in K.stats_pids (restarted workers' pids age out)

local PAUSE_EVERY = 10 -- rules decoded or compiled between two looks at the clock
local YIELD_AFTER = 0.002 -- seconds of work in a timer between two yields
-- not 0: without OpenResty's delayed-events patch ngx.sleep(0) is a 0 ms timer that
-- nginx runs again in the same timer pass (sockets starve) and it logs a warning
local YIELD_SLEEP = 0.001
local SCAN_COUNT = 500
-- A log delta of more changed rules than this, and than a quarter of the rules
-- held, is read whole instead (HSCAN, sliced, checked in the thread pool; the
-- other workers compile the new payload in slices): per rule a delta costs the
-- syncing worker ~4x what a full load does, in one block of its event loop.
local DELTA_FULL_MIN = 64
local publish_seq = 0
local scan_denied = false -- this worker's user may not HSCAN: full reads use HGETALL
-- What this worker holds of the rules of dict version ver for deltas: each
-- rule's sig (id -> digest.sig(id, bytes): its share of the content digest)
-- and route (id -> a table with its host and path: the compiled item, or the
-- decoded route of a rule not compiled; all a delta needs of the rules it
-- replaces), and the bytes of the rules changed since the shared payload
-- `base` (a payload id) was written (overlay: id -> bytes | false when
-- deleted). The other rules' bytes are in that payload (shared dict): not
-- copied into this worker's heap.
-- Decoded rules are not kept either: the compiled set is what serves.
-- where (id -> the dict key of the chunk of payload base that holds the
-- rule; nil when not known) lets a checkpoint borrow the chunks that hold no
-- changed rule without reading them (write_held).
local held = { ver = nil, sigs = nil, routes = nil, overlay = nil, base = nil, where = nil }
-- A worker that listens (keep_where: it may sync, hold delta state and run
-- checkpoints) keeps, from its last compile of the shared payload, which chunk
-- holds each rule (compiled_where: {base = payload id, where}); held_state
-- takes it when it builds the delta state from the set this worker serves, so
-- a checkpoint borrows the unchanged chunks without reading the payload.
local keep_where, compiled_where = false, nil


-- Set keep_where (listen() sets it; for tests/lua/spec/held_state_spec.lua).
function _M.keep_where(on)
    keep_where = on
end
local DELTA_TTL = 120 -- seconds a published delta stays in the dict for workers to catch up
local MOVED_READS = 3 -- full reads per check when commits keep landing during them (then: an error)
local MAX_CHAIN = 600 -- deltas followed in a row (a checkpoint comes after CHECKPOINT_EVERY)
local CHECKPOINT_EVERY = 256 -- deltas after which the payload is rewritten even during a burst
local listen_failures = 0 -- this worker's failed subscriptions in a row
-- Who checked the rules of a payload this code writes (the header's "checked"):
-- one value per load of the code (nginx's master loads it, its workers share
-- it; a HUP loads it again). Rules of a payload with this mark passed this
-- very schema.check in a worker of this gateway (publish and checkpoint write
-- only checked rules): readers skip the check (about 15 ms of a 10,000-rule
-- load; the shared dict is the gateway's own memory). A payload of another
-- load of the code, or of an earlier release, is checked.
local CHECKED_BY = "rulegate:" .. tostring(select(2, pcall(worker_pid))) .. ":" .. tostring(select(2, pcall(now)))
    .. ":" .. tostring({}):sub(8)
_M.CHECKED_BY = CHECKED_BY


local function ns_keys(ns)
    local tag = "{rg:" .. ns .. "}"
    return { rules = tag .. ":rules", rev = tag .. ":rev", meta = tag .. ":meta",
             fleet = tag .. ":fleet", events = tag .. ":events", log = tag .. ":log" }
end
_M.ns_keys = ns_keys


-- A pause() for long loops in a timer: looks at the clock every `every` calls
-- and yields to the event loop (1 ms sleep) once YIELD_AFTER of work has
-- passed since the last yield, so requests are served between slices of ~2 ms
-- whatever one call costs (a rule's decode, a chunk's CRC) and however busy
-- the machine is.
function _M.pauser(every)
    local n = 0
    update_time()
    local since = now()
    return function()
        n = n + 1
        if n >= every then
            n = 0
            update_time()
            if now() - since >= YIELD_AFTER then
                ngx.sleep(YIELD_SLEEP)
                update_time()
                since = now()
            end
        end
    end
end


-- LuaJIT interns every string in one hash table that doubles when it holds
-- more strings than slots and halves at the end of a collector cycle that
-- leaves a quarter or less: each resize rehashes every string at once
-- (14 ms at 131,072 slots, 18-42 ms at 262,144 on the bench machine). A full
-- reload interns tens of thousands of new strings (raw bytes, SHA-1s, decoded
-- fields) while the served set's are alive, then frees them: at 10,000 rules
-- the table doubled during the reload and halved after it, a 14-25 ms wait
-- per reload per worker. So each worker grows it to 2^18 slots at start and
-- keeps STRING_RESERVE short strings alive (more than a quarter of 2^18): it
-- never halves below that, and grows only past its largest size so far.
-- Costs ~4-5 MiB of Lua heap per worker (the 2 MiB table included; bench/REPORT.md).
-- The master does it in init_by_lua (~80 ms); its workers inherit the grown table.
local STRING_RESERVE = 70000
local reserved = nil


-- Grow this VM's string table and keep it grown (above); once per Lua VM (a
-- worker inherits the master's).
function _M.reserve_strings(n)
    if reserved then
        return
    end
    n = n or STRING_RESERVE
    local tmp = {}
    for i = 1, 2 * n do -- 2n live strings: the table grows past 2^18 slots for n = 70000
        tmp[i] = "rg" .. i
    end
    reserved = {}
    for i = 1, n do
        reserved[i] = tmp[i]
    end
end


-- The strings reserve_strings keeps alive (nil before it ran).
function _M.reserved_strings()
    return reserved
end


-- Decode and check every raw rule; returns the list of rules or nil, err.
-- pause, when given, is called between rules.
function _M.decode_rules(raw_rules, pause)
    local rules = {}
    for id, raw in pairs(raw_rules) do
        if pause then
            pause()
        end
        if type(raw) ~= "string" then
            return nil, "rule " .. tostring(id) .. ": undecodable msgpack"
        end
        local rule, err = rule_check.decode(tostring(id), raw, false)
        if not rule then
            return nil, err
        end
        rules[#rules + 1] = rule
    end
    return rules
end


-- Compile a payload (the snapshot payload format) into a router rule set;
-- pause as in decode_rules (only where the phase may yield: timers). Each
-- compiled rule keeps the SHA-1 of its bytes (sig), so a compile of the same
-- bytes from the shared dict reuses it (load_rule).
function _M.compile_payload(payload, pause)
    local snap, err = snapshot.decode_payload(payload, pause)
    if not snap then
        return nil, err
    end
    local rules
    rules, err = _M.decode_rules(snap.rules, pause)
    if not rules then
        return nil, err
    end
    local ok, rs = pcall(router.compile, rules, snap.revision, pause)
    if not ok then
        return nil, "rule set does not compile: " .. tostring(rs)
    end
    rs.generation = snap.generation
    for id, item in pairs(router.items(rs, pause)) do
        item.sig = digest.sig(id, snap.rules[id])
    end
    return rs, snap, rules
end


-- One stored rule decoded and checked (checked: true when this code's
-- schema.check already accepted these bytes, see CHECKED_BY), or nil, reason.
local decode_one = rule_check.decode


-- Add stored rule id (bytes value) to a set being built (router.new_set),
-- its route to routes: the compiled item of the same bytes in reuse (id ->
-- item: router.items of the set this worker serves; an item's sig is the SHA-1
-- of the bytes it was compiled from) when there is one; else, when checked
-- (see CHECKED_BY: this gateway's syncing worker checked and compiled these
-- bytes), pending (a full load whose chunks are checked in the thread pool) or
-- a rule schema_fast.sure is sure of (stored canonically: checked in
-- one pass of its bytes), placed pending (router.add_pending: compiled by the
-- first request of its route); else decoded, checked (unless checked) and
-- compiled. A full reload of a namespace
-- whose rules did not change (a new generation, a digest mismatch, a worker
-- catching up) decodes and compiles none of them. first, last: the rule's
-- bytes are value:sub(first, last) (value a payload chunk, not cut when the
-- rule is placed pending or reused). The rule's sig (digest.sig(id, bytes)),
-- or nil, err.
local function load_rule(rs, routes, reuse, id, value, checked, pending, first, last)
    local sig = first and digest.sig_at(id, value, first, last) or digest.sig(id, value)
    local item = reuse and reuse[id]
    if item and item.sig == sig then
        routes[id] = item -- its host and path
        router.add_compiled(rs, item)
        return sig
    end
    if checked or pending or is_sure(value, first, last, id) then -- placed, compiled by the route's first request
        local rid, host, path, kind, enabled = mpdecode.route_of(value, first, last)
        if host and enabled ~= false then
            if rid ~= id then
                return nil, "rule " .. id .. ": id does not match its hash field"
            end
            routes[id] = router.add_pending(rs, id, value, sig, host, path, kind, first, last)
            return sig
        end
    end
    if first then -- decoded here: a string of its own after all (a disabled rule, a namespace-scope one)
        value = sub(value, first, last)
    end
    local rule, err = decode_one(id, value, checked)
    if not rule then
        return nil, err
    end
    local res, cerr = rule_check.compile(rs, rule)
    if res == false then
        return nil, cerr
    end
    if res then
        res.sig = sig
    end
    routes[id] = res or router.place_of(rule) -- the item (its host and path), else (disabled) its place
    return sig
end


-- The stored bytes a delta walk_deltas read gives rule id (false: removed;
-- nil: not changed by it), cut from the delta where it holds them in place.
local function delta_value(d, id)
    local v = d.changes[id]
    if type(v) == "number" then
        return sub(d.raw, v, d.last[id])
    end
    return v
end


-- Follow the deltas the syncing worker published from version `from` to `to`:
-- fn(delta, changes (id -> decoded rule | false), before (id -> old route))
-- per delta (its stored bytes: delta_value(delta, id)), then routes (id ->
-- route) is updated in place. true, or nil when
-- the chain is broken (expired, too long, undecodable).
local function walk_deltas(dict, from, to, routes, fn, pause)
    local at, steps = from, 0
    while at ~= to do
        steps = steps + 1
        local raw = steps <= MAX_CHAIN and dict:get("rs:delta:" .. at)
        if not raw then
            return nil
        end
        -- each rule's bytes read in place (no string of them): offsets only, so no pause there; the
        -- loop below pauses before each rule it decodes and checks
        local ok, d, last = pcall(mpdecode.delta_at, raw)
        if not ok or type(d) ~= "table" or type(d.changes) ~= "table" then
            return nil
        end
        d.raw, d.last = raw, last -- for delta_value
        local changes, before = {}, {}
        for id, value in pairs(d.changes) do
            if pause then
                pause()
            end
            local rule = false
            if value then
                if type(value) == "number" then
                    rule = decode_one(id, raw, nil, value, last[id])
                else
                    rule = type(value) == "string" and decode_one(id, value)
                end
                if not rule then
                    return nil
                end
            end
            changes[id], before[id] = rule, routes[id]
        end
        if not fn(d, changes, before) then
            return nil
        end
        for id, rule in pairs(changes) do
            routes[id] = rule and router.place_of(rule) or nil
        end
        at = d.to
    end
    return true
end


-- How many rules the published deltas from version `from` to `to` change,
-- summed along the chain until `to` or until the sum passes `limit` (a worker
-- that served no request while several were published catches up on all of
-- them at once: their sizes add up). nil when the first delta's size is not
-- known; a chain whose next version is not known (published by an older
-- release) counts what was found.
function _M.chain_size(dict, from, to, limit)
    local n, at = nil, from
    for _ = 1, MAX_CHAIN do
        if at == to then
            break
        end
        local k = dict:get("rs:delta_n:" .. at)
        if k == nil then
            break
        end
        n = (n or 0) + k
        if n > limit then
            break
        end
        at = dict:get("rs:delta_to:" .. at)
        if at == nil then
            break
        end
    end
    return n
end


-- A worker's rule set moved from version `from` to `to` through the published
-- deltas: rs, routes (updated in place) or nil when the chain is broken (then
-- the caller compiles the payload). O(changed rules), never O(rules). pause,
-- when given, is called before each changed rule (a timer: see init.lua).
function _M.apply_shared_deltas(dict, from, to, rs, routes, pause)
    local ok = walk_deltas(dict, from, to, routes, function(d, changes, before)
        local cok, nrs = pcall(router.with_changes, rs, before, changes, d.rev, pause)
        if cok then
            nrs.generation = d.gen
            rs = nrs
        end
        return cok
    end, pause)
    if not ok then
        return nil
    end
    return rs, routes
end


-- The version the shared payload holds (nil before one was written).
local function payload_version(dict)
    local head = payload.head(dict)
    return head and head.ver
end


-- The namespace this load of the code serves (claim(), in the master; the
-- workers inherit it): a payload of another namespace is never compiled.
local claimed_ns = nil


-- True when a payload header is another namespace's (written after claim() by a
-- worker of the configuration a SIGHUP replaced: this worker's own sync replaces it).
local function foreign(head)
    return claimed_ns ~= nil and head.namespace ~= claimed_ns
end


-- The shared dict survives a SIGHUP. When the reloaded config names another
-- namespace, nothing of the previous one may be served, checked against or
-- reported (its rules, payload, deltas, revision, breaker and exposure state):
-- the dict is emptied and claimed for the new namespace (init_by_lua, before the
-- snapshot is loaded). Returns the namespace the dict held before, or nil.
function _M.claim(conf)
    local dict = conf.shm
    local held = dict:get(K.namespace)
    if held == nil then -- a dict written by an earlier release: its payload names the namespace
        local head = payload.head(dict)
        held = head and head.namespace
    end
    if held ~= nil and held ~= conf.namespace then
        dict:flush_all()
        dict:flush_expired()
        log(WARN, "rulegate: the shared dict held the rules of namespace ", held, "; emptied for namespace ",
            conf.namespace)
    end
    dict:set(K.namespace, conf.namespace)
    claimed_ns = conf.namespace
    return held
end


-- The dict's current rule set for a worker: the payload read chunk by chunk,
-- each rule decoded as it is read, compiled (yielding through pause), then
-- brought to version ver by the deltas published since the payload was
-- written. rs, routes (id -> route) or nil, err, retry (true: the payload was
-- replaced during the read, or the deltas from it are gone; try again on the
-- next tick). serving, when given, is the set this worker serves: the rules
-- it holds with the same bytes are not compiled again (load_rule).
function _M.compile_current(dict, ver, pause, serving)
    local rs, routes = nil, {}
    local reuse = serving and router.items(serving, pause)
    local where = keep_where and {} or nil
    local head, err, retry = payload.read(dict, function(id, s, first, last, phead, key)
        rs = rs or router.new_set(phead.revision)
        if where then
            where[id] = key
        end
        -- compiled as it is read: the decoded rule is garbage at once; a rule's bytes stay in the chunk
        -- (snapshot.each_rule_at), placed pending with it when checked
        local checked = phead.checked == CHECKED_BY
        return load_rule(rs, routes, reuse, id, s, checked, checked, first, last)
    end, pause, nil, true)
    if not head then
        return nil, err, retry
    end
    if foreign(head) then
        return nil, "the shared payload holds namespace " .. tostring(head.namespace) .. ", not "
            .. claimed_ns, true
    end
    compiled_where = where and head.id ~= "legacy" and { base = head.id, where = where } or nil
    local ok
    ok, rs = pcall(router.finish, rs or router.new_set(head.revision), pause)
    if not ok then
        return nil, "rule set does not compile: " .. tostring(rs)
    end
    rs.generation = head.generation
    local pver = head.ver
    if pver ~= ver then
        rs = _M.apply_shared_deltas(dict, pver, ver, rs, routes)
        if not rs then
            return nil, "the deltas from the payload's version are gone", true
        end
    end
    return rs, routes
end


-- Store a validated rule set as the current one of every worker. full, when
-- given, is {namespace, raw = {id = stored bytes}, pause}: the whole payload
-- is written (payload.write, yielding through pause), or {writer = a
-- payload.writer holding every rule}: its payload is made current. delta, when given, is
-- {from = the dict version it applies to, changes = {id = raw bytes | false}}:
-- workers holding that version apply it instead of reading the whole payload
-- (apply_shared_deltas). Returns the new version and, with full, the
-- payload's header (for the snapshot file); or nil, err.
--
-- full nil: only the delta is published (it must apply to the dict's
-- current version); the payload is rewritten later by checkpoint().
function _M.publish(dict, full, rev, gen, count, source, content_digest, delta)
    local prev = dict:get(K.ver)
    publish_seq = publish_seq + 1
    local ver = rev .. ":" .. gen .. ":" .. worker_pid() .. ":" .. publish_seq .. ":" .. now()
    local head, err
    if full and full.writer then
        head, err = full.writer:finish(ver)
        if not head then
            return nil, err
        end
        prev = dict:get(K.ver)
    elseif full then
        head, err = payload.write(dict, { ver = ver, namespace = full.namespace, generation = gen,
                                          revision = rev, written_at = floor(now()), checked = CHECKED_BY },
                                  full.raw, full.pause)
        if not head then
            return nil, err
        end
        prev = dict:get(K.ver) -- payload.write yields; only the lock holder publishes, but be exact
    elseif not (delta and prev and delta.from == prev) then
        return nil, "a delta without a payload must apply to the current version"
    end
    dict:set(K.rev, rev)
    dict:set(K.gen, gen)
    dict:set(K.digest, content_digest)
    local refused = dict:get(K.refused_rev)
    if refused and rev >= refused then
        dict:delete(K.refused_rev)
        dict:delete(K.refused_reason)
    end
    dict:set(K.count, count)
    dict:set(K.source, source)
    local t = now()
    dict:set(K.applied_at, t)
    -- one value that readers in other workers take whole: the keys above are
    -- set one by one, so a reader could see one revision's number with the
    -- previous revision's rule count
    dict:set(K.published, cjson.encode({
        revision = rev, generation = gen, rules = count, digest = content_digest,
        source = source, applied_at = t,
    }))
    if delta and prev and delta.from == prev then
        -- written before the version moves: a worker that sees ver finds its delta, and how many rules it
        -- changes and the version it leads to without decoding it (a large one, or a chain of many, is
        -- applied in a timer that yields: _M.chain_size)
        local n = 0
        for _ in pairs(delta.changes) do
            n = n + 1
        end
        dict:set("rs:delta_n:" .. prev, n, DELTA_TTL)
        dict:set("rs:delta_to:" .. prev, ver, DELTA_TTL)
        local dok, derr = dict:set("rs:delta:" .. prev, mp.pack({ to = ver, rev = rev, gen = gen,
                                                                    changes = delta.changes }), DELTA_TTL)
        if not dok and not full then
            return nil, "cannot store the delta in the shared dict: " .. tostring(derr)
        elseif not dok then
            log(WARN, "rulegate: cannot store the delta in the shared dict (workers reload fully): ", derr)
        end
    end
    dict:set(K.ver, ver)
    if full then
        dict:set(K.payload_at, now())
        dict:set(K.pending, 0)
    else
        dict:incr(K.pending, 1, 0)
    end
    dict:incr(K.applies, 1, 0)
    return ver, head
end


-- What this gateway serves, read whole (see publish); from the separate keys
-- when the dict was filled by a version that did not write the record.
function _M.published(dict)
    local raw = dict:get(K.published)
    local pub = raw and cjson.decode(raw)
    if pub then
        return pub
    end
    return {
        revision = dict:get(K.rev), generation = dict:get(K.gen), rules = dict:get(K.count),
        digest = dict:get(K.digest), source = dict:get(K.source), applied_at = dict:get(K.applied_at),
    }
end


-- States after a failed check. "error" is Redis unreachable or anything else
-- (K.error_kind tells: unreachable, error); unknown_namespace and auth_failed
-- are configuration mistakes that no retry fixes.
local FAILED = { error = true, regression = true, refused = true, unknown_namespace = true, auth_failed = true }
local AUTH_MARKS = { "NOAUTH", "WRONGPASS", "NOPERM", "failed to authenticate" }
_M.FAILED = FAILED


-- The kind of a failure of the cluster client (no reply at all): auth_failed
-- when Redis refused the credentials, else unreachable.
local function transport_kind(err)
    err = tostring(err)
    for _, mark in ipairs(AUTH_MARKS) do
        if find(err, mark, 1, true) then
            return "auth_failed"
        end
    end
    return "unreachable"
end


-- The kind of an error reply to one command: auth_failed for NOAUTH/NOPERM, else error.
local function reply_kind(err)
    local kind = transport_kind(err)
    return kind == "auth_failed" and kind or "error"
end


-- Record the outcome of a check; log once per state change. kind (for
-- state "error"): unreachable or error.
local function set_state(conf, state, err, kind)
    local dict = conf.shm
    local prev = dict:get(K.state)
    if state == "ok" then
        dict:set(K.last_ok, now())
        if prev ~= "ok" then
            dict:set(K.state, "ok")
            dict:delete(K.error_since)
            dict:delete(K.error_kind)
            if FAILED[prev] then
                log(NOTICE, "rulegate: sync of namespace ", conf.namespace, " recovered (was ", prev,
                    "); serving revision ", dict:get(K.rev))
            end
        end
        return
    end
    dict:set(K.last_error, err)
    dict:set(K.error_kind, state == "error" and (kind or "error") or state)
    if prev ~= state then
        dict:set(K.state, state)
        dict:set(K.error_since, now())
        if state == "regression" or state == "refused" then
            log(ERR, "rulegate: ", err)
        elseif state ~= "error" then
            -- an unknown namespace is served as an empty rule set: a warning
            local rev = dict:get(K.rev)
            log(state == "unknown_namespace" and WARN or ERR, "rulegate: sync of namespace ", conf.namespace, " ",
                state, ": ", err, rev and "; serving revision " .. rev or "; no rule set loaded")
        else
            log(ERR, "rulegate: sync of namespace ", conf.namespace, " failing (", err,
                "); serving the last good rules (revision ", tostring(dict:get(K.rev)),
                ") until Redis answers again")
        end
    end
end


local function reply_value(r)
    if r == nil or r == null then
        return nil
    end
    if type(r) == "table" and r[1] == false then
        return nil, r[2]
    end
    return r
end


local function new_client(conf)
    return cluster.new(conf.cluster)
end


-- The log entries of an XRANGE reply as { rev, changes, digest }, when they
-- follow held_rev without a gap and reach rev (or fill a batch); else nil.
local function contiguous_entries(reply, held_rev, rev, batch)
    if type(reply) ~= "table" or #reply == 0 then
        return nil
    end
    local entries = {}
    for i, item in ipairs(reply) do
        local fields = type(item) == "table" and item[2]
        if type(fields) ~= "table" then
            return nil
        end
        local e = {}
        for j = 1, #fields - 1, 2 do
            e[fields[j]] = fields[j + 1]
        end
        local erev = tonumber(e.rev)
        if erev ~= held_rev + i or type(e.changes) ~= "string" then
            return nil
        end
        entries[i] = { rev = erev, changes = e.changes, digest = e.digest or "" }
    end
    if entries[#entries].rev < rev and #entries < batch then
        return nil
    end
    return entries
end


-- How many rules log entries change: their changes counted, and past limit
-- the distinct rule ids among them (a burst of commits to a few rules is a
-- small delta however many revisions it spans). An entry whose changes are
-- not a msgpack array counts 0 (apply_entries refuses it).
local function delta_changes(entries, limit)
    local n = 0
    for i = 1, #entries do
        n = n + (mpdecode.array_len(entries[i].changes) or 0)
    end
    if n <= limit then
        return n
    end
    local seen = {}
    for i = 1, #entries do
        if not mpdecode.change_ids(entries[i].changes, seen) then
            return n
        end
    end
    local distinct = 0
    for _ in pairs(seen) do
        distinct = distinct + 1
    end
    return distinct
end


-- The whole namespace in one pipeline (rev, gen, HGETALL, digest, rev), or nil, err, kind.
local function hgetall_read(conf, cl)
    local keys = conf.keys
    local res, err = cl:pipeline(keys.rev, {
        { "GET", keys.rev }, { "HGET", keys.meta, "gen" }, { "HGETALL", keys.rules },
        { "HGET", keys.meta, "digest" }, { "GET", keys.rev },
    }, { readonly = true })
    if not res then
        return nil, err, transport_kind(err)
    end
    local rev1 = tonumber(reply_value(res[1]) or 0) or 0
    local rev2 = tonumber(reply_value(res[5]) or 0) or 0
    local flat, herr = reply_value(res[3])
    if herr then
        return nil, "HGETALL " .. keys.rules .. ": " .. herr, reply_kind(herr)
    end
    if rev1 ~= rev2 then
        return nil, "revision moved during the read (" .. rev1 .. " -> " .. rev2 .. ")", "moved"
    end
    local raw = {}
    flat = flat or {}
    for i = 1, #flat, 2 do
        raw[flat[i]] = flat[i + 1]
    end
    return { rev = rev1, gen = reply_value(res[2]) or "", raw = raw, digest = reply_value(res[4]) or "",
             any = #flat > 0 }
end


-- An HSCAN batch as lua-resty-redis returns it (a flat field/value list: this
-- nginx cannot read replies in place, resp.usable) fed or put in raw.
local function scan_batch(flat, feed, raw)
    for i = 1, #flat, 2 do
        if feed then
            feed(flat[i], flat[i + 1])
        else
            raw[flat[i]] = flat[i + 1]
        end
    end
end

local SCAN_OPTS = { readonly = true, reader = resp.read_scan }


-- The whole namespace by HSCAN in chunks of SCAN_COUNT, yielding between them,
-- consistent when rev and the store's digest are equal before and after (every
-- commit moves both); or nil, err, kind ("NOPERM" when the user may not HSCAN).
-- stream, when given: stream(rev, gen) with the revision and generation read
-- before the scan returns nil or a function fed every (id, bytes) of the scan
-- as each batch arrives (a field may come twice); the read then has no raw map
-- (raw nil, any: a rule was read) and its `fed` field is true.
local function scan_read(conf, cl, stream)
    local keys = conf.keys
    local head, err = cl:pipeline(keys.rev, {
        { "GET", keys.rev }, { "HGET", keys.meta, "gen" }, { "HGET", keys.meta, "digest" },
    }, { readonly = true })
    if not head then
        return nil, err, transport_kind(err)
    end
    local feed = stream and stream(tonumber(reply_value(head[1]) or 0) or 0, reply_value(head[2]) or "")
    local raw, cursor, any = not feed and {} or nil, "0", false
    repeat
        local res
        res, err = cl:pipeline(keys.rev, { { "HSCAN", keys.rules, cursor, "COUNT", SCAN_COUNT } }, SCAN_OPTS)
        if not res then
            return nil, err, transport_kind(err)
        end
        local reply, rerr = reply_value(res[1])
        if rerr then
            if find(tostring(rerr), "NOPERM", 1, true) then
                return nil, "NOPERM"
            end
            return nil, "HSCAN " .. keys.rules .. ": " .. tostring(rerr), reply_kind(rerr)
        end
        if type(reply) ~= "table" then
            return nil, "HSCAN " .. keys.rules .. ": unexpected reply", "error"
        end
        if reply.s then -- resp.read_scan's: the batch's bytes in one string, each value in place
            cursor = reply.cursor
            local s, ids, first, last = reply.s, reply.ids, reply.first, reply.last
            any = any or reply.n > 0
            for i = 1, reply.n do
                if feed then
                    feed(ids[i], s, first[i], last[i])
                else
                    raw[ids[i]] = sub(s, first[i], last[i])
                end
            end
        elseif type(reply[2]) ~= "table" then
            return nil, "HSCAN " .. keys.rules .. ": unexpected reply", "error"
        else
            cursor = reply[1]
            scan_batch(reply[2], feed, raw)
            any = any or #reply[2] > 0
        end
        ngx.sleep(YIELD_SLEEP)
    until cursor == "0"
    local tail
    tail, err = cl:pipeline(keys.rev, { { "GET", keys.rev }, { "HGET", keys.meta, "digest" } },
        { readonly = true })
    if not tail then
        return nil, err, transport_kind(err)
    end
    local rev1 = tonumber(reply_value(head[1]) or 0) or 0
    local rev2 = tonumber(reply_value(tail[1]) or 0) or 0
    local digest1, digest2 = reply_value(head[3]) or "", reply_value(tail[2]) or ""
    if rev1 ~= rev2 or digest1 ~= digest2 then
        return nil, "revision moved during the read (" .. rev1 .. " -> " .. rev2 .. ")", "moved"
    end
    if raw then
        any = next(raw) ~= nil
    end
    return { rev = rev1, gen = reply_value(head[2]) or "", raw = raw, digest = digest1, fed = feed and true,
             any = any }
end


-- Read rev + generation + digest (+ the log after held_rev when deltas can
-- apply); the log entries when they lead to the new revision, else the whole
-- rules hash when anything moved (or the content digest differs from what
-- this gateway holds); `unknown` names the namespace when neither its rev nor
-- its meta key exists (read as an empty rule set). Or nil, err, kind
-- (auth_failed, unreachable, error). stream: as scan_read's (a full read by
-- HSCAN feeds its rules to it; got.fed tells).
local function fetch(conf, cl, held_rev, held_gen, held_digest, stream)
    local keys = conf.keys
    local dict = conf.shm
    local cmds = { { "GET", keys.rev }, { "HGET", keys.meta, "gen" }, { "HGET", keys.meta, "digest" } }
    local batch = conf.log_batch or 1000
    if held_rev >= 0 and dict:get(K.source) == "redis" then
        cmds[4] = { "XRANGE", keys.log, (held_rev + 1) .. "-0", "+", "COUNT", batch }
    end
    local res, err = cl:pipeline(keys.rev, cmds, { readonly = true })
    if not res then
        return nil, err, transport_kind(err)
    end
    for i = 1, 3 do
        local _, rerr = reply_value(res[i])
        if rerr then
            return nil, "redis: " .. cmds[i][1] .. " " .. cmds[i][2] .. ": " .. tostring(rerr), reply_kind(rerr)
        end
    end
    local unknown
    if reply_value(res[1]) == nil and reply_value(res[2]) == nil then -- no rev, no generation (meta)
        unknown = "namespace '" .. conf.namespace .. "' does not exist in the store (no " .. keys.rev .. " or "
            .. keys.meta .. " key): a misspelled namespace, or no rule was ever written to it"
    end
    local rev, gen = tonumber(reply_value(res[1]) or 0) or 0, reply_value(res[2]) or ""
    local store_digest = reply_value(res[3]) or ""
    dict:set(K.store_rev, rev)
    dict:set(K.store_digest, store_digest)
    if rev == held_rev and gen == held_gen and (store_digest == "" or store_digest == held_digest) then
        return { unchanged = true, rev = rev, gen = gen, unknown = unknown }
    end
    if rev == held_rev and gen == held_gen then
        log(WARN, "rulegate: namespace ", conf.namespace, " revision ", rev, ": the store's digest ",
            store_digest, " differs from the applied content's ", tostring(held_digest), "; reloading fully")
        dict:incr(K.digest_mismatches, 1, 0)
    elseif rev > held_rev and gen == held_gen and res[4] then
        local entries = contiguous_entries(reply_value(res[4]), held_rev, rev, batch)
        local limit = max(DELTA_FULL_MIN, (dict:get(K.count) or 0) / 4)
        local changed = entries and delta_changes(entries, limit)
        if changed and changed > limit then
            dict:incr(K.large_deltas, 1, 0)
            log(NOTICE, "rulegate: namespace ", conf.namespace, ": revisions ", held_rev + 1, "-", rev,
                " change ", changed, " rules, more than a quarter of the ", dict:get(K.count) or 0,
                " held; reading them whole")
        elseif entries then
            return { delta = entries, rev = entries[#entries].rev, gen = gen, store_rev = rev }
        end
    end
    -- a new generation (a store rebuilt or restored) whose digest is the held
    -- content's: the held rules are its revision as they are (adopt()). Not
    -- within a generation: there a gap in the log is read whole, which also
    -- refuses what was written behind the commit script
    if held_rev >= 0 and held_gen ~= "" and gen ~= "" and gen ~= held_gen and store_digest ~= ""
            and store_digest == held_digest then
        return { same = true, rev = rev, gen = gen }
    end
    local read, kind
    if not scan_denied then
        read, err, kind = scan_read(conf, cl, stream)
        if not read and err == "NOPERM" then
            scan_denied = true
            log(WARN, "rulegate: HSCAN is not granted to this gateway's Redis user; full reloads of ",
                "namespace ", conf.namespace, " read the rules hash with one HGETALL")
        elseif not read then
            return nil, err, kind or "error"
        end
    end
    if not read then
        read, err, kind = hgetall_read(conf, cl)
        if not read then
            return nil, err, kind or "error"
        end
    end
    local rev1, gen1, raw = read.rev, read.gen, read.raw
    -- revision 0 with a generation and no rules: created in ruleadmin, never written
    if (rev1 > 0 and gen1 == "") or (rev1 == 0 and gen1 ~= "" and read.any) then
        return nil, "inconsistent read of namespace " .. conf.namespace .. " (revision " .. rev1
            .. ", generation " .. (gen1 ~= "" and gen1 or "none") .. "): a slot migration in progress, "
            .. "or damaged keys", "error"
    end
    dict:set(K.store_rev, rev1)
    dict:set(K.store_digest, read.digest)
    return { rev = rev1, gen = gen1, raw = raw, digest = read.digest, unknown = rev1 == 0 and unknown or nil,
             fed = read.fed }
end


-- True when the last check succeeded and found the applied content to be the
-- store's: digests equal (a store without a digest compares revisions),
-- nothing refused. After a failed check (the store unreachable, a master
-- paused or failing over) the gateway cannot tell: not in sync.
function _M.in_sync(dict)
    local store_rev = dict:get(K.store_rev)
    if store_rev == nil or dict:get(K.refused_rev) or dict:get(K.rev) == nil or dict:get(K.state) ~= "ok" then
        return false
    end
    local store_digest = dict:get(K.store_digest) or ""
    if store_digest ~= "" then
        return store_digest == dict:get(K.digest)
    end
    return store_rev == dict:get(K.rev)
end


-- True when the rules were not confirmed for max_stale seconds, or a store
-- revision was refused.
function _M.is_stale(dict, conf, t)
    local last_ok = dict:get(K.last_ok)
    return last_ok == nil or (t - last_ok) > conf.max_stale or dict:get(K.refused_rev) ~= nil
end


local function heartbeat(conf, cl, force)
    local dict = conf.shm
    local t = now()
    if not force and t - (dict:get(K.hb_last) or 0) < conf.heartbeat_interval then
        return
    end
    dict:set(K.hb_last, t)
    local last_ok = dict:get(K.last_ok)
    local pub = _M.published(dict)
    -- the fleet format of rulegate/fleet.py (extra fields are ignored there)
    local value = mp.pack({
        kind = "nginx", gateway = conf.gateway_id,
        revision = pub.revision or 0, generation = pub.generation or "",
        applied_at = pub.applied_at or 0.0, heartbeat_at = t,
        staleness = last_ok and (t - last_ok) or -1.0,
        state = dict:get(K.state) or "starting", last_error = dict:get(K.last_error) or "",
        digest = pub.digest or "", in_sync = _M.in_sync(dict),
        stale = _M.is_stale(dict, conf, t),
        refused_revision = dict:get(K.refused_rev) or 0,
        refused_reason = dict:get(K.refused_reason) or "",
        upstreams = conf.upstreams, -- an empty table packs as a map: fleet.py reads {} as none
        exposure = conf.exposure and exposure.report(dict, t) or nil, -- decisions since the previous heartbeat
        outcomes = outcomes.report(dict), -- cumulative outcome counts (nil: none)
        breakers = outcomes.breakers(dict), -- rule id -> breaker instances (workers) per state (nil: none)
    })
    local _, err = cl:command(conf.keys.fleet, { "HSET", conf.keys.fleet, conf.gateway_id, value })
    if err then
        dict:set(K.hb_error, err)
    else
        dict:delete(K.hb_error)
    end
end


-- What this worker holds of the dict's current version (see held): kept up to
-- date by this worker's own applies; rebuilt from the shared payload and the
-- deltas published since it was written when another worker published or
-- rewrote the payload in between. When this worker serves the dict's version
-- (conf.serving: its set, version and routes), from what it serves: its
-- routes map, its compiled items' sigs (the others are looked up when a delta
-- needs them: held_sig) and the deltas since the payload (no read of the
-- payload). Else from the payload (O(rules) once; the routes of the rules
-- this worker serves with the same bytes taken from their compiled items,
-- the others decoded). held, or nil.
local function held_state(dict, conf)
    local ver = dict:get(K.ver)
    local head = payload.head(dict)
    if head and foreign(head) then
        return nil -- deltas wait for a full load
    end
    if ver ~= nil and ver == held.ver and head then
        if head.id ~= held.base and head.ver == ver then
            held.overlay, held.base, held.where = {}, head.id, nil -- another worker rewrote the payload
        end
        if head.id == held.base then
            return held
        end
    end
    local serving, serving_ver, serving_routes
    if conf.serving then
        serving, serving_ver, serving_routes = conf.serving()
        if ver ~= nil and serving_ver ~= ver and conf.on_tick then
            -- this worker's own catch-up first (what its next tick does: its first set compiled, the
            -- published deltas applied; compiled here, yielding, not in a timer): then the state comes
            -- from the set it serves, not from a second decode of the payload beside the compile of its set
            pcall(conf.on_tick, _M.pauser(PAUSE_EVERY))
            serving, serving_ver, serving_routes = conf.serving()
        end
    end
    local pause = _M.pauser(PAUSE_EVERY)
    if serving and ver ~= nil and serving_ver == ver and serving_routes and head and head.id ~= "legacy" then
        local overlay = {}
        if head.ver == ver or walk_deltas(dict, head.ver, ver, {}, function(d)
            for id in pairs(d.changes) do
                overlay[id] = delta_value(d, id)
            end
            return true
        end) then
            local sigs = {}
            for id, item in pairs(router.items(serving, pause)) do
                sigs[id] = item.sig -- nil for an item compiled from a delta: held_sig looks it up
            end
            held.ver, held.sigs, held.routes, held.overlay, held.base = ver, sigs, serving_routes, overlay, head.id
            held.where = compiled_where and compiled_where.base == head.id and compiled_where.where or nil
            compiled_where = nil
            return held
        end
    end
    local sigs, routes, overlay, where = {}, {}, {}, {}
    local items = serving and router.items(serving, pause) or {}
    local phead = payload.read(dict, function(id, value, ph, key)
        local sig = digest.sig(id, value)
        local item = items[id]
        where[id] = key
        if item and item.sig == sig then
            sigs[id], routes[id] = sig, item
            return true
        end
        local rule, err = decode_one(id, value, ph.checked == CHECKED_BY)
        if not rule then
            return nil, err
        end
        sigs[id], routes[id] = sig, router.place_of(rule)
        return true
    end, pause)
    if not phead then
        return nil
    end
    local pver = phead.ver
    if pver ~= ver and not walk_deltas(dict, pver, ver, routes, function(d)
        for id in pairs(d.changes) do
            local value = delta_value(d, id)
            overlay[id], sigs[id] = value, value and digest.sig(id, value) or nil
        end
        return true
    end) then
        return nil
    end
    held.ver, held.sigs, held.routes, held.overlay, held.base = ver, sigs, routes, overlay, phead.id
    held.where = phead.id ~= "legacy" and where or nil
    return held
end


-- The stored bytes of rule id in the shared payload whose id is base (the
-- chunks that may hold it, found by its packed id, are decoded), or nil.
local function payload_value(dict, base, id)
    local head = payload.head(dict)
    if not head or head.id ~= base or head.id == "legacy" then
        return nil
    end
    local packed = mp.pack(id)
    for i = 1, head.n do
        local chunk = payload.chunk(dict, head, i)
        if not chunk then
            return nil
        end
        if find(chunk, packed, 1, true) then
            local found
            snapshot.each_rule(chunk, function(rid, value)
                if rid == id then
                    found = value
                    return nil
                end
                return true
            end)
            if found then
                return found
            end
        end
    end
    return nil
end


-- The sig of rule id in a held state (nil when it has no such rule), looked up
-- in the overlay or the payload when not known yet; nil, false when it cannot
-- be found (the held state is not the payload's any more).
local function held_sig(dict, h, id)
    local sig = h.sigs[id]
    if sig ~= nil or h.routes[id] == nil then
        return sig, true
    end
    local value = h.overlay[id]
    if value == nil then
        value = payload_value(dict, h.base, id)
    end
    if not value then
        return nil, false
    end
    sig = digest.sig(id, value)
    h.sigs[id] = sig
    return sig, true
end


-- fn(id, stored bytes) for every rule of a held state: the payload's rules
-- with the overlay's changes, then the rules the overlay adds; pause between
-- rules. The payload's header, or nil, err (fn's, or the payload is gone).
local function each_held_rule(dict, h, fn, pause)
    local overlay, seen = h.overlay, {}
    local head, err = payload.read(dict, function(id, value)
        local v = overlay[id]
        if v == nil then
            return fn(id, value)
        end
        seen[id] = true
        if v then
            return fn(id, v)
        end
        return true
    end, pause, h.base)
    if not head then
        return nil, err
    end
    for id, v in pairs(overlay) do
        if v and not seen[id] then
            if pause then
                pause()
            end
            local ok, ferr = fn(id, v)
            if not ok then
                return nil, ferr
            end
        end
    end
    return head
end


-- Overlays of at most this many rules are looked for in the payload's chunks
-- by their packed ids (write_held); a larger one rewrites every chunk.
local VERBATIM_MAX = 64


-- A checkpoint's rule writer over w: add(id, the base payload's bytes) writes
-- the overlay's version instead (nothing when it removes the rule);
-- add_rest() then writes the overlay's rules the base did not hold.
local function overlay_writer(w, overlay)
    local seen = {}
    local function add(id, value)
        local v = overlay[id]
        if v == nil then
            return w:add(id, value)
        end
        seen[id] = true
        if v then
            return w:add(id, v)
        end
        return true
    end
    local function add_rest()
        for id, v in pairs(overlay) do
            if v and not seen[id] then
                local ok, err = w:add(id, v)
                if not ok then
                    return nil, err
                end
            end
        end
        return true
    end
    return add, add_rest
end


-- write_held when the chunk of every rule of the base payload is known
-- (h.where): the chunks that hold no rule of the overlay are borrowed (not
-- read, not copied: the new payload names them), the others rewritten rule by
-- rule with the overlay's changes, then the rules the overlay adds.
-- The header (h.where updated for it), or nil, err (h unchanged).
local function write_borrowing(dict, h, base, meta, ver, pause)
    local overlay, where = h.overlay, h.where
    local touched = {}
    for id in pairs(overlay) do
        local key = where[id]
        if key then
            touched[key] = true
        end
    end
    local place = {}
    local w = payload.writer(dict, meta, nil, place)
    local add, add_rest = overlay_writer(w, overlay)
    local ok, err = true, nil
    for i = 1, base.n do
        local key = payload.key_of(base, i)
        if touched[key] then
            local chunk = dict:get(key)
            if not chunk then
                ok, err = nil, "the payload was replaced during the read"
            else
                ok, err = snapshot.each_rule(chunk, add)
            end
        else
            ok, err = w:add_key(key, base.counts[i], base.sizes[i])
        end
        if not ok then
            break
        end
        if pause then
            pause()
        end
    end
    if ok then
        ok, err = add_rest()
    end
    if not ok then
        w:abort()
        return nil, err
    end
    local head
    head, err = w:finish(ver)
    if not head then
        return nil, err
    end
    for id in pairs(overlay) do -- the new payload's: the borrowed chunks' rules stay where they were
        where[id] = nil
    end
    for id, key in pairs(place) do
        where[id] = key
    end
    return head
end


-- Write the rules of a held state as the new shared payload (meta as in
-- payload.writer; ver: the dict version it holds), yielding; its header, or
-- nil, err. The payload's chunks that hold none of the overlay's rules are
-- borrowed (write_borrowing when h.where tells which they are; else found by
-- a string search for each changed rule's packed id: a chunk that may hold
-- one is rewritten rule by rule): a checkpoint after a few changes does not
-- decode and re-encode every rule, which left ~3x the payload's size of
-- garbage in the syncing worker's heap, nor copy the chunks it keeps.
local function write_held(dict, h, meta, ver, pause)
    local base = payload.head(dict)
    local overlay, packed = h.overlay, {}
    local where = h.where
    if where and base and base.id == h.base and type(base.counts) == "table" and #base.counts == base.n
            and type(base.sizes) == "table" then
        return write_borrowing(dict, h, base, meta, ver, pause)
    end
    h.where = nil -- not known for the payload written below
    for id in pairs(overlay) do
        if #packed >= VERBATIM_MAX then
            packed = nil
            break
        end
        packed[#packed + 1] = mp.pack(id)
    end
    local w = payload.writer(dict, meta)
    local ok, err
    if packed and base and base.id == h.base and type(base.counts) == "table" and #base.counts == base.n then
        local add, add_rest = overlay_writer(w, overlay)
        ok = true
        for i = 1, base.n do
            local chunk = payload.chunk(dict, base, i)
            if not chunk then
                ok, err = nil, "the payload was replaced during the read"
                break
            end
            local touched = false
            for j = 1, #packed do
                if find(chunk, packed[j], 1, true) then
                    touched = true
                    break
                end
            end
            if touched then
                ok, err = snapshot.each_rule(chunk, add)
            else
                ok, err = w:add_key(payload.key_of(base, i), base.counts[i], #chunk)
            end
            if not ok then
                break
            end
            if pause then
                pause()
            end
        end
        if ok then
            ok, err = add_rest()
        end
    else
        ok, err = each_held_rule(dict, h, function(id, value)
            return w:add(id, value)
        end, pause)
    end
    if not ok then
        w:abort()
        return nil, err
    end
    return w:finish(ver)
end
_M.write_held = write_held -- for tests/lua/spec/write_held_spec.lua


-- Undo apply_entries' changes to the held maps (newest first).
local function revert(undo, h)
    for i = #undo, 1, -1 do
        local u = undo[i]
        local id = u[1]
        h.sigs[id], h.routes[id], h.overlay[id] = u[2], u[3], u[4]
    end
end


-- Apply log entries to the held state, checking the digest after each;
-- returns the held state, digest, undo, decoded (id -> the changed rule
-- decoded | false), or nil, reason (nothing changed). pause, when given, is
-- called before each change (the caller holds the sync lock: nothing else
-- touches the held state meanwhile).
local function apply_entries(dict, entries, conf, pause)
    local h = held_state(dict, conf)
    local sum = dict:get(K.digest)
    if not h or not sum then
        return nil, "no held rule set"
    end
    local sigs, routes, overlay = h.sigs, h.routes, h.overlay
    local undo, decoded = {}, {}
    local function fail(reason)
        revert(undo, h)
        held.ver = nil -- the copy may no longer be the dict's
        return nil, reason
    end
    for _, e in ipairs(entries) do
        -- with pause, a large entry's changes are decoded a change at a time (17 ms for 2,000 in one block)
        local ok, changes = pcall(mpdecode.unpack_paused, e.changes, pause)
        if not ok or type(changes) ~= "table" then
            return fail("log revision " .. e.rev .. ": undecodable changes")
        end
        for _, c in ipairs(changes) do
            if pause then
                pause()
            end
            local id, after = c[1], c[3]
            if type(id) ~= "string" or (after and type(after) ~= "string") then
                return fail("log revision " .. e.rev .. ": undecodable change")
            end
            local rule, err, sig
            if after then
                rule, err = decode_one(id, after)
                if not rule then
                    return fail("log revision " .. e.rev .. ": " .. err)
                end
                sig = digest.sig(id, after)
            end
            local before, known = held_sig(dict, h, id)
            if not known then
                return fail("log revision " .. e.rev .. ": rule " .. id .. " is not in the shared payload")
            end
            undo[#undo + 1] = { id, before, routes[id], overlay[id] }
            sum = digest.apply_sigs(sum, before, sig)
            sigs[id], routes[id], overlay[id], decoded[id] = sig, rule and router.place_of(rule) or nil, after or false,
                rule or false
        end
        if e.digest ~= "" and e.digest ~= sum then
            return fail("after log revision " .. e.rev .. " the store has digest " .. e.digest
                .. ", the delta gives " .. sum)
        end
    end
    held.ver = nil -- changed in place: belongs to the version publish() is about to set
    return h, sum, undo, decoded
end
_M.apply_entries = apply_entries -- for tests/lua/spec/held_state_spec.lua


-- A full load's check in nginx's thread pool conf.check_thread_pool (the
-- "check_thread_pool" option, default "rulegate"): while the syncing worker
-- reads, it places each rule by route (router.add_pending, as the other
-- workers do with what it publishes) and writes the payload chunk by chunk;
-- each chunk written is decoded, checked and compiled, rule by rule, by
-- rule_check.chunk in a worker thread, off this event loop, and the load fails
-- on the first rule that does not pass, with the words of a check made here.
-- Without that pool (not in nginx.conf, or an nginx without worker threads)
-- the load checks and compiles every rule here, as before, and says so once.
local pool_missing = false -- the pool was not found: loads check in this worker

local function check_pool(conf)
    local pool = conf.check_thread_pool
    if pool and not pool_missing and ngx.run_worker_thread then
        return pool
    end
    return nil
end


-- The result of rule_check.chunks(conf.dict, keys) made in the pool (in this
-- worker when the pool cannot take it: said once).
local function check_chunks(conf, pool, keys)
    local ok, bad, why = ngx.run_worker_thread(pool, "rulegate.rule_check", "chunks", conf.dict, keys)
    if ok then
        conf.shm:incr(K.pool_checks, #keys, 0)
        return bad, why
    end
    if find(tostring(bad), "not found", 1, true) then
        pool_missing = true
        log(NOTICE, "rulegate: no thread pool \"", pool, "\" in nginx.conf: the syncing worker checks and compiles ",
            "the rules of a full load in its event loop (add `thread_pool ", pool, " threads=1;` to the main ",
            "context, or set \"check_thread_pool\": false)")
    else
        log(WARN, "rulegate: thread pool ", pool, " failed a check (", tostring(bad), "); checked here")
    end
    return rule_check.chunks(conf.dict, keys)
end


-- A full load: each rule decoded, checked and compiled as it is taken from
-- the read (as decode_rules, then router.compile; yielding), the rules of the
-- set served (conf.serving) with the same bytes reused (load_rule); each rule's
-- bytes go to a new shared payload as they are compiled (a writer, made
-- current by publish). scan_read feeds it each HSCAN batch as it arrives
-- (loader_add), so neither the whole read's map nor its strings live beside
-- the new set. The first error stops the compile (the writer is aborted); it
-- is reported by loader_finish, after the read was found consistent: the
-- outcomes and their order are those of a load of the whole read.
local function new_loader(conf, rev, gen)
    local pause = _M.pauser(PAUSE_EVERY)
    local serving = conf.serving and conf.serving()
    local n = conf.shm:get(K.count) or 0 -- the rules held: the new set's likely size (its maps presized)
    local where = new_tab(0, n)
    return {
        pause = pause, rs = router.new_set(rev), routes = new_tab(0, n), sigs = new_tab(0, n), acc = digest.new(),
        gen = gen,
        reuse = serving and router.items(serving, pause), where = where,
        w = payload.writer(conf.shm, { namespace = conf.namespace, generation = gen, revision = rev,
                                       written_at = floor(now()), checked = CHECKED_BY }, nil, where),
        -- checked: chunks of w the pool passed; fresh[i]: chunk i has a rule not served already
        conf = conf, pool = check_pool(conf), checked = 0, fresh = {},
    }
end


-- Stop a loader at its first error (nothing once it has one).
local function loader_fail(L, err)
    L.err = err
    if L.w then
        L.w:abort()
        L.w = nil
    end
    L.rs, L.routes, L.reuse, L.where = nil, nil, nil, nil -- garbage now, not when the read ends
end


-- Check in the pool the chunks the loader's writer stored since the last
-- call, POOL_BATCH at a time (each hand-over costs the event loop ~0.5 ms), or
-- all of them with `all` (not those whose every rule is one this worker
-- serves with the same bytes: checked when it was first loaded, and not
-- compiled again: load_rule).
local POOL_BATCH = 8 -- chunks of payload.CHUNK (256) rules

local function check_written(L, all)
    local w = L.w
    if not w or L.err or w.head.n - L.checked < (all and 1 or POOL_BATCH) then
        return
    end
    local keys = {}
    for i = L.checked + 1, w.head.n do
        if L.fresh[i] then
            keys[#keys + 1] = w:key_of(i)
        end
    end
    L.checked = w.head.n
    if #keys > 0 then
        local bad, why = check_chunks(L.conf, L.pool, keys)
        if bad ~= 0 then
            loader_fail(L, why)
        end
    end
end


-- Add stored rule id (bytes value, or value:sub(first, last): an HSCAN
-- reply's string, not cut) to a loader; an id already added (HSCAN
-- may return a field twice) is skipped. Nothing once an error was met.
local function loader_add(L, id, value, first, last)
    if L.err or L.sigs[id] ~= nil then
        return
    end
    L.pause()
    local pool = L.pool
    -- with a pool: placed pending, checked in the pool with its chunk
    local sig, err = load_rule(L.rs, L.routes, L.reuse, id, value, false, pool ~= nil, first, last)
    if not sig then
        if pool and L.w and L.w:seal() then
            check_written(L, true) -- a rule read before this one that fails its check comes first
        end
        if not L.err then
            loader_fail(L, err)
        end
        return
    end
    L.sigs[id] = sig
    digest.add_sig(L.acc, sig)
    local w = L.w
    if w then
        if pool then
            local item = L.reuse and L.reuse[id]
            if not (item and item.sig == sig) then -- not served already: its chunk is checked
                L.fresh[w.head.n + 1] = true
            end
        end
        local ok, aerr = w:add(id, value, first, last)
        if not ok then
            L.werr, L.w = aerr, nil
        elseif pool and w.head.n - L.checked >= POOL_BATCH then
            check_written(L)
        end
    end
end


-- Drop what a loader built (the read failed, or its result is not applied).
local function loader_abort(L)
    if L.w then
        L.w:abort()
        L.w = nil
    end
    L.err = L.err or "aborted"
    L.rs, L.routes, L.reuse, L.where = nil, nil, nil, nil
end


-- The loaded set: {rs, routes, sigs, digest (of the rules read), writer (nil
-- when the dict is full: werr)}, or nil, err (nothing written). With a pool,
-- the writer's last chunk is stored and checked first (a load whose writer
-- failed is not applied: apply() reports werr).
local function loader_finish(L)
    if L.pool and L.w and not L.err then
        local ok, werr = L.w:seal()
        if ok then
            check_written(L, true)
        else
            L.werr, L.w = werr, nil
        end
    end
    if L.err then
        return nil, L.err
    end
    local ok, rs = pcall(router.finish, L.rs, _M.pauser(PAUSE_EVERY))
    if not ok then
        loader_abort(L)
        return nil, "rule set does not compile: " .. tostring(rs)
    end
    rs.generation = L.gen
    return { rs = rs, routes = L.routes, sigs = L.sigs, digest = digest.hex(L.acc), writer = L.w, werr = L.werr,
             where = L.where }
end


_M.new_loader, _M.loader_add, _M.loader_finish = new_loader, loader_add, loader_finish -- for full_load_spec


-- A full read's map (HGETALL) loaded as above; its entries are dropped as they
-- are compiled.
local function load_full(conf, got)
    local L = new_loader(conf, got.rev, got.gen)
    local raw = got.raw
    got.raw = nil
    for id, value in pairs(raw) do
        loader_add(L, id, value)
        if L.err then
            return nil, L.err
        end
        raw[id] = nil -- assigning nil to a field during its traversal is allowed
    end
    return loader_finish(L)
end


-- Compile the rules of a held state (a delta with no compiled set to start
-- from), the served set's reused (load_rule); rs, routes, or nil, err.
local function compile_held(conf, got)
    local pause = _M.pauser(PAUSE_EVERY)
    local rs, routes = router.new_set(got.rev), {}
    local serving = conf.serving and conf.serving()
    local reuse = serving and router.items(serving, pause)
    local head, err = each_held_rule(conf.shm, got.held, function(id, value)
        return load_rule(rs, routes, reuse, id, value, false)
    end, pause)
    if not head then
        return nil, err
    end
    local ok
    ok, rs = pcall(router.finish, rs, _M.pauser(PAUSE_EVERY))
    if not ok then
        return nil, "rule set does not compile: " .. tostring(rs)
    end
    rs.generation = got.gen
    return rs, routes
end


-- Write the snapshot file from a payload's header and its chunks in the
-- shared dict, yielding between chunks.
local function write_snapshot(conf, head)
    local pieces = { snapshot.payload_prefix(head.namespace, head.generation, head.revision, head.written_at,
                                             head.count) }
    for i = 1, head.n do
        local chunk = payload.chunk(conf.shm, head, i)
        if not chunk then
            log(WARN, "rulegate: cannot write the snapshot: the payload was replaced")
            return
        end
        pieces[i + 1] = chunk
    end
    local pause = _M.pauser(1)
    local ok, err = snapshot.write_file(conf.snapshot_path, snapshot.frame_pieces(pieces, pause), pause)
    if not ok then
        log(WARN, "rulegate: cannot write the snapshot: ", err)
    end
end


-- True when a store revision rev of generation gen would roll a gateway
-- holding held_rev of held_gen back (apply refuses it).
local function regression(rev, gen, held_rev, held_gen)
    if held_gen ~= "" and gen ~= "" and gen ~= held_gen then
        return false
    end
    return rev < held_rev and (gen == held_gen or gen == "")
end


-- Apply a fetched rule set unless it would roll the gateway back.
local function apply(conf, got, held_rev, held_gen)
    local dict = conf.shm
    if held_gen ~= "" and got.gen ~= "" and got.gen ~= held_gen then
        log(ERR, "rulegate: namespace ", conf.namespace, " has a new generation ", got.gen,
            " (was ", held_gen, ", revision ", held_rev, "): the store was rebuilt; ",
            "accepting its revision ", got.rev)
    elseif regression(got.rev, got.gen, held_rev, held_gen) then
        if got.loader then
            loader_abort(got.loader)
        end
        return nil, "regression", "store revision " .. got.rev .. " of namespace "
            .. conf.namespace .. " is lower than the applied revision " .. held_rev
            .. " (same generation); keeping " .. held_rev
    end
    local rs, routes, err, loaded
    if got.changes and got.base then -- a delta onto the set this worker serves: O(changes)
        routes = got.routes
        local ok, res = pcall(router.with_changes, got.base, got.before, got.changes, got.rev, got.pause)
        if ok then
            rs = res
            rs.generation = got.gen
        else
            err = "rule set does not compile: " .. tostring(res)
        end
    elseif got.held then -- a delta with no compiled set to start from: decode and compile all
        rs, routes = compile_held(conf, got)
        err = not rs and routes or nil
        routes = rs and got.routes or routes -- keep the held map (updated in place)
    else -- a full read: compiled as it was read (scan_read), or the read's map
        if got.loader then
            loaded, err = loader_finish(got.loader)
        else
            loaded, err = load_full(conf, got)
        end
        if loaded then
            rs, routes = loaded.rs, loaded.routes
        end
    end
    if not rs then
        err = "revision " .. got.rev .. " of namespace " .. conf.namespace .. " refused: " .. err
            .. "; serving revision " .. tostring(held_rev)
        dict:set(K.refused_rev, got.rev)
        dict:set(K.refused_reason, err)
        return nil, "refused", err
    end
    local content_digest = got.content_digest or loaded.digest
    if got.digest ~= "" and got.digest ~= content_digest then
        if loaded and loaded.writer then
            loaded.writer:abort()
        end
        return nil, "error", "revision " .. got.rev .. " of namespace " .. conf.namespace
            .. ": the rules read do not match the store's digest (a slot migration in progress, or "
            .. "damaged keys); keeping revision " .. tostring(held_rev)
    end
    local delta = got.raw_changes and { from = got.base_ver, changes = got.raw_changes }
    local ver, head, where
    if delta then -- O(changes): the payload and the snapshot file follow in checkpoint()
        ver = _M.publish(dict, nil, got.rev, got.gen, rs.count, "redis", content_digest, delta)
    end
    if not ver then
        local full
        if loaded then
            if loaded.werr then
                return nil, "error", loaded.werr
            end
            full = { writer = loaded.writer }
            where = loaded.where
        else -- a delta that could not be published alone: the held rules as a new payload
            local h = got.held
            where = {}
            local w = payload.writer(dict, { namespace = conf.namespace, generation = got.gen, revision = got.rev,
                                             written_at = floor(now()), checked = CHECKED_BY }, nil, where)
            local ok, werr = each_held_rule(dict, h, function(id, value)
                return w:add(id, value)
            end, _M.pauser(PAUSE_EVERY))
            if not ok then
                w:abort()
                return nil, "error", werr
            end
            full = { writer = w }
        end
        ver, head = _M.publish(dict, full, got.rev, got.gen, rs.count, "redis", content_digest, delta)
        if not ver then
            return nil, "error", head
        end
    end
    if loaded then
        held.sigs, held.routes = loaded.sigs, routes
    end
    held.ver = ver
    if head then
        held.overlay, held.base, held.where = {}, head.id, where
    end
    if conf.on_compiled then
        conf.on_compiled(ver, rs, routes, got.entries == nil) -- this worker serves what it just compiled
    end
    if got.entries then
        dict:incr(K.deltas_applied, got.entries, 0)
    else
        dict:incr(K.full_reloads, 1, 0)
    end
    if head and conf.snapshot_path then
        write_snapshot(conf, head)
    end
    return true
end


-- Rewrite the shared payload (and the snapshot file) at the current version
-- once changes settle: checkpoint_delay seconds after the last one, or after
-- CHECKPOINT_EVERY deltas, or checkpoint_max seconds after the last rewrite
-- during a long burst. The caller holds the sync lock. Changes reach workers
-- through deltas meanwhile; this is the O(rules) part of a change, off its path.
local function checkpoint(conf)
    local dict = conf.shm
    local ver = dict:get(K.ver)
    if ver == nil or payload_version(dict) == ver then
        return
    end
    local t = now()
    if t - (dict:get(K.applied_at) or 0) < conf.checkpoint_delay
            and (dict:get(K.pending) or 0) < CHECKPOINT_EVERY
            and t - (dict:get(K.payload_at) or 0) < conf.checkpoint_max then
        return
    end
    local h = held_state(dict, conf)
    if not h or dict:get(K.ver) ~= ver then
        return
    end
    local pub = _M.published(dict)
    -- stamped when the published set was last confirmed current (the last good
    -- check), not now: Redis may have been down since, and a start from the file
    -- counts its staleness from written_at
    local confirmed = dict:get(K.last_ok) or t
    -- yields (the lock is held: nothing publishes meanwhile, the held state does not change)
    local head, err = write_held(dict, h, { namespace = conf.namespace, generation = pub.generation,
                                           revision = pub.revision, written_at = floor(confirmed),
                                           checked = CHECKED_BY },
                                 ver, _M.pauser(PAUSE_EVERY))
    if not head then
        log(ERR, "rulegate: ", err)
        return
    end
    if held.ver == ver then
        held.overlay, held.base = {}, head.id
    end
    if dict:get(K.ver) ~= ver then -- the lock expired during the write: the payload holds an older version
        return
    end
    dict:set(K.payload_at, t)
    dict:set(K.pending, 0)
    dict:incr(K.checkpoints, 1, 0)
    if conf.snapshot_path then
        write_snapshot(conf, head)
    end
end


-- Apply fetched log entries; true, or nil, reason (nothing applied: reload fully).
local function apply_delta(conf, cl, got, held_rev, held_gen)
    local dict = conf.shm
    local base_ver = dict:get(K.ver)
    local pause = _M.pauser(PAUSE_EVERY) -- a delta of many rules yields as a full load does
    local h, sum, undo, decoded = apply_entries(dict, got.delta, conf, pause)
    if not h then
        return nil, sum
    end
    local d = { rev = got.rev, gen = got.gen, held = h, routes = h.routes, digest = sum,
                content_digest = sum, entries = #got.delta, base_ver = base_ver,
                changes = decoded, before = {}, raw_changes = {}, pause = pause }
    for _, u in ipairs(undo) do -- oldest first: the first entry of an id holds its route before the delta
        local id = u[1]
        if d.raw_changes[id] == nil then
            d.before[id] = u[3]
            d.raw_changes[id] = h.overlay[id] or false
        end
    end
    d.base = conf.current_rs and conf.current_rs(base_ver) -- nil: compile the whole set
    local ok, _, err = apply(conf, d, held_rev, held_gen)
    if not ok then
        revert(undo, h)
        return nil, err
    end
    if d.rev < got.store_rev then
        dict:set(K.last_check, 0) -- more log to read: the next tick checks at once
    end
    set_state(conf, "ok")
    heartbeat(conf, cl, true)
    return true
end


-- A new generation of the rules this gateway serves (got.same: the store was
-- rebuilt or restored, and its digest is the held content's). Nothing is
-- read: the served set is published as the store's revision and generation
-- by an empty delta (O(1); the payload and the snapshot file follow in
-- checkpoint()). true, or nil, err (then a full read).
local function adopt(conf, cl, got, held_rev, held_gen)
    local dict = conf.shm
    local base_ver = dict:get(K.ver)
    local h, sum = apply_entries(dict, {}, conf)
    if not h then
        return nil, sum
    end
    local d = { rev = got.rev, gen = got.gen, held = h, routes = h.routes, digest = sum, content_digest = sum,
                entries = 0, base_ver = base_ver, changes = {}, before = {}, raw_changes = {} }
    d.base = conf.current_rs and conf.current_rs(base_ver) -- nil: compile the whole set
    local ok, _, err = apply(conf, d, held_rev, held_gen)
    if not ok then
        return nil, err
    end
    dict:incr(K.reloads_skipped, 1, 0)
    set_state(conf, "ok")
    heartbeat(conf, cl, true)
    return true
end


-- read() (a fetch) again while a commit landed during its full read (kind
-- "moved": the revision or digest moved under it), MOVED_READS reads in all;
-- then that is an error like any other. got, or nil, err, kind.
local function settled(read)
    local got, err, kind
    for _ = 1, MOVED_READS do
        got, err, kind = read()
        if got or kind ~= "moved" then
            return got, err, kind
        end
    end
    return nil, err, "error"
end


-- One check of the store (the caller holds the lock). Returns true or nil, err.
function _M.run_once(conf)
    local dict = conf.shm
    dict:incr(K.checks, 1, 0)
    dict:set(K.last_check, now())
    local cl = new_client(conf)
    local held_rev = dict:get(K.rev) or -1
    local held_gen = dict:get(K.gen) or ""
    -- a full read by HSCAN is compiled as it arrives, unless apply() would refuse it as a regression
    local loader
    local function stream(rev, gen)
        if regression(rev, gen, held_rev, held_gen) then
            return nil
        end
        loader = new_loader(conf, rev, gen)
        return function(id, value, first, last)
            loader_add(loader, id, value, first, last)
        end
    end
    local function fetched(got, ferr, fkind)
        if got and got.fed then
            got.loader = loader
        elseif loader then -- the read failed or was not used: drop what was compiled
            loader_abort(loader)
        end
        loader = nil
        return got, ferr, fkind
    end
    local got, err, kind = settled(function()
        return fetched(fetch(conf, cl, held_rev, held_gen, dict:get(K.digest), stream))
    end)
    if not got then
        set_state(conf, FAILED[kind] and kind or "error", err, kind)
        return nil, err
    end
    if got.same or got.delta then -- O(1) or O(changes); a full read when that fails
        local ok, aerr = (got.same and adopt or apply_delta)(conf, cl, got, held_rev, held_gen)
        if ok then
            return true
        end
        if got.same then
            log(WARN, "rulegate: namespace ", conf.namespace, ": generation ", got.gen, " of the rules held ",
                "not taken over without a read (", aerr, "); reloading fully")
        elseif conf.shm:get(K.state) ~= "refused" then -- a refusal repeats every check: say it once
            log(WARN, "rulegate: namespace ", conf.namespace, ": log delta not applied (", aerr,
                "); reloading fully")
        end
        got, err, kind = settled(function()
            return fetched(fetch(conf, cl, -1, held_gen, nil, stream)) -- held_rev -1: the whole hash
        end)
        if not got then
            set_state(conf, FAILED[kind] and kind or "error", err, kind)
            return nil, err
        end
    end
    if got.unknown and held_rev > 0 then -- the keys vanished: keep serving what this gateway holds
        if got.loader then
            loader_abort(got.loader)
        end
        set_state(conf, "unknown_namespace", got.unknown)
        heartbeat(conf, cl, false)
        return nil, got.unknown
    end
    local changed = false
    if not got.unchanged then
        local ok, state, aerr = apply(conf, got, held_rev, held_gen)
        if not ok then
            set_state(conf, state, aerr)
            heartbeat(conf, cl, false)
            return nil, aerr
        end
        changed = true
    elseif dict:get(K.source) == "snapshot" then
        dict:set(K.source, "redis") -- the store confirmed the snapshot's revision
        local pub = _M.published(dict)
        if pub.revision then
            pub.source = "redis"
            dict:set(K.published, cjson.encode(pub))
        end
    end
    if got.unknown then -- served as an empty rule set (revision 0), reported as unknown
        set_state(conf, "unknown_namespace", got.unknown)
    else
        set_state(conf, "ok")
    end
    heartbeat(conf, cl, changed)
    return true
end


-- Load the snapshot file into the shared dict (init_by_lua, cold start): true
-- and the set compiled from it (nil when the dict already held this or a newer
-- revision), or nil, err.
function _M.load_snapshot(conf)
    local dict = conf.shm
    local snap, err = snapshot.read(conf.snapshot_path)
    if not snap then
        return nil, err
    end
    if snap.namespace ~= conf.namespace then
        return nil, "snapshot is for namespace " .. snap.namespace
    end
    local held_rev = dict:get(K.rev)
    if held_rev and held_rev >= snap.revision and dict:get(K.gen) == snap.generation then
        return true -- a reload: the dict already holds this or a newer revision
    end
    local rs
    rs, err = _M.compile_payload(snap.payload)
    if not rs then
        return nil, err
    end
    local ok
    ok, err = _M.publish(dict, { namespace = snap.namespace, raw = snap.rules }, snap.revision, snap.generation,
        rs.count, "snapshot", digest.of(snap.rules))
    if not ok then
        return nil, err
    end
    dict:set(K.last_ok, snap.written_at)
    dict:set(K.state, "snapshot")
    return true, rs
end


-- True when a reload claimed the dict for another namespace (claim()): this
-- worker belongs to the configuration being replaced and stops writing it.
local function claimed_by_other(conf)
    local owner = conf.shm:get(K.namespace)
    return owner ~= nil and owner ~= conf.namespace
end


local function step(conf)
    local dict = conf.shm
    if claimed_by_other(conf) then
        return
    end
    update_time()
    local last = dict:get(K.last_check) or 0
    local since = now() - last
    if since < conf.refresh_interval * 0.5 then
        return
    end
    -- the listening worker (it applies notified changes) also polls while it keeps
    -- up: the held raw rules stay in one worker instead of being rebuilt from the
    -- payload by whichever worker's timer fires first
    local listener = dict:get(K.sub_lock)
    if listener and listener ~= worker_pid() and since < conf.refresh_interval * 2 then
        return
    end
    local ok = dict:add(K.lock, worker_pid(), conf.lock_ttl)
    if not ok then
        return
    end
    local pok, perr = xpcall(_M.run_once, traceback, conf)
    local cok, cerr = xpcall(checkpoint, traceback, conf)
    dict:delete(K.lock)
    _M.publish_stats(dict)
    if not cok then
        log(ERR, "rulegate: checkpoint failed: ", cerr)
    end
    if not pok then
        log(ERR, "rulegate: sync crashed: ", perr)
    end
end


local function tick(premature, conf)
    if premature then
        return
    end
    local ok, err = xpcall(step, traceback, conf)
    if not ok then
        log(ERR, "rulegate: sync step failed: ", err)
    end
    if conf.on_tick then
        pcall(conf.on_tick)
    end
    local delay = conf.refresh_interval * (0.5 + 0.5 * random())
    ok, err = timer_at(delay, tick, conf)
    if not ok and err ~= "process exiting" then
        log(ERR, "rulegate: cannot schedule the sync timer: ", err)
    end
end


-- Run a check now (a notification arrived), unless another worker holds the lock.
local function check_now(conf)
    local dict = conf.shm
    if claimed_by_other(conf) or not dict:add(K.lock, worker_pid(), conf.lock_ttl) then
        return
    end
    local pok, perr = xpcall(_M.run_once, traceback, conf)
    dict:delete(K.lock)
    if not pok then
        log(ERR, "rulegate: sync crashed: ", perr)
    end
end


-- Hold a sharded subscription to the namespace's events channel on the slot's
-- master for at most listen_max seconds; every "rev N" message runs a check.
-- Returns when the subscription ends (error, timeout of the session, exit).
-- moved_to: the node a MOVED reply named (the one retry of a stale slot map).
local function listen_once(conf, moved_to)
    local dict = conf.shm
    local pid = worker_pid()
    local cl = new_client(conf)
    local addr, err = moved_to, nil
    if not addr then
        addr, err = cl:master_of(conf.keys.rev)
        if not addr then
            return nil, err
        end
    end
    local red
    red, err = cl:open(addr)
    if not red then
        return nil, err
    end
    local channel = conf.keys.events
    local res
    res, err = red:ssubscribe(channel)
    if not res then
        red:close()
        -- a failover or a slot migration: this worker's slot map is stale. The
        -- reply names the owner: subscribe there at once (no back-off) and let
        -- the next look-up fetch the new map
        local target = not moved_to and type(err) == "string" and match(err, "^MOVED %d+ (%S+)$")
        if target then
            cl:refresh_slots()
            return listen_once(conf, target)
        end
        return nil, "SSUBSCRIBE " .. channel .. " on " .. addr .. ": " .. tostring(err)
    end
    dict:incr(K.subscriptions, 1, 0)
    -- lua-resty-redis knows SUBSCRIBE but not SSUBSCRIBE: enter its subscribed mode
    red._subscribed = true
    local deadline = now() + conf.listen_max
    while not ngx.worker.exiting() and now() < deadline do
        dict:set(K.sub_lock, pid, conf.listen_lock_ttl)
        res, err = red:read_reply()
        if res then
            if res[1] == "smessage" then
                check_now(conf)
            elseif res[1] == "sunsubscribe" then
                -- the slot moved away from this node: subscribe again (at once)
                -- where the new map says it is
                red:close()
                cl:refresh_slots()
                return true
            end
        elseif err ~= "timeout" then
            red:close()
            return nil, "subscription to " .. addr .. " ended: " .. tostring(err)
        end
        update_time()
    end
    red:close()
    return true
end


local function listen(premature, conf)
    if premature then
        return
    end
    local dict = conf.shm
    local pid = worker_pid()
    local holder = dict:get(K.sub_lock)
    local delay = conf.refresh_interval
    if holder == nil and dict:add(K.sub_lock, pid, conf.listen_lock_ttl) or holder == pid then
        keep_where = true -- this worker may sync
        local ok, res, err = xpcall(listen_once, traceback, conf)
        dict:delete(K.sub_lock)
        if ok and res then
            delay = 0
            listen_failures = 0
            dict:delete(K.sub_error)
        else
            if not ok then
                log(ERR, "rulegate: notification listener crashed: ", res)
            end
            dict:set(K.sub_error, ok and err or "crashed")
            dict:incr(K.sub_failures, 1, 0)
            -- polling still runs: back off, 0.5 s doubling up to 30 s
            delay = math.min(0.5 * 2 ^ listen_failures, 30)
            listen_failures = listen_failures + 1
        end
    end
    if ngx.worker.exiting() then
        return
    end
    local tok, terr = timer_at(delay, listen, conf)
    if not tok and terr ~= "process exiting" then
        log(ERR, "rulegate: cannot schedule the notification listener: ", terr)
    end
end


-- Start the sync timer (and the notification listener) of this worker (init_worker).
function _M.start(conf)
    _M.reserve_strings()
    math.randomseed(worker_pid() + floor(now() * 1000))
    local ok, err = timer_at(0, tick, conf)
    if not ok then
        return nil, "cannot start the sync timer: " .. tostring(err)
    end
    if conf.notifications then
        ok, err = timer_at(0, listen, conf)
        if not ok then
            return nil, "cannot start the notification listener: " .. tostring(err)
        end
    end
    return true
end


-- Publish this worker's cluster-client counters under stats:<pid> and make sure
-- its pid is in the index K.stats_pids (a race between two workers adding at
-- once can drop one pid: it is added again by that worker's next publish).
function _M.publish_stats(dict)
    local pid = tostring(worker_pid())
    dict:set("stats:" .. pid, cjson.encode(cluster.stats), 3600)
    local pids = dict:get(K.stats_pids) or ""
    if not find(" " .. pids .. " ", " " .. pid .. " ", 1, true) then
        local list = {}
        for p in gmatch(pids, "%d+") do
            list[#list + 1] = p
        end
        list[#list + 1] = pid
        local from = max(1, #list - STATS_PIDS + 1)
        dict:set(K.stats_pids, concat(list, " ", from, #list))
    end
end


-- Return pid -> cluster-client counters of every worker that published them
-- lately (no get_keys: that walks every key of the dict with its lock held).
function _M.stats_of(dict)
    local out = {}
    for pid in gmatch(dict:get(K.stats_pids) or "", "%d+") do
        local raw = dict:get("stats:" .. pid)
        if raw then
            out[pid] = cjson.decode(raw)
        end
    end
    return out
end

return _M
