-- The check a gateway makes before it serves a stored rule: decoded, checked
-- against the schema, its id equal to its hash field. The syncing worker's full
-- load makes it on every rule it reads, and compiles each; with a thread pool
-- (the "check_thread_pool" option) it hands the payload chunks it writes to
-- chunks() in one of nginx's worker threads (ngx.run_worker_thread), which makes
-- the same check and compile there, off the event loop that serves requests,
-- while the worker places the rules by route (docs/design.md, "Pending rules");
-- there a rule stored canonically is checked in one pass of its bytes
-- (rulegate.schema_fast), neither decoded nor compiled.
--
-- Loaded in a worker thread's Lua VM too: nothing here may touch an ngx API a
-- worker thread does not have (only ngx.shared is used, in chunk()).
-- An older nginx-lua without ngx.run_worker_thread, or no such pool: the
-- worker checks in its own loop (sync.lua).
local mpdecode = require("rulegate.mpdecode")
local router = require("rulegate.router")
local schema = require("rulegate.schema")
local schema_fast = require("rulegate.schema_fast")
local snapshot = require("rulegate.snapshot")

local pcall = pcall
local tostring = tostring
local type = type
local is_sure = schema_fast.sure

local _M = { _VERSION = "0.1.0" }

local MAX_ENCODED_RULE = 96 * 1024
local ONE_PASS = "sync:pool_one_pass" -- rules chunk() found good in one pass of their bytes (a status counter)


-- The rule stored as value, decoded and checked: its stored form first
-- (stored_form: what decoding hides from the schema, a null, a whole float, an
-- empty map for a list), then against the schema (the reason names the field
-- as the Python gateways name it); or nil, reason. With i, j: the stored bytes
-- are value:sub(i, j), read in place.
function _M.check_stored(value, i, j)
    local ok, rule, after
    if i then
        ok, rule, after = pcall(mpdecode.at, value, i)
        ok = ok and after == j + 1
    else
        ok, rule = pcall(mpdecode.unpack, value)
    end
    if not ok then
        return nil, "undecodable msgpack"
    end
    local good, err = _M.stored_form(value, i, j)
    if not good then
        return nil, err
    end
    good, err = schema.check(rule)
    if not good then
        return nil, err
    end
    return rule
end


-- The rule stored as value under hash field id, decoded and checked
-- (check_stored; only decoded when `checked`: this gateway's syncing worker
-- checked these very bytes, see sync.CHECKED_BY), or nil, reason. With i, j
-- (not checked): the stored bytes are value:sub(i, j), read in place.
function _M.decode(id, value, checked, i, j)
    local rule, err
    if checked then
        local ok, decoded = pcall(mpdecode.unpack, value)
        if not ok then
            err = "undecodable msgpack"
        elseif type(decoded) == "table" then
            rule = decoded
        else
            rule, err = schema.check(decoded) -- not a rule: nil and the schema's reason
        end
    else
        rule, err = _M.check_stored(value, i, j)
    end
    if not rule then
        return nil, "rule " .. id .. ": " .. err
    end
    if rule.id ~= id then
        return nil, "rule " .. id .. ": id does not match its hash field"
    end
    return rule
end


-- true when value can be a stored rule for the Python gateways too, which
-- then read it as this gateway does: at most 96 KiB (rulegate/schema.py
-- MAX_ENCODED_RULE), and mpdecode.same_in_python (its strings str of valid
-- UTF-8, no bin, ext or nil value, string map keys, floats only where the
-- schema takes one, no empty map for a list nor empty array for a map); else
-- false, reason.
function _M.stored_form(value, i, j)
    if (i and j - i + 1 or #value) > MAX_ENCODED_RULE then
        return false, "stored rule over 96 KiB"
    end
    local same, why = mpdecode.same_in_python(value, i, j)
    if not same then
        return false, "stored form the Python gateways refuse (" .. why .. ")"
    end
    return true
end


-- Compile a decoded, checked rule into rs (router.add): its item (nil for a
-- disabled rule), or false, reason.
function _M.compile(rs, rule)
    local ok, res = pcall(router.add, rs, rule)
    if not ok then
        return false, "rule set does not compile: " .. tostring(res)
    end
    return res
end


-- Check every rule of the payload chunk under key in shared dict dict_name
-- (a run of snapshot.pack_rule pairs, as payload.writer stores them): decode,
-- check and compile each as a full load does; a rule schema_fast.sure is
-- sure of is neither decoded nor compiled here (its route's first request
-- compiles it, in each worker, as every pending rule). 0 when all pass; else
-- the position in the chunk of the first that fails (-1: the chunk is not in
-- the dict or is not a chunk) and why, in a full load's words.
function _M.chunk(dict_name, key)
    local dict = ngx.shared[dict_name]
    local chunk = dict and dict:get(key)
    if type(chunk) ~= "string" then
        return -1, "payload chunk " .. tostring(key) .. " is not in the shared dict"
    end
    local rs = router.new_set(0)
    local n, why, sure = 0, nil, 0
    -- each rule read in place in the chunk (no string of its bytes: snapshot.each_rule_at)
    local ok, err = snapshot.each_rule_at(chunk, function(id, s, i, j)
        n = n + 1
        if is_sure(s, i, j, id) then -- sure it passes: not decoded, compiled by its route's first request
            sure = sure + 1
            return true
        end
        local rule, derr = _M.decode(id, s, false, i, j)
        if rule then
            local item, cerr = _M.compile(rs, rule)
            if item == false then
                why = cerr
                return nil, cerr
            end
            return true
        end
        why = derr
        return nil, derr
    end)
    if sure > 0 then
        dict:incr(ONE_PASS, sure, 0) -- sync.lua K.pool_one_pass
    end
    if ok then
        return 0
    end
    if why then
        return n, why
    end
    return -1, err
end


-- chunk() of each key of the list keys in turn, in one call (one hand-over to
-- a worker thread for several chunks): 0, or the first failure's position in
-- its chunk and why.
function _M.chunks(dict_name, keys)
    for i = 1, #keys do
        local bad, why = _M.chunk(dict_name, keys[i])
        if bad ~= 0 then
            return bad, why
        end
    end
    return 0
end


return _M
