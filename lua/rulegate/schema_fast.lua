-- A one-pass check of a rule's stored bytes, read in place: the cold path of
-- a full load (rule_check.chunk in nginx's thread pool; sync.lua's loads
-- checked in the event loop). rule_check.check_stored decodes a rule into
-- tables, walks its bytes for the stored form, then checks the tables, and
-- the pool compiles each rule to prove it compiles; for 10,000 rules that is
-- ~15 objects a rule made and collected (bench/REPORT.md). sure() reads the
-- msgpack itself and makes nothing (a key's name is an interned string that
-- exists already).
--
-- It answers only "sure": true when check_stored accepts the bytes as a rule
-- whose id is the hash field's; false means "not sure", never "refused", and
-- the caller then makes the full check, whose verdict and words are the only
-- ones a gateway gives (as rulegate/schema_fast.py does for the Python
-- gateways). It is sure only of a rule in canonical order (keys sorted, as
-- ruleadmin stores them: none repeated), its ints unsigned, its floats
-- float 64, its maps fixmaps, and neither a ramp, a breaker, a scope nor a
-- static response's own headers; anything else is "not sure". tests/lua hold
-- it to check_stored on every rule and mutant the acceptance tests make.
--
-- A rule it is sure of is compiled by its route's first request (as every
-- other worker compiles the payload's pending rules): a rule's compile only
-- copies and arranges the fields this checks (router.lua compile_split,
-- compile_degrade).
local bit = require("bit")
local mpdecode = require("rulegate.mpdecode")
local iputil = require("rulegate.iputil")
local schema = require("rulegate.schema")

local byte = string.byte
local sub = string.sub
local band = bit.band
local bor = bit.bor
local lshift = bit.lshift
local floor = math.floor
local ldexp = math.ldexp
local utf8_ok = mpdecode.utf8_ok
local parse_cidr = iputil.parse_cidr

local _M = { _VERSION = "0.1.0" }

local MAX_ENCODED_RULE = 96 * 1024 -- rule_check.lua, rulegate/schema.py
local MAX_UID, MAX_TIME, MAX_TEXT = schema.MAX_UID, schema.MAX_TIME, schema.MAX_TEXT
local MAX_BODY_BYTES = schema.MAX_BODY_BYTES
local B = schema.BYTES
local NAME_BYTES, HOST_BYTES, ID_FIRST, ID_BYTES = B.name, B.host, B.id_first, B.id
local PATH_BYTES, TOKEN_BYTES, VALUE_BYTES = B.path, B.token, B.value
local UPSTREAM_BYTES = schema.class("azAZ09", "_.:-") -- schema.lua upstream(): Lua's %w and _ . : -
local PRINTABLE = schema.class("!~") -- printable ASCII without space
local KEY_SOURCES = schema.KEY_SOURCES
local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local BODILESS = { [204] = true, [205] = true, [304] = true }

-- Each map's keys in canonical (byte) order, numbered: a key's number must be
-- above the one before it.
local TOP = {
    action = 1, breaker = 2, default = 3, description = 4, enabled = 5, id = 6, key = 7, kind = 8, percent = 9,
    policies = 10, route = 11, salt = 12, scope = 13, updated_at = 14, updated_by = 15, window = 16,
}
local ROUTE = { host = 1, methods = 2, path = 3 }
local KEY = { name = 1, source = 2 }
local WINDOW = { ["end"] = 1, start = 2 }
local BUCKET = { upstream = 1, weight = 2 }
local POLICY = {
    buckets = 1, cidrs = 2, name = 3, ramp = 4, ranges = 5, salt = 6, suffixes = 7, type = 8, upstream = 9,
    values = 10,
}
local ACTION = {
    body = 1, content_type = 2, headers = 3, location = 4, retry_after = 5, status = 6, type = 7, upstream = 8,
}


-- {the mask of the fields an object may have, that of those it must have}:
-- bit n for the key numbered n in keys.
local function masks(keys, allowed, required)
    local out = { 0, 0 }
    for k, names in ipairs({ allowed, required }) do
        for _, name in ipairs(names) do
            out[k] = bor(out[k], lshift(1, keys[name]))
        end
    end
    return out
end

-- by kind (schema.lua RULE_FIELDS, RULE_REQUIRED; a breaker or a scope is never sure: left out of degrade's)
local KIND_MASKS = {
    split = masks(TOP, { "key", "policies", "default", "window", "id", "kind", "route", "enabled", "description",
                         "updated_by", "updated_at" }, { "id", "kind", "route", "key", "policies", "default" }),
    degrade = masks(TOP, { "action", "percent", "window", "key", "salt", "id", "kind", "route", "enabled",
                           "description", "updated_by", "updated_at" }, { "id", "kind", "route", "action" }),
}
local ROUTE_MASKS = masks(ROUTE, { "host", "methods", "path" }, { "host", "path" }) -- schema.lua ROUTE_FIELDS
-- by policy type (schema.lua POLICY_FIELDS, POLICY_REQUIRED; a ramp is never sure: left out of percent's)
local LISTED = { "type", "name", "values", "upstream" }
local POLICY_MASKS = {
    uid_range = masks(POLICY, { "type", "ranges", "upstream" }, { "type", "ranges", "upstream" }),
    uid_suffix = masks(POLICY, { "type", "suffixes", "upstream" }, { "type", "suffixes", "upstream" }),
    ip_cidr = masks(POLICY, { "type", "cidrs", "upstream" }, { "type", "cidrs", "upstream" }),
    header = masks(POLICY, LISTED, LISTED), cookie = masks(POLICY, LISTED, LISTED), arg = masks(POLICY, LISTED, LISTED),
    percent = masks(POLICY, { "type", "buckets", "salt" }, { "type", "buckets" }),
}
-- by action type (schema.lua ACTION_FIELDS, ACTION_REQUIRED)
local ACTION_MASKS = {
    static = masks(ACTION, { "type", "status", "content_type", "headers", "body" }, { "type", "status" }),
    redirect = masks(ACTION, { "type", "location", "status" }, { "type", "location" }),
    upstream = masks(ACTION, { "type", "upstream" }, { "type", "upstream" }),
    reject = masks(ACTION, { "type", "status", "retry_after" }, { "type" }),
}
local METHOD_BIT = { GET = 1, HEAD = 2, POST = 4, PUT = 8, PATCH = 16, DELETE = 32, OPTIONS = 64 }


-- true when the fields seen (a mask) are among those m (masks()) allows and
-- hold those it requires; m nil: an unknown type.
local function fits(m, seen)
    return m ~= nil and band(seen, m[1]) == seen and band(seen, m[2]) == m[2]
end


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
-- key before it in the map: canonical order, none twice), and the mask of the
-- keys seen with it added; nil otherwise.
local function next_key(s, p, e, keys, prev, seen)
    local code, q = key_at(s, p, e, keys)
    if code and code > prev then
        return code, q, bor(seen, lshift(1, code))
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
        code, p, seen = next_key(s, p, e, ROUTE, code, seen)
        if not code then
            return nil
        end
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
    return fits(ROUTE_MASKS, seen) and p or nil -- (nil: not a fixmap)
end


-- The index after a key map at p (schema.lua check_key, source "request" taken:
-- a degrade rule's) and whether its source is "request"; nil when not sure.
local function key_map_at(s, p, e)
    local n
    n, p = fixmap_at(s, p)
    local code, nf, nl, source = 0, nil, nil, nil
    for _ = 1, n or 0 do
        code, p = next_key(s, p, e, KEY, code, 0)
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
            source = l - f < 7 and sub(s, f, l) -- at most "request": a known name, or short
            if not KEY_SOURCES[source] and source ~= "request" then
                return nil
            end
        end
        p = l + 1
    end
    if not source then
        return nil
    end
    if source == "ip" or source == "request" then
        if nf then
            return nil
        end
        return p, source == "request"
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
        code, p = next_key(s, p, e, WINDOW, code, 0)
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
        code, p, seen = next_key(s, p, e, POLICY, code, seen)
        if not code then
            return nil
        end
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
    if not fits(POLICY_MASKS[ptype], seen) then
        return nil
    end
    if ptype == "header" and not header_name then
        return nil
    end
    return p
end


-- The number at p when it is a float 64 (IEEE 754, big-endian: decoded
-- exactly, as mpdecode does), and the index after it; nil for anything else
-- (NaN and the infinities too).
local function float64_at(s, p, e)
    if byte(s, p) ~= 0xcb or p + 8 > e then
        return nil
    end
    local b1, b2, b3, b4, b5, b6, b7, b8 = byte(s, p + 1, p + 8)
    local exp = (b1 % 0x80) * 0x10 + floor(b2 / 0x10)
    if exp == 0x7ff then
        return nil
    end
    local mant = (((((b2 % 0x10) * 0x100 + b3) * 0x100 + b4) * 0x100 + b5) * 0x100 + b6) * 0x10000 + b7 * 0x100 + b8
    local v = exp == 0 and ldexp(mant, -1074) or ldexp(mant + 0x10000000000000, exp - 1075)
    return b1 >= 0x80 and -v or v, p + 9
end


-- A response header's value (schema.lua header_value): 1..max bytes of
-- printable ASCII or tab, not starting or ending with a space or a tab
local function header_value_ok(s, f, l, max)
    if l < f or l - f >= max or not all_in(s, VALUE_BYTES, f, l) then
        return false
    end
    local first, last = byte(s, f), byte(s, l)
    return first ~= 32 and first ~= 9 and last ~= 32 and last ~= 9
end


-- A redirect's location (schema.lua location): 1..2048 bytes of printable
-- ASCII without space, an absolute http(s) URL or a path
local function location_ok(s, f, l)
    if l < f or l - f >= 2048 or not all_in(s, PRINTABLE, f, l) then
        return false
    end
    -- (sub() of 7 or 8 bytes that are not the prefix makes a string: only for an absolute URL's location)
    return byte(s, f) == 47 or sub(s, f, f + 6) == "http://" or sub(s, f, f + 7) == "https://"
end


-- action map fields by number (ACTION), read by action_at
local act = {}

-- The index after a degrade rule's action map at p (schema.lua check_action;
-- a static response's headers only when none: `{}`, as ruleadmin fills them
-- in); nil when not sure.
local function action_at(s, p, e)
    local n
    n, p = fixmap_at(s, p)
    local code, seen = 0, 0
    for k = 1, 8 do
        act[k] = nil
    end
    for _ = 1, n or 0 do
        code, p, seen = next_key(s, p, e, ACTION, code, seen)
        if not code then
            return nil
        end
        if code == 3 then -- headers: none
            if byte(s, p) ~= 0x80 then
                return nil
            end
            act[3], p = true, p + 1
        elseif code == 5 or code == 6 then -- retry_after, status
            act[code], p = uint_at(s, p, e)
        else -- body, content_type, location, type, upstream: (first, last) in act[code], act[code + 8]
            local f, l = str_at(s, p, e)
            if not f then
                return nil
            end
            act[code], act[code + 8], p = f, l, l + 1
        end
        if not act[code] then
            return nil
        end
    end
    local f, l = act[7], act[15]
    local atype = f and l - f < 8 and sub(s, f, l) -- at most "redirect"
    if not fits(ACTION_MASKS[atype], seen) then
        return nil
    end
    local status = act[6]
    if atype == "static" then
        if status < 200 or status > 599 then
            return nil
        end
        local body, ctype = act[1], act[2]
        if BODILESS[status] then
            if ctype or body and act[9] >= body then -- no type, no body but ""
                return nil
            end
        elseif ctype and not header_value_ok(s, ctype, act[10], 128) then
            return nil
        end
        if body and (act[9] - body >= MAX_BODY_BYTES or not text_ok(s, body, act[9], MAX_BODY_BYTES * 4, true)) then
            return nil
        end
    elseif atype == "redirect" then
        if status and not REDIRECT[status] or not location_ok(s, act[4], act[12]) then
            return nil
        end
    elseif atype == "upstream" then
        local uf, ul = act[8], act[16]
        if ul < uf or ul - uf >= 128 or not all_in(s, UPSTREAM_BYTES, uf, ul) then
            return nil
        end
    else -- reject
        if status and (status < 400 or status > 599) or act[5] and act[5] > 86400 then
            return nil
        end
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
-- (all of s without i) as a rule whose id is id; false: not sure (the full
-- check decides).
function _M.sure(s, i, j, id)
    i = i or 1
    j = j or #s
    if j - i + 1 > MAX_ENCODED_RULE or type(id) ~= "string" then
        return false
    end
    local n, p = fixmap_at(s, i)
    if not n then
        return false
    end
    local e, code, seen, kind, request = j, 0, 0, nil, false
    for _ = 1, n do
        code, p, seen = next_key(s, p, e, TOP, code, seen)
        if not code then
            return false
        end
        if code == 1 then -- action
            p = action_at(s, p, e)
        elseif code == 3 then -- default
            p = chars_at(s, p, e, UPSTREAM_BYTES, 128)
        elseif code == 4 then -- description
            p = text_at(s, p, e, MAX_TEXT, true)
        elseif code == 5 then -- enabled
            local b = byte(s, p)
            p = (b == 0xc2 or b == 0xc3) and p + 1 or nil
        elseif code == 6 then -- id: [a-z0-9][a-z0-9_.-]*, at most 64 bytes; the hash field's
            local f, l = str_at(s, p, e)
            if not f or l < f or l - f >= 64 or not ID_FIRST[byte(s, f)] or not all_in(s, ID_BYTES, f + 1, l)
                or not same_id(s, f, l, id) then
                return false
            end
            p = l + 1
        elseif code == 7 then -- key
            p, request = key_map_at(s, p, e)
        elseif code == 8 then -- kind
            local f, l = str_at(s, p, e)
            kind = f and l - f < 7 and sub(s, f, l) -- at most "degrade"
            p = f and l + 1
        elseif code == 9 then -- percent: 0 .. 100, at most 2 decimals (schema.lua decimal)
            local v, q = uint_at(s, p, e)
            if not v then
                v, q = float64_at(s, p, e)
            end
            if not v or v < 0 or v > 100 or floor(v * 100 + 0.5) / 100 ~= v then
                return false
            end
            p = q
        elseif code == 10 then -- policies: at most 32
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
        elseif code == 11 then -- route
            p = route_at(s, p, e)
        elseif code == 12 then -- salt
            p = text_at(s, p, e, 64)
        elseif code == 14 then -- updated_at
            local v
            v, p = uint_at(s, p, e)
            if not v or v > MAX_TIME then
                return false
            end
        elseif code == 15 then -- updated_by
            p = text_at(s, p, e, 128)
        elseif code == 16 then -- window
            p = window_at(s, p, e)
        else -- a breaker (2), a scope (13): not sure
            return false
        end
        if not p then
            return false
        end
    end
    if not fits(KIND_MASKS[kind], seen) then
        return false
    end
    if request and kind ~= "degrade" then -- a split's key has no source "request"
        return false
    end
    return p == j + 1 -- no byte after
end

return _M
