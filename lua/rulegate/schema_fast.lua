-- A one-pass check of a split rule's stored bytes, read in place: the cold
-- path of the syncing worker's full load, in nginx's thread pool
-- (rule_check.chunk). rule_check.check_stored decodes a rule into tables,
-- walks its bytes for the stored form, then checks the tables, and the pool
-- compiles each rule to prove it compiles; for 10,000 rules that is ~15
-- objects a rule made and collected (bench/REPORT.md). split_ok reads the
-- msgpack itself and makes nothing (a key's name is an interned string that
-- exists already).
--
-- It answers only "sure": true when check_stored accepts the bytes as a rule
-- whose id is the hash field's; false means "not sure", never "refused", and
-- the caller then makes the full check, whose verdict and words are the only
-- ones a gateway gives (as rulegate/schema_fast.py does for the Python
-- gateways). It is sure only of a split rule (docs/rules.md) in canonical
-- order (keys sorted, as ruleadmin stores them: none repeated), its ints
-- unsigned, its maps fixmaps, without a ramp; anything else is "not sure": a
-- degrade rule, a ramp, a float, a foreign spelling. tests/lua hold it to
-- check_stored on every rule and mutant the acceptance tests make.
--
-- A rule it is sure of is compiled by its route's first request (as every
-- other worker compiles the payload's pending rules): a split's compile only
-- copies the fields this checks (router.lua compile_split).
local bit = require("bit")
local mpdecode = require("rulegate.mpdecode")
local iputil = require("rulegate.iputil")
local schema = require("rulegate.schema")

local byte = string.byte
local sub = string.sub
local band = bit.band
local bor = bit.bor
local lshift = bit.lshift
local utf8_ok = mpdecode.utf8_ok
local parse_cidr = iputil.parse_cidr

local _M = { _VERSION = "0.1.0" }

local MAX_ENCODED_RULE = 96 * 1024 -- rule_check.lua, rulegate/schema.py
local MAX_UID, MAX_TIME, MAX_TEXT = schema.MAX_UID, schema.MAX_TIME, schema.MAX_TEXT
local B = schema.BYTES
local NAME_BYTES, HOST_BYTES, ID_FIRST, ID_BYTES = B.name, B.host, B.id_first, B.id
local PATH_BYTES, TOKEN_BYTES = B.path, B.token
local UPSTREAM_BYTES = schema.class("azAZ09", "_.:-") -- schema.lua upstream(): Lua's %w and _ . : -
local PRINTABLE = schema.class("!~") -- printable ASCII without space
local KEY_SOURCES = schema.KEY_SOURCES

-- Each map's keys in canonical (byte) order, numbered: a key's number must be
-- above the one before it.
local TOP = {
    default = 1, description = 2, enabled = 3, id = 4, key = 5, kind = 6, policies = 7, route = 8,
    updated_at = 9, updated_by = 10, window = 11,
}
local ROUTE = { host = 1, methods = 2, path = 3 }
local KEY = { name = 1, source = 2 }
local WINDOW = { ["end"] = 1, start = 2 }
local BUCKET = { upstream = 1, weight = 2 }
local POLICY = {
    buckets = 1, cidrs = 2, name = 3, ramp = 4, ranges = 5, salt = 6, suffixes = 7, type = 8, upstream = 9,
    values = 10,
}
local function mask(...)
    local m = 0
    for _, name in ipairs({ ... }) do
        m = bor(m, lshift(1, POLICY[name]))
    end
    return m
end
-- by policy type: {the fields it may have, those it must have} as masks (schema.lua POLICY_FIELDS; a ramp is
-- never sure, so percent's "ramp" is left out)
local POLICY_MASKS = {
    uid_range = { mask("type", "ranges", "upstream"), mask("type", "ranges", "upstream") },
    uid_suffix = { mask("type", "suffixes", "upstream"), mask("type", "suffixes", "upstream") },
    ip_cidr = { mask("type", "cidrs", "upstream"), mask("type", "cidrs", "upstream") },
    header = { mask("type", "name", "values", "upstream"), mask("type", "name", "values", "upstream") },
    cookie = { mask("type", "name", "values", "upstream"), mask("type", "name", "values", "upstream") },
    arg = { mask("type", "name", "values", "upstream"), mask("type", "name", "values", "upstream") },
    percent = { mask("type", "buckets", "salt"), mask("type", "buckets") },
}
local METHOD_BIT = { GET = 1, HEAD = 2, POST = 4, PUT = 8, PATCH = 16, DELETE = 32, OPTIONS = 64 }


-- The first and last index of the str at p (fixstr, str 8 or str 16) ending
-- by e; nil for any other value. (last = first - 1: "".)
local function str_at(s, p, e)
    local b = byte(s, p)
    local f, n
    if b == nil then
        return nil
    elseif b >= 0xa0 and b <= 0xbf then
        f, n = p + 1, b - 0xa0
    elseif b == 0xd9 then
        f, n = p + 2, byte(s, p + 1)
    elseif b == 0xda then
        local b1, b2 = byte(s, p + 1, p + 2)
        if not b2 then
            return nil
        end
        f, n = p + 3, b1 * 0x100 + b2
    else
        return nil
    end
    if n == nil or f + n - 1 > e then
        return nil
    end
    return f, f + n - 1
end


-- The unsigned int at p (positive fixint, uint 8 to uint 64 below 2^53) and
-- the index after it; nil for any other value.
local function uint_at(s, p, e)
    local b = byte(s, p)
    if b == nil then
        return nil
    elseif b < 0x80 then
        return b, p + 1
    elseif b == 0xcc then
        return p + 1 <= e and byte(s, p + 1) or nil, p + 2
    elseif b == 0xcd then
        local b1, b2 = byte(s, p + 1, p + 2)
        return p + 2 <= e and b2 and b1 * 0x100 + b2 or nil, p + 3
    elseif b == 0xce then
        local b1, b2, b3, b4 = byte(s, p + 1, p + 4)
        return p + 4 <= e and b4 and ((b1 * 0x100 + b2) * 0x100 + b3) * 0x100 + b4 or nil, p + 5
    elseif b == 0xcf then
        local b1, b2, b3, b4, b5, b6, b7, b8 = byte(s, p + 1, p + 8)
        if p + 8 > e or not b8 or b1 ~= 0 or b2 >= 0x20 then -- not below 2^53
            return nil
        end
        return ((((((b2 * 0x100 + b3) * 0x100 + b4) * 0x100 + b5) * 0x100 + b6) * 0x100 + b7) * 0x100) + b8, p + 9
    end
    return nil
end


-- The item count of the array at p (fixarray or array 16) and the index of its first item; nil otherwise.
local function array_at(s, p, e)
    local b = byte(s, p)
    if b == nil then
        return nil
    elseif b >= 0x90 and b <= 0x9f then
        return b - 0x90, p + 1
    elseif b == 0xdc and p + 2 <= e then
        local b1, b2 = byte(s, p + 1, p + 2)
        return b1 * 0x100 + b2, p + 3
    end
    return nil
end


-- The entry count of the fixmap at p and the index of its first key; nil otherwise.
local function fixmap_at(s, p)
    local b = byte(s, p)
    if b and b >= 0x80 and b <= 0x8f then
        return b - 0x80, p + 1
    end
    return nil
end


-- The number of the key (a fixstr) at p in the map's numbering `keys`, and
-- the index of its value; nil for any other key. (sub() of a known name
-- finds the interned string: nothing is made.)
local function key_at(s, p, e, keys)
    local b = byte(s, p)
    if b == nil or b <= 0xa0 or b > 0xbf or p + b - 0xa0 > e then
        return nil
    end
    local last = p + b - 0xa0
    return keys[sub(s, p + 1, last)], last + 1
end


-- key_at's number and value index when the key's number is above prev (the
-- key before it in the map: canonical order, none twice); nil otherwise.
local function next_key(s, p, e, keys, prev)
    local code, q = key_at(s, p, e, keys)
    if code and code > prev then
        return code, q
    end
    return nil
end


-- true when every byte of s from f to l is in set (and so is ASCII)
local function all_in(s, set, f, l)
    for k = f, l do
        if not set[byte(s, k)] then
            return false
        end
    end
    return true
end


-- schema.lua text(): at most max code points, no NUL, no CR or LF unless
-- multi_line; and valid UTF-8 (the stored form's)
local function text_ok(s, f, l, max, multi_line)
    local n = 0
    for k = f, l do
        local b = byte(s, k)
        if b == 0 or not multi_line and (b == 10 or b == 13) then
            return false
        end
        if b < 0x80 or b >= 0xc0 then
            n = n + 1
        end
    end
    return n <= max and utf8_ok(s, f, l)
end


-- the index after the str at p when it is 1..max bytes of set; nil otherwise
local function chars_at(s, p, e, set, max)
    local f, l = str_at(s, p, e)
    if f and l >= f and l - f < max and all_in(s, set, f, l) then
        return l + 1
    end
    return nil
end


-- the index after the str at p when it is text_ok; nil otherwise
local function text_at(s, p, e, max, multi_line)
    local f, l = str_at(s, p, e)
    if f and text_ok(s, f, l, max, multi_line) then
        return l + 1
    end
    return nil
end


-- schema.lua host(): "*", or [*.]labels of a-z 0-9 '-' joined by single dots,
-- neither starting nor ending with '.' or '-'; at most 253 bytes
local function host_ok(s, f, l)
    if l == f and byte(s, f) == 42 then
        return true
    end
    if l < f or l - f >= 253 then
        return false
    end
    local i = f
    if byte(s, f) == 42 and byte(s, f + 1) == 46 then -- "*."
        i = f + 2
    end
    if i > l then
        return false
    end
    local prev = 0
    for k = i, l do
        local b = byte(s, k)
        if not HOST_BYTES[b] or b == 46 and prev == 46 then
            return false
        end
        prev = b
    end
    local first, last = byte(s, i), byte(s, l)
    return first ~= 46 and first ~= 45 and last ~= 46 and last ~= 45
end


-- The index after the route map at p (schema.lua check_route); nil when not sure.
local function route_at(s, p, e)
    local n
    n, p = fixmap_at(s, p)
    local code, seen = 0, 0
    for _ = 1, n or 0 do
        code, p = next_key(s, p, e, ROUTE, code)
        if not code then
            return nil
        end
        seen = seen + code
        if code == 1 then -- host
            local f, l = str_at(s, p, e)
            if not f or not host_ok(s, f, l) then
                return nil
            end
            p = l + 1
        elseif code == 2 then -- methods: 1..7 of METHODS, none twice
            local count, q = array_at(s, p, e)
            if not count or count == 0 or count > 7 then
                return nil
            end
            local methods = 0
            for _ = 1, count do
                local f, l = str_at(s, q, e)
                local m = f and l - f < 7 and METHOD_BIT[sub(s, f, l)] -- at most "OPTIONS": no new string
                if not m or band(methods, m) ~= 0 then
                    return nil
                end
                methods, q = methods + m, l + 1
            end
            p = q
        else -- path: starts with '/', printable ASCII without space, '?' or '#', at most 512 bytes
            local f, l = str_at(s, p, e)
            if not f or l < f or l - f >= 512 or byte(s, f) ~= 47 or not all_in(s, PATH_BYTES, f, l) then
                return nil
            end
            p = l + 1
        end
    end
    return (seen == 4 or seen == 6) and p or nil -- host and path, methods or not (nil: not a fixmap)
end


-- The index after a split's key map at p (schema.lua check_key); nil when not sure.
local function key_map_at(s, p, e)
    local n
    n, p = fixmap_at(s, p)
    local code, nf, nl, source = 0, nil, nil, nil
    for _ = 1, n or 0 do
        code, p = next_key(s, p, e, KEY, code)
        if not code then
            return nil
        end
        local f, l = str_at(s, p, e)
        if not f then
            return nil
        end
        if code == 1 then
            nf, nl = f, l
        else
            source = l - f < 6 and sub(s, f, l) -- at most "header": a known name, or short
            if not KEY_SOURCES[source] then
                return nil
            end
        end
        p = l + 1
    end
    if not source then
        return nil
    end
    if source == "ip" then
        return not nf and p or nil
    end
    if not nf or nl < nf or nl - nf >= 128 then
        return nil
    end
    return all_in(s, source == "header" and NAME_BYTES or TOKEN_BYTES, nf, nl) and p or nil
end


-- The index after a window map at p (schema.lua check_window); nil when not sure.
local function window_at(s, p, e)
    local n
    n, p = fixmap_at(s, p)
    if not n or n == 0 then
        return nil
    end
    local code, stop, start = 0, nil, nil
    for _ = 1, n do
        code, p = next_key(s, p, e, WINDOW, code)
        if not code then
            return nil
        end
        local v
        v, p = uint_at(s, p, e)
        if not v or v > MAX_TIME then
            return nil
        end
        if code == 1 then
            stop = v
        else
            start = v
        end
    end
    if stop and start and stop <= start then
        return nil
    end
    return p
end


-- The index after an array at p of 1..max items, each taken by item(s, q, e, a)
-- (the index after it, or nil); nil when not sure.
local function items_at(s, p, e, max, item, a, b)
    local n, q = array_at(s, p, e)
    if not n or n == 0 or n > max then
        return nil
    end
    for _ = 1, n do
        q = item(s, q, e, a, b)
        if not q then
            return nil
        end
    end
    return q
end


local function range_item(s, q, e)
    if byte(s, q) ~= 0x92 then -- [lo, hi]
        return nil
    end
    local lo, hi
    lo, q = uint_at(s, q + 1, e)
    if not lo or lo > MAX_UID then
        return nil
    end
    hi, q = uint_at(s, q, e)
    if not hi or hi > MAX_UID or lo > hi then
        return nil
    end
    return q
end


local function cidr_item(s, q, e)
    local f, l = str_at(s, q, e)
    if not f or l < f or l - f >= 64 or not all_in(s, PRINTABLE, f, l) then -- an address is ASCII, short
        return nil
    end
    return parse_cidr(sub(s, f, l)) and l + 1 or nil
end


local bucket_total = 0 -- buckets_at's sum of weights (one call at a time: nothing here yields)

local function bucket_item(s, q, e)
    if byte(s, q) ~= 0x82 then -- {upstream, weight}
        return nil
    end
    local code
    code, q = key_at(s, q + 1, e, BUCKET)
    if code ~= 1 then
        return nil
    end
    q = chars_at(s, q, e, UPSTREAM_BYTES, 128)
    if not q then
        return nil
    end
    code, q = key_at(s, q, e, BUCKET)
    if code ~= 2 then
        return nil
    end
    local w
    w, q = uint_at(s, q, e)
    if not w or w < 1 or w > 10000 then
        return nil
    end
    bucket_total = bucket_total + w
    return q
end


-- The index after a policy map at p (schema.lua policy_problem); nil when not sure.
local function policy_at(s, p, e)
    local n
    n, p = fixmap_at(s, p)
    local code, seen, ptype, header_name = 0, 0, nil, nil
    for _ = 1, n or 0 do
        code, p = next_key(s, p, e, POLICY, code)
        if not code then
            return nil
        end
        seen = bor(seen, lshift(1, code))
        if code == 1 then -- buckets: 1..100, weights 1..10000 in all at most 10000
            bucket_total = 0
            p = items_at(s, p, e, 100, bucket_item)
            if p and bucket_total > 10000 then
                return nil
            end
        elseif code == 2 then -- cidrs
            p = items_at(s, p, e, 256, cidr_item)
        elseif code == 3 then -- name: an HTTP token; a header's also letters, digits and '-'
            local f, l = str_at(s, p, e)
            if not f or l < f or l - f >= 128 or not all_in(s, TOKEN_BYTES, f, l) then
                return nil
            end
            header_name, p = all_in(s, NAME_BYTES, f, l), l + 1
        elseif code == 5 then -- ranges
            p = items_at(s, p, e, 256, range_item)
        elseif code == 6 then -- salt
            p = text_at(s, p, e, 64)
        elseif code == 7 then -- suffixes
            p = items_at(s, p, e, 256, chars_at, TOKEN_BYTES, 32)
        elseif code == 8 then -- type
            local f, l = str_at(s, p, e)
            ptype = f and l - f < 10 and sub(s, f, l) -- at most "uid_suffix"
            if not POLICY_MASKS[ptype] then
                return nil
            end
            p = l + 1
        elseif code == 9 then -- upstream
            p = chars_at(s, p, e, UPSTREAM_BYTES, 128)
        elseif code == 10 then -- values
            p = items_at(s, p, e, 256, text_at, MAX_TEXT)
        else -- a ramp (4): not sure
            return nil
        end
        if not p then
            return nil
        end
    end
    local masks = POLICY_MASKS[ptype]
    if not masks or band(seen, masks[1]) ~= seen or band(seen, masks[2]) ~= masks[2] then
        return nil
    end
    if ptype == "header" and not header_name then
        return nil
    end
    return p
end


-- true when id's bytes are those from f to l of s
local function same_id(s, f, l, id)
    if #id ~= l - f + 1 then
        return false
    end
    for k = 1, #id do
        if byte(id, k) ~= byte(s, f + k - 1) then
            return false
        end
    end
    return true
end


-- true when rule_check.check_stored(s, i, j) accepts the bytes s:sub(i, j)
-- (all of s without i) as a split rule whose id is id; false: not sure (the
-- full check decides).
function _M.split_ok(s, i, j, id)
    i = i or 1
    j = j or #s
    if j - i + 1 > MAX_ENCODED_RULE or type(id) ~= "string" then
        return false
    end
    local n, p = fixmap_at(s, i)
    if not n then
        return false
    end
    local e, code, seen = j, 0, 0
    for _ = 1, n do
        code, p = next_key(s, p, e, TOP, code)
        if not code then
            return false
        end
        if code == 1 then -- default
            seen = seen + 1
            p = chars_at(s, p, e, UPSTREAM_BYTES, 128)
        elseif code == 2 then -- description
            p = text_at(s, p, e, MAX_TEXT, true)
        elseif code == 3 then -- enabled
            local b = byte(s, p)
            p = (b == 0xc2 or b == 0xc3) and p + 1 or nil
        elseif code == 4 then -- id: [a-z0-9][a-z0-9_.-]*, at most 64 bytes; the hash field's
            local f, l = str_at(s, p, e)
            if not f or l < f or l - f >= 64 or not ID_FIRST[byte(s, f)] or not all_in(s, ID_BYTES, f + 1, l)
                or not same_id(s, f, l, id) then
                return false
            end
            seen, p = seen + 2, l + 1
        elseif code == 5 then -- key
            seen = seen + 4
            p = key_map_at(s, p, e)
        elseif code == 6 then -- kind
            local f, l = str_at(s, p, e)
            if not f or l - f ~= 4 or sub(s, f, l) ~= "split" then
                return false
            end
            seen, p = seen + 8, l + 1
        elseif code == 7 then -- policies: at most 32
            seen = seen + 16
            local count, q = array_at(s, p, e)
            if not count or count > 32 then
                return false
            end
            for _ = 1, count do
                q = policy_at(s, q, e)
                if not q then
                    return false
                end
            end
            p = q
        elseif code == 8 then -- route
            seen = seen + 32
            p = route_at(s, p, e)
        elseif code == 9 then -- updated_at
            local v
            v, p = uint_at(s, p, e)
            if not v or v > MAX_TIME then
                return false
            end
        elseif code == 10 then -- updated_by
            p = text_at(s, p, e, 128)
        else -- window
            p = window_at(s, p, e)
        end
        if not p then
            return false
        end
    end
    return seen == 63 and p == j + 1 -- default, id, key, kind, policies, route; no byte after
end


return _M
