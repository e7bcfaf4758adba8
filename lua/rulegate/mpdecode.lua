-- msgpack decoding of what rulegate stores (rules, payload chunks, deltas),
-- with the results of lua-MessagePack's unpack (Debian lua-messagepack) at a
-- fraction of its cost under LuaJIT: that library makes a closure for every
-- fixmap, fixarray, fixstr and fixint it meets (a function per type byte,
-- built on each lookup), which the JIT cannot compile, so a 10,000-rule
-- namespace took ~250 ms to decode (bench/REPORT.md, "nginx full reloads:
-- decode, check and compile").
--
-- Tables are built the same way (an empty table filled in stream order), so
-- their length and iteration order are the library's too. Whatever this
-- module does not decode itself goes to the library whole, so its value or its
-- error stays the library's: ext types, float32, int64, uint64 of 2^53 or
-- more, doubles that are subnormal, infinite or NaN, unused type bytes,
-- truncated input and trailing bytes.
local ffi = require("ffi")
local mp = require("MessagePack")

local byte = string.byte
local sub = string.sub
local type = type

local _M = { _VERSION = "0.1.0" }

-- a double's 8 bytes, most significant first in msgpack, stored here in the
-- machine's order (nil on a big-endian machine: doubles go to the library)
local dbl = ffi.abi("le") and ffi.new("union { double d; uint8_t b[8]; }") or nil

local value -- forward: (s, i, len) -> v, next i; next i nil: leave it to the library


local function map(s, i, n, len)
    local t = {}
    for _ = 1, n do
        local k, v
        k, i = value(s, i, len)
        if not i then
            return nil, nil
        end
        v, i = value(s, i, len)
        if not i then
            return nil, nil
        end
        if k ~= nil and k == k then -- the library skips nil and NaN keys (no sentinel is set)
            t[k] = v
        end
    end
    return t, i
end


local function array(s, i, n, len)
    local t = {}
    for k = 1, n do
        local v
        v, i = value(s, i, len)
        if not i then
            return nil, nil
        end
        t[k] = v
    end
    return t, i
end


-- n bytes from i as a string.
local function bytes(s, i, n, len)
    local e = i + n - 1
    if e > len then
        return nil, nil
    end
    return sub(s, i, e), e + 1
end


local function double(s, i, len)
    if i + 7 > len or not dbl then
        return nil, nil
    end
    local b1, b2, b3, b4, b5, b6, b7, b8 = byte(s, i, i + 7)
    local expo = (b1 % 0x80) * 0x10 + (b2 - b2 % 0x10) / 0x10
    if expo == 0x7ff or (expo == 0 and (b2 % 0x10 + b3 + b4 + b5 + b6 + b7 + b8) ~= 0) then
        return nil, nil -- not finite, or subnormal: the library computes its own value
    end
    local b = dbl.b
    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7] = b8, b7, b6, b5, b4, b3, b2, b1
    return dbl.d, i + 8
end


function value(s, i, len)
    local b = byte(s, i)
    if b == nil then
        return nil, nil
    end
    if b < 0x80 then -- positive fixint
        return b, i + 1
    elseif b >= 0xa0 and b <= 0xbf then -- fixstr
        return bytes(s, i + 1, b - 0xa0, len)
    elseif b < 0x90 then -- fixmap
        return map(s, i + 1, b - 0x80, len)
    elseif b < 0xa0 then -- fixarray
        return array(s, i + 1, b - 0x90, len)
    elseif b >= 0xe0 then -- negative fixint
        return b - 0x100, i + 1
    elseif b == 0xc3 then
        return true, i + 1
    elseif b == 0xc2 then
        return false, i + 1
    elseif b == 0xc0 then
        return nil, i + 1
    elseif b == 0xd9 or b == 0xc4 then -- str8, bin8
        local n = byte(s, i + 1)
        if n == nil then
            return nil, nil
        end
        return bytes(s, i + 2, n, len)
    elseif b == 0xda or b == 0xc5 or b == 0xde or b == 0xdc or b == 0xcd or b == 0xd1 then -- 16-bit size or value
        local b1, b2 = byte(s, i + 1, i + 2)
        if b2 == nil then
            return nil, nil
        end
        local n = b1 * 0x100 + b2
        if b == 0xda or b == 0xc5 then -- str16, bin16
            return bytes(s, i + 3, n, len)
        elseif b == 0xde then
            return map(s, i + 3, n, len)
        elseif b == 0xdc then
            return array(s, i + 3, n, len)
        elseif b == 0xcd then -- uint16
            return n, i + 3
        end
        return b1 < 0x80 and n or n - 0x10000, i + 3 -- int16
    elseif b == 0xdb or b == 0xc6 or b == 0xdf or b == 0xdd or b == 0xce or b == 0xd2 then -- 32-bit
        local b1, b2, b3, b4 = byte(s, i + 1, i + 4)
        if b4 == nil then
            return nil, nil
        end
        local n = ((b1 * 0x100 + b2) * 0x100 + b3) * 0x100 + b4
        if b == 0xdb or b == 0xc6 then -- str32, bin32
            return bytes(s, i + 5, n, len)
        elseif b == 0xdf then
            return map(s, i + 5, n, len)
        elseif b == 0xdd then
            return array(s, i + 5, n, len)
        elseif b == 0xce then -- uint32
            return n, i + 5
        end
        return b1 < 0x80 and n or n - 0x100000000, i + 5 -- int32
    elseif b == 0xcc then -- uint8
        local n = byte(s, i + 1)
        if n == nil then
            return nil, nil
        end
        return n, i + 2
    elseif b == 0xd0 then -- int8
        local n = byte(s, i + 1)
        if n == nil then
            return nil, nil
        end
        return n < 0x80 and n or n - 0x100, i + 2
    elseif b == 0xcf then -- uint64: exact below 2^53 (the library's arithmetic is exact there too)
        local b1, b2, b3, b4, b5, b6, b7, b8 = byte(s, i + 1, i + 8)
        if b8 == nil or b1 ~= 0 or b2 >= 0x20 then
            return nil, nil
        end
        return ((b2 * 0x100 + b3) * 0x100 + b4) * 0x100000000 + ((b5 * 0x100 + b6) * 0x100 + b7) * 0x100 + b8,
            i + 9
    elseif b == 0xcb then
        return double(s, i + 1, len)
    end
    return nil, nil -- ext, float32, int64, 0xc1
end


-- The value msgpack bytes s encode, as lua-MessagePack's unpack(s) gives it
-- (and its errors: "missing bytes", "extra bytes", ...).
function _M.unpack(s)
    if type(s) == "string" then
        local len = #s
        local v, i = value(s, 1, len)
        if i == len + 1 then
            return v
        end
    end
    return mp.unpack(s)
end


-- The bytes after the type byte of a number of fixed size: uint8/16/32/64,
-- int8/16/32/64, float32, float64.
local FIXED = { [0xcc] = 1, [0xcd] = 2, [0xce] = 4, [0xcf] = 8, [0xd0] = 1, [0xd1] = 2, [0xd2] = 4, [0xd3] = 8,
                [0xca] = 4, [0xcb] = 8 }
-- Types with a 1/2/4-byte length or count after the type byte: {width, kind}
-- (kind: "bytes" a str or bin, "array" values, "map" key-value pairs).
local SIZED = { [0xd9] = { 1, "bytes" }, [0xc4] = { 1, "bytes" }, [0xda] = { 2, "bytes" }, [0xc5] = { 2, "bytes" },
                [0xdb] = { 4, "bytes" }, [0xc6] = { 4, "bytes" }, [0xdc] = { 2, "array" }, [0xdd] = { 4, "array" },
                [0xde] = { 2, "map" }, [0xdf] = { 4, "map" } }


-- The length or count of the SIZED value at byte i of s, the index after its
-- length bytes, and its kind; nil for another type byte or missing bytes.
local function sized_at(s, i, len)
    local sized = SIZED[byte(s, i)]
    if not sized then
        return nil
    end
    local width = sized[1]
    if i + width > len then
        return nil
    end
    local n = 0
    for k = 1, width do
        n = n * 0x100 + byte(s, i + k)
    end
    return n, i + width + 1, sized[2]
end


local skip -- forward

-- The index after n values from byte i of s, or nil.
local function skip_n(s, i, len, n, depth)
    for _ = 1, n do
        i = skip(s, i, len, depth)
        if not i then
            return nil
        end
    end
    return i
end


-- The index after the value at byte i of s, without building it; nil for ext
-- types, 0xc1, missing bytes and nesting deeper than 32 (the caller then
-- decodes whole). Numbers are skipped by their size, whatever their value.
function skip(s, i, len, depth)
    local b = byte(s, i)
    if b == nil or depth > 32 then
        return nil
    end
    if b < 0x80 or b >= 0xe0 or b == 0xc0 or b == 0xc2 or b == 0xc3 then -- fixints, nil, booleans
        return i + 1
    elseif b >= 0xa0 and b <= 0xbf then -- fixstr
        local e = i + b - 0xa0
        return e <= len and e + 1 or nil
    elseif b < 0x90 then -- fixmap
        return skip_n(s, i + 1, len, 2 * (b - 0x80), depth + 1)
    elseif b < 0xa0 then -- fixarray
        return skip_n(s, i + 1, len, b - 0x90, depth + 1)
    end
    local width = FIXED[b]
    if width then
        return i + width <= len and i + width + 1 or nil
    end
    local n, j, kind = sized_at(s, i, len)
    if not n then
        return nil -- ext types, 0xc1, missing bytes
    end
    if kind == "bytes" then
        return j + n - 1 <= len and j + n or nil
    end
    return skip_n(s, j, len, kind == "map" and 2 * n or n, depth + 1)
end


-- true when bytes i..j of s are valid UTF-8 (no overlong form, no surrogate,
-- nothing above U+10FFFF: what Python's strict UTF-8 decoding accepts).
local function utf8_ok(s, i, j)
    while i <= j do
        local b = byte(s, i)
        if b < 0x80 then
            i = i + 1
        else
            local n, lo, hi = 0, 0x80, 0xbf -- continuation bytes, the first one's range
            if b >= 0xc2 and b <= 0xdf then
                n = 1
            elseif b == 0xe0 then
                n, lo = 2, 0xa0
            elseif b == 0xed then
                n, hi = 2, 0x9f
            elseif b >= 0xe1 and b <= 0xef then
                n = 2
            elseif b == 0xf0 then
                n, lo = 3, 0x90
            elseif b == 0xf4 then
                n, hi = 3, 0x8f
            elseif b >= 0xf1 and b <= 0xf3 then
                n = 3
            else
                return false
            end
            if i + n > j then
                return false
            end
            local c = byte(s, i + 1)
            if c < lo or c > hi then
                return false
            end
            for k = i + 2, i + n do
                c = byte(s, k)
                if c < 0x80 or c > 0xbf then
                    return false
                end
            end
            i = i + n + 1
        end
    end
    return true
end
_M.utf8_ok = utf8_ok -- for rulegate.schema_fast


local STR_WIDTH = { [0xd9] = 1, [0xda] = 2, [0xdb] = 4 }

-- The keys under which rulegate/schema.py takes a float (_decimal, _ratio);
-- every other number it takes is an integer (_Checker.integer: a float such as
-- 2.0 or -0.0 is refused, where Lua, after decoding, sees the integer).
local FLOAT_FIELDS = { percent = true, error_ratio = true, slow_ratio = true, max_error_increase = true,
                       max_p95_ratio = true }
-- Containers Lua decodes alike when empty ({}): where Python takes only a list
-- (an empty map there is refused), and only a map (an empty array refused).
-- The other lists and maps of a rule are refused empty either way; an empty
-- array where an object goes is refused here too, so that the schema, which
-- names the missing fields of an empty object, never sees one.
local LIST_FIELDS = { policies = true }
local MAP_FIELDS = { headers = true, key = true, action = true, route = true, ramp = true, guard = true,
                     breaker = true, window = true }
local LIST_OF_MAPS = { policies = true, buckets = true } -- lists whose items are objects

local strict_value -- forward

-- The index after the str at byte i of s (nil when not a str) and the index
-- of its first byte; nil, reason when it is not valid UTF-8.
local function strict_str(s, i, len)
    local b = byte(s, i)
    local n, start
    if b == nil then
        return nil, "missing bytes"
    elseif b >= 0xa0 and b <= 0xbf then
        n, start = b - 0xa0, i + 1
    elseif STR_WIDTH[b] then
        local width = STR_WIDTH[b]
        if i + width > len then
            return nil, "missing bytes"
        end
        n = 0
        for k = 1, width do
            n = n * 0x100 + byte(s, i + k)
        end
        start = i + width + 1
    else
        return nil
    end
    local e = start + n - 1
    if e > len then
        return nil, "missing bytes"
    end
    if not utf8_ok(s, start, e) then
        return nil, "a string that is not valid UTF-8"
    end
    return e + 1, start
end


-- The count of the map (is_map true) or array at byte i of s and the index of
-- its first entry; nil when it is neither.
local function container_at(s, i, len)
    local b = byte(s, i)
    if b >= 0x80 and b <= 0x8f then
        return b - 0x80, i + 1, true
    elseif b >= 0x90 and b <= 0x9f then
        return b - 0x90, i + 1, false
    end
    local n, j, kind = sized_at(s, i, len)
    if not n or kind == "bytes" then
        return nil
    end
    return n, j, kind == "map"
end


local strict_entries -- forward


-- The index after the n items from byte j of the array under key ks..ke of s
-- when the key holds a list of objects (LIST_OF_MAPS): strict_entries with
-- no item an empty array; nil, reason; or false for any other key.
local function objects_at(s, len, depth, ks, ke, n, j)
    local kl = ke - ks + 1
    local key = kl >= 7 and kl <= 8 and sub(s, ks, ke) -- "buckets", "policies"
    if not LIST_OF_MAPS[key] then
        return false
    end
    return strict_entries(s, j, len, n, false, depth + 1, key)
end


-- The index after the map entry's value at byte i (key: bytes ks..ke of s):
-- not nil, a float only under FLOAT_FIELDS, not an empty map under
-- LIST_FIELDS nor an empty array under MAP_FIELDS or in a LIST_OF_MAPS; else
-- nil, reason (naming the key).
local function strict_entry(s, i, len, depth, ks, ke)
    local b = byte(s, i)
    if b == 0xc0 then
        return nil, "a null value in " .. sub(s, ks, ke)
    elseif b == 0xca or b == 0xcb then
        if not FLOAT_FIELDS[sub(s, ks, ke)] then
            return nil, "a float in " .. sub(s, ks, ke) .. ", which takes an integer"
        end
        return i + FIXED[b] <= len and i + FIXED[b] + 1 or nil
    elseif b >= 0x90 and b <= 0x9f or b == 0x80 or b >= 0xdc and b <= 0xdf then
        local n, j, is_map = container_at(s, i, len)
        if n == 0 then
            if is_map and LIST_FIELDS[sub(s, ks, ke)] or not is_map and MAP_FIELDS[sub(s, ks, ke)] then
                return nil, (is_map and "an empty map in " or "an empty list in ") .. sub(s, ks, ke)
            end
        elseif n and not is_map then
            local after, why = objects_at(s, len, depth, ks, ke, n, j)
            if after ~= false then
                return after, why
            end
        end
    end
    return strict_value(s, i, len, depth)
end


-- The index after the n entries of a map (is_map) or array from byte j of s
-- (strict_value of each value, strict_str of each key), or nil, reason. With
-- objects (the array's key): no item is an empty array.
function strict_entries(s, j, len, n, is_map, depth, objects)
    local why
    for _ = 1, n do
        if is_map then
            local b = byte(s, j)
            local ks, ke
            if b and b >= 0xa0 and b <= 0xbf then -- a fixstr key (every key ruleadmin writes)
                ks, ke = j + 1, j + b - 0xa0
                if ke > len or not utf8_ok(s, ks, ke) then
                    return nil, ke > len and "missing bytes" or "a string that is not valid UTF-8"
                end
                j = ke + 1
            else
                j, ks = strict_str(s, j, len)
                if not j then
                    return nil, ks or "a map key that is not a string"
                end
                ke = j - 1
            end
            j, why = strict_entry(s, j, len, depth, ks, ke)
        elseif objects and byte(s, j) == 0x90 then
            return nil, "an empty list in " .. objects .. ", which holds objects"
        else
            j, why = strict_value(s, j, len, depth)
        end
        if not j then
            return nil, why
        end
    end
    return j
end


-- The index after the value at byte i of s when Python's decode_rule reads it
-- as the same value Lua does: every string (keys too) a str of valid UTF-8, no
-- bin or ext value, no nil (Lua drops a key whose value is nil; Python refuses
-- the rule), map keys only strings, floats only where strict_entry allows
-- them; else nil, reason.
function strict_value(s, i, len, depth)
    local b = byte(s, i)
    if b == nil or depth > 32 then
        return nil, b == nil and "missing bytes" or "nested too deep"
    end
    if b >= 0xa0 and b <= 0xbf then -- fixstr
        local e = i + b - 0xa0
        if e > len then
            return nil, "missing bytes"
        end
        if not utf8_ok(s, i + 1, e) then
            return nil, "a string that is not valid UTF-8"
        end
        return e + 1
    elseif b < 0x80 or b >= 0xe0 or b == 0xc2 or b == 0xc3 then -- fixints, booleans
        return i + 1
    elseif b < 0x90 then -- fixmap
        return strict_entries(s, i + 1, len, b - 0x80, true, depth + 1)
    elseif b < 0xa0 then -- fixarray
        return strict_entries(s, i + 1, len, b - 0x90, false, depth + 1)
    elseif b == 0xc0 then
        return nil, "a null value"
    elseif b == 0xca or b == 0xcb then
        return nil, "a float in a list, which takes integers"
    elseif b == 0xc4 or b == 0xc5 or b == 0xc6 then
        return nil, "a binary value" -- Python reads bytes, never a str
    end
    local width = FIXED[b]
    if width then
        if i + width > len then
            return nil, "missing bytes"
        end
        return i + width + 1
    end
    local after, why = strict_str(s, i, len)
    if after then
        return after
    elseif why then
        return nil, why
    end
    local n, j, is_map = container_at(s, i, len)
    if not n then
        return nil, "an ext value" -- ext types, 0xc1
    end
    return strict_entries(s, j, len, n, is_map, depth + 1)
end


-- true when s is one msgpack value Python's rulegate.schema.decode_rule reads
-- as Lua does (strict_value); else false, reason.
function _M.same_in_python(s, i, j)
    if type(s) ~= "string" then
        return false, "not a string"
    end
    local last = j or #s
    local after, why = strict_value(s, i or 1, last, 1)
    if after == last + 1 then
        return true
    end
    return false, after and "extra bytes" or why or "missing bytes"
end


-- A map's entry count and the index of its first key, or nil.
local function map_at(s, i)
    local b = byte(s, i)
    if b == nil then
        return nil
    elseif b >= 0x80 and b < 0x90 then
        return b - 0x80, i + 1
    elseif b == 0xde then
        local b1, b2 = byte(s, i + 1, i + 2)
        return b2 and b1 * 0x100 + b2, i + 3
    elseif b == 0xdf then
        local b1, b2, b3, b4 = byte(s, i + 1, i + 4)
        return b4 and ((b1 * 0x100 + b2) * 0x100 + b3) * 0x100 + b4, i + 5
    end
    return nil
end


-- The number of items of the msgpack array that s starts with (fixarray,
-- array 16 or array 32), or nil when s starts with anything else: what a log
-- entry's changes hold, without decoding them.
function _M.array_len(s)
    if type(s) ~= "string" or s == "" then
        return nil
    end
    local n, _, is_map = container_at(s, 1, #s)
    if n and not is_map then
        return n
    end
    return nil
end


-- The length of the str 8/16/32 or bin value at byte i of s and the index of
-- its first byte (sized_at); nil for any other type, a fixstr included.
function _M.bytes_at(s, i)
    local n, first, kind = sized_at(s, i, #s)
    if kind == "bytes" then
        return n, first
    end
    return nil
end


-- The keys route_of reads (a code each; 0: any other key): a rule's, and its route's.
local ID, ROUTE, KIND, ENABLED, HOST, PATH, SCOPE = 1, 2, 3, 4, 5, 6, 7
local RULE_KEYS = { id = ID, route = ROUTE, kind = KIND, enabled = ENABLED, scope = SCOPE }
local ROUTE_KEYS = { host = HOST, path = PATH }


-- The code in keys of the fixstr key at byte i of s and the index after it;
-- nil for a key of any other encoding. Only a key of the length and first
-- byte of one route_of reads is made a string.
local function key_at(s, i, len, keys)
    local b = byte(s, i)
    if b == nil or b < 0xa0 or b > 0xbf then
        return nil
    end
    local n = b - 0xa0
    local e = i + n
    if e > len then
        return nil
    end
    local f = byte(s, i + 1)
    if (n == 2 and f == 0x69) or (n == 4 and (f == 0x6b or f == 0x68 or f == 0x70))
        or (n == 5 and (f == 0x72 or f == 0x73)) or (n == 7 and f == 0x65) then
        -- i(d), k(ind), h(ost), p(ath), r(oute), s(cope), e(nabled)
        return keys[sub(s, i + 1, e)] or 0, e + 1
    end
    return 0, e + 1
end


-- The scalar at byte i of s and the index after it; nil for a container or
-- what value() leaves to the library.
local function scalar(s, i, len)
    local v, j = value(s, i, len)
    if j == nil or type(v) == "table" then
        return nil, nil
    end
    return v, j
end


local got = {} -- route_of's fields by code (one call at a time: nothing in it yields)

-- Read the map at byte i of s into got: the scalar of each key of keys, a
-- route's map (ROUTE) with ROUTE_KEYS; other values skipped. The index after
-- it, or nil.
local function read_map(s, i, len, keys)
    local n
    n, i = map_at(s, i)
    if not n then
        return nil
    end
    for _ = 1, n do
        local k
        k, i = key_at(s, i, len, keys)
        if not k then
            return nil
        end
        if k == ROUTE then
            got[HOST], got[PATH] = nil, nil -- a later route replaces an earlier one whole
            i = read_map(s, i, len, ROUTE_KEYS)
        elseif k ~= 0 then
            got[k], i = scalar(s, i, len)
        else
            i = skip(s, i, len, 1)
        end
        if not i then
            return nil
        end
    end
    return i
end


-- What a gateway needs to place a stored rule in its route index without
-- decoding the rest: id, route.host, route.path, kind and enabled of the map s
-- encodes, as unpack(s) would give them (a key met twice: its last value), or
-- nil when s is anything else, has a key that is not a fixstr, holds an ext
-- type, or has a `scope` (a namespace-scope degrade rule is not placed by its
-- route: router.place_of) (the caller then decodes s whole). i, j: the map is
-- bytes i..j of s (default: all of s).
function _M.route_of(s, i, j)
    if type(s) ~= "string" then
        return nil
    end
    for k = ID, SCOPE do
        got[k] = nil
    end
    local len = j or #s
    if read_map(s, i or 1, len, RULE_KEYS) ~= len + 1 or got[SCOPE] ~= nil then
        return nil
    end
    local host, path, kind = got[HOST], got[PATH], got[KIND]
    if type(host) ~= "string" or type(path) ~= "string" or (kind ~= "split" and kind ~= "degrade") then
        return nil
    end
    return got[ID], host, path, kind, got[ENABLED]
end


local function missing_bytes()
    error("missing bytes")
end


-- The value at byte i of s and the index after it (a cursor over a run of
-- values), as lua-MessagePack's unpack_cursor reads it; raises on bad bytes.
function _M.at(s, i)
    local v, j = value(s, i, #s)
    if j then
        return v, j
    end
    local c = { s = s, i = i, j = #s, underflow = missing_bytes }
    v = mp.unpack_cursor(c)
    return v, c.i
end
local at = _M.at


-- What unpack(s) gives, an array's items (a log entry's changes: {{id,
-- before, after}, ...}) decoded one at a time with pause() before each;
-- raises on bad bytes, as unpack. Anything but an array, or without pause:
-- unpack(s).
function _M.unpack_paused(s, pause)
    if not pause or type(s) ~= "string" then
        return _M.unpack(s)
    end
    local len = #s
    local n, i, is_map = container_at(s, 1, len)
    if not n or is_map then
        return _M.unpack(s)
    end
    local out = {}
    for k = 1, n do
        pause()
        out[k], i = at(s, i)
    end
    if i ~= len + 1 then
        error("extra bytes")
    end
    return out
end



-- Add to seen (a set) the rule id of every change of a log entry's changes (a
-- msgpack array of {id, before, after} arrays), their bytes skipped, not
-- decoded: the number of changes, or nil when s is not such an array.
local function change_ids(s, seen)
    local len = #s
    local n, i, is_map = container_at(s, 1, len)
    if not n or is_map then
        return nil
    end
    for _ = 1, n do
        local m, j, inner_map = container_at(s, i, len)
        if not m or inner_map or m < 1 then
            return nil
        end
        local id
        id, j = at(s, j)
        if type(id) ~= "string" then
            return nil
        end
        seen[id] = true
        i = skip_n(s, j, len, m - 1, 1)
        if not i then
            return nil
        end
    end
    return n
end

function _M.change_ids(s, seen)
    if type(s) ~= "string" or s == "" then
        return nil
    end
    local ok, n = pcall(change_ids, s, seen)
    return ok and n or nil
end


-- A published delta ({to, rev, gen, changes = {id -> bytes | false}}) as
-- unpack(s) gives it, but each rule's bytes left in place (offsets only; the
-- caller pauses while it decodes the rules): a change is first (its bytes are
-- s:sub(first, last[id])), false (removed), or the value itself when it is not
-- a sized str or bin (a fixstr: never a rule).
-- Returns the record and last; raises on bad bytes. No string of each rule's
-- bytes is made (LuaJIT interns every string: see bench/REPORT.md).
function _M.delta_at(s)
    local len = #s
    local n, i = map_at(s, 1)
    if not n then
        error("a delta is a map")
    end
    local out, last = {}, {}
    for _ = 1, n do
        local key
        key, i = at(s, i)
        local inner, first = map_at(s, i)
        if key == "changes" and inner then
            i = first
            local changes = {}
            for _ = 1, inner do
                local id
                id, i = at(s, i)
                local size, from = _M.bytes_at(s, i)
                if size then
                    if from + size - 1 > len then
                        missing_bytes()
                    end
                    changes[id], last[id] = from, from + size - 1
                    i = from + size
                else
                    changes[id], i = at(s, i)
                end
            end
            out[key] = changes
        else
            out[key], i = at(s, i)
        end
    end
    if i ~= len + 1 then
        error("extra bytes")
    end
    return out, last
end


return _M
