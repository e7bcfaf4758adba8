-- Packs a Lua value as ruleadmin stores a rule (rulegate/schema.py
-- encode_rule): every map's keys in sorted order, each scalar as lua-MessagePack
-- packs it (the shortest int, str). A table with an array part, or an empty
-- one, is an array. For specs that need a stored rule's canonical bytes.
local mp = require("MessagePack")

local char = string.char
local concat = table.concat
local sort = table.sort

local _M = {}

local function header(n, fix, b16)
    if n < 16 then
        return char(fix + n)
    end
    return char(b16, math.floor(n / 256), n % 256)
end

function _M.pack(v)
    if type(v) ~= "table" then
        return mp.pack(v)
    end
    local out = {}
    if #v > 0 or next(v) == nil then
        out[1] = header(#v, 0x90, 0xdc)
        for i = 1, #v do
            out[#out + 1] = _M.pack(v[i])
        end
        return concat(out)
    end
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = k
    end
    sort(keys)
    out[1] = header(#keys, 0x80, 0xde)
    for _, k in ipairs(keys) do
        out[#out + 1] = mp.pack(k)
        out[#out + 1] = _M.pack(v[k])
    end
    return concat(out)
end

return _M
