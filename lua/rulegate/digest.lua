-- Content identity of a namespace (rulegate/digest.py): the XOR of
-- SHA-1(id .. "\n" .. stored bytes) over its rules, as 40 lowercase hex digits.
-- The commit script keeps the store's copy in {rg:<ns>}:meta "digest".
local bit = require("bit")

local ngx = ngx
local sha1_bin = ngx.sha1_bin
local bxor = bit.bxor
local bor = bit.bor
local lshift = bit.lshift
local tohex = bit.tohex
local byte = string.byte
local concat = table.concat
local sub = string.sub
local pairs = pairs
local tonumber = tonumber

local _M = { _VERSION = "0.1.0" }

_M.EMPTY = "0000000000000000000000000000000000000000"


-- XOR one rule's hash into acc (five 32-bit words).
local function add(acc, id, value)
    local h = sha1_bin(id .. "\n" .. value)
    for w = 0, 4 do
        local a, b, c, d = byte(h, w * 4 + 1, w * 4 + 4)
        acc[w + 1] = bxor(acc[w + 1], bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d))
    end
end


local function hex_of(acc)
    local out = {}
    for i = 1, 5 do
        out[i] = tohex(acc[i], 8)
    end
    return concat(out)
end


-- The digest of a rule set given as { [id] = stored bytes }; pause, when
-- given, is called after every rule (a cooperative yield).
function _M.of(raw_rules, pause)
    local acc = { 0, 0, 0, 0, 0 }
    for id, value in pairs(raw_rules) do
        add(acc, id, value)
        if pause then
            pause()
        end
    end
    return hex_of(acc)
end


-- The digest after one change of rule id from before to after (stored bytes,
-- or nil/false when absent): O(change), like the commit script's.
function _M.apply(hex, id, before, after)
    local acc = {}
    for w = 0, 4 do
        acc[w + 1] = tonumber(sub(hex, w * 8 + 1, w * 8 + 8), 16) or 0
    end
    if before then
        add(acc, id, before)
    end
    if after then
        add(acc, id, after)
    end
    return hex_of(acc)
end


return _M
