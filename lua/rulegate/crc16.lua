-- CRC16-CCITT (XMODEM) and the Redis Cluster hash slot of a key.
local bit = require("bit")

local band = bit.band
local bxor = bit.bxor
local lshift = bit.lshift
local rshift = bit.rshift
local byte = string.byte
local find = string.find
local type = type
local error = error

local _M = { _VERSION = "0.1.0", SLOTS = 16384 }

local TABLE = {}
for i = 0, 255 do
    local crc = lshift(i, 8)
    for _ = 1, 8 do
        if band(crc, 0x8000) ~= 0 then
            crc = bxor(lshift(crc, 1), 0x1021)
        else
            crc = lshift(crc, 1)
        end
    end
    TABLE[i] = band(crc, 0xffff)
end


-- crc16 of s[i..j] (defaults: the whole string)
function _M.crc16(s, i, j)
    i = i or 1
    j = j or #s
    local crc = 0
    for k = i, j do
        local idx = bxor(band(rshift(crc, 8), 0xff), byte(s, k))
        crc = band(bxor(lshift(crc, 8), TABLE[idx]), 0xffff)
    end
    return crc
end


-- Bounds of the hash tag of a key: the bytes between the first "{" and the
-- next "}" when there is at least one byte between them; else nil.
local function tag_bounds(key)
    local s = find(key, "{", 1, true)
    if not s then
        return nil
    end
    local e = find(key, "}", s + 1, true)
    if not e or e == s + 1 then
        return nil
    end
    return s + 1, e - 1
end


-- The hash tag of a key as a string, or nil when the whole key is hashed.
function _M.hash_tag(key)
    local i, j = tag_bounds(key)
    if not i then
        return nil
    end
    return key:sub(i, j)
end


function _M.slot(key)
    if type(key) ~= "string" then
        error("bad argument #1 to 'slot' (string expected, got " .. type(key) .. ")", 2)
    end
    local i, j = tag_bounds(key)
    if i then
        return band(_M.crc16(key, i, j), 16383)
    end
    return band(_M.crc16(key), 16383)
end


return _M
