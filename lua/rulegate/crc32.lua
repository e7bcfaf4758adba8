-- A running CRC-32 (zlib's, as ngx.crc32_long and Python's zlib.crc32), so a
-- sticky bucket hashes the salt once at compile time and only the key per request,
-- with no string concatenation (no garbage) on the request path.
local bit = require("bit")

local band = bit.band
local bxor = bit.bxor
local bnot = bit.bnot
local rshift = bit.rshift
local byte = string.byte

local _M = { _VERSION = "0.1.0" }

local TABLE = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if band(c, 1) ~= 0 then
            c = bxor(rshift(c, 1), 0xedb88320)
        else
            c = rshift(c, 1)
        end
    end
    TABLE[i] = c
end


-- The running state after s, continuing from state (nil: a fresh CRC).
-- States are opaque 32-bit integers; finish() turns one into the CRC.
function _M.update(state, s)
    local c = state or -1 -- 0xffffffff as a signed 32-bit number
    for i = 1, #s do
        c = bxor(rshift(c, 8), TABLE[band(bxor(c, byte(s, i)), 0xff)])
    end
    return c
end


-- The CRC-32 (0 .. 2^32-1) of everything fed into state.
function _M.finish(state)
    local c = bnot(state or -1)
    if c < 0 then
        c = c + 4294967296
    end
    return c
end


-- The CRC-32 of a string.
function _M.sum(s)
    return _M.finish(_M.update(nil, s))
end


return _M
