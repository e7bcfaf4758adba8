-- Drives rulegate.schema, rulegate.request and rulegate.router from pytest in
-- batches (tests/lua/decide_harness.py): rules travel as the msgpack the store
-- holds, requests as raw values (bytes), so Lua decodes, checks, builds and
-- decides exactly as a gateway does.
local mp = require("MessagePack")
local cjson = require("cjson.safe")
local schema = require("rulegate.schema")
local router = require("rulegate.router")
local request = require("rulegate.request")
local mpdecode = require("rulegate.mpdecode")
local rule_check = require("rulegate.rule_check")
local schema_fast = require("rulegate.schema_fast")
local same = require("spec_runner").deep_eq

local _M = {}


local function body()
    ngx.req.read_body()
    local data = ngx.req.get_body_data()
    if not data then
        local path = ngx.req.get_body_file()
        local f = assert(io.open(path, "rb"))
        data = f:read("*a")
        f:close()
    end
    return mp.unpack(data)
end


-- The id schema_fast.sure is given for raw: the hash field a gateway
-- reads it under, here the id it holds ("" when it holds none).
local function stored_id(raw)
    local ok, rule = pcall(mpdecode.unpack, raw)
    return ok and type(rule) == "table" and type(rule.id) == "string" and rule.id or ""
end


-- The decoded rules, the check error of each (cjson.null when accepted), and
-- whether schema_fast was sure of each. A rule schema_fast is sure of and the
-- full check refuses gets an error naming that (the harness's callers fail on it).
local function decode(raw_rules)
    local rules, errors, bad, fast = {}, {}, false, {}
    for i, raw in ipairs(raw_rules) do
        local rule, err = rule_check.check_stored(raw) -- as a gateway reads a stored rule (rule_check.decode)
        local good = rule ~= nil
        fast[i] = schema_fast.sure(raw, 1, #raw, stored_id(raw))
        if fast[i] and not good then
            err = "schema_fast accepted a rule check_stored refuses: " .. err
        end
        errors[i] = err or cjson.null
        if good then
            rules[#rules + 1] = rule
        else
            bad = true
        end
    end
    return rules, errors, bad, fast
end


-- POST /check msgpack {rules = {raw, ...}} -> {errors = {err|null, ...}, fast = {bool, ...}}
function _M.check()
    local b = body()
    local _, errors, _, fast = decode(b.rules)
    ngx.say(cjson.encode({ errors = errors, fast = fast }))
end


local function decision(d)
    return {
        action = d.action, upstream = d.upstream, status = d.status, headers = d.headers,
        body = d.body, location = d.location, rule_id = d.rule_id, revision = d.revision,
    }
end


-- The set a gateway worker loads from a payload its syncing worker checked
-- (sync.compile_current): each enabled rule placed pending by its route
-- (router.add_pending), compiled by the first request that reaches it.
-- Returns the set and how many rules were placed pending.
local function pending_set(raw_rules, revision)
    local rs, placed, unplaced = router.new_set(revision), 0, {}
    for _, raw in ipairs(raw_rules) do
        local id, host, path, kind, enabled = mpdecode.route_of(raw)
        if host and enabled ~= false then
            router.add_pending(rs, id, raw, nil, host, path, kind)
            placed = placed + 1
        else
            local rule = mp.unpack(raw)
            router.add(rs, rule)
            if rule.enabled ~= false and #unplaced < 10 then
                unplaced[#unplaced + 1] = tostring(rule.id)
            end
        end
    end
    return router.finish(rs), placed, unplaced
end


-- POST /batch msgpack {rules = {raw, ...}, revision, requests = {raw request, ...}}
-- -> {errors, decisions = {decision, ...}, pending_mismatch = {index, ...}}; a raw
-- request is what request.from_raw takes (host, target, method, ip, now, headers =
-- {{n, v}}). Every request is decided by the compiled set and by the same rules
-- placed pending (pending_set): pending_mismatch lists the requests where the two
-- differ (0: the counts differ), pending the number of rules placed pending,
-- unplaced the ids (up to 10) of enabled rules route_of did not read.
function _M.batch()
    local b = body()
    local rules, errors, bad = decode(b.rules)
    local out = { errors = errors, decisions = {}, pending_mismatch = {} }
    if not bad then
        local rs = router.compile(rules, b.revision)
        local lazy
        lazy, out.pending, out.unplaced = pending_set(b.rules, b.revision)
        for i, r in ipairs(b.requests) do
            local d = decision(router.decide(rs, request.from_raw(r)))
            out.decisions[i] = d
            if not same(d, decision(router.decide(lazy, request.from_raw(r)))) then
                out.pending_mismatch[#out.pending_mismatch + 1] = i
            end
        end
        if lazy.count ~= rs.count then
            out.pending_mismatch[#out.pending_mismatch + 1] = 0
        end
    end
    ngx.say(cjson.encode(out))
end


-- POST /changes msgpack {steps = {{revision, changes = {id = raw | false}}, ...},
-- requests} -> {decisions = {{decision, ...} per step}}: the rule set is built
-- by router.with_changes() from an empty one, step by step, as a gateway
-- applies log deltas.
function _M.changes()
    local b = body()
    local rs, held = router.compile({}, 0), {}
    local out = { decisions = {} }
    for s, step in ipairs(b.steps) do
        local changes = {}
        for id, raw in pairs(step.changes) do
            local rule = raw and mp.unpack(raw)
            changes[id] = rule and assert(schema.check(rule)) and rule or false
        end
        rs = router.with_changes(rs, held, changes, step.revision)
        for id, rule in pairs(changes) do
            held[id] = rule and router.place_of(rule) or nil
        end
        local got = {}
        for i, r in ipairs(b.requests) do
            got[i] = decision(router.decide(rs, request.from_raw(r)))
        end
        out.decisions[s] = got
        out.count = rs.count
    end
    ngx.say(cjson.encode(out))
end


return _M
