-- IPv4/IPv6 address and CIDR parsing with Python ipaddress's strictness:
-- no leading zeros in IPv4 octets, at most one "::", no zone ids.
local type = type
local byte = string.byte
local sub = string.sub
local find = string.find
local match = string.match
local tonumber = tonumber
local floor = math.floor

local _M = { _VERSION = "0.1.0" }


-- "a.b.c.d" -> { 4, o1, o2, o3, o4 } or nil
local function parse_v4(s, out, at)
    local n = 0
    local pos = 1
    while true do
        local e = find(s, ".", pos, true)
        local part = sub(s, pos, (e or 0) - 1)
        if e == nil then
            part = sub(s, pos)
        end
        local len = #part
        if len == 0 or len > 3 or not match(part, "^%d+$") then
            return nil
        end
        if len > 1 and byte(part, 1) == 48 then
            return nil
        end
        local v = tonumber(part)
        if v > 255 then
            return nil
        end
        n = n + 1
        if n > 4 then
            return nil
        end
        out[at + n] = v
        if e == nil then
            break
        end
        pos = e + 1
    end
    if n ~= 4 then
        return nil
    end
    return out
end


local function parse_groups(s, out)
    -- s holds hex groups separated by ":" (possibly with a trailing IPv4); appends bytes
    if s == "" then
        return 0
    end
    local count = 0
    local pos = 1
    while true do
        local e = find(s, ":", pos, true)
        local part = e and sub(s, pos, e - 1) or sub(s, pos)
        if e == nil and find(part, ".", 1, true) then
            local v4 = parse_v4(part, {}, 0)
            if not v4 then
                return nil
            end
            for i = 1, 4 do
                out[#out + 1] = v4[i]
            end
            return count + 2
        end
        if #part == 0 or #part > 4 or not match(part, "^%x+$") then
            return nil
        end
        local v = tonumber(part, 16)
        out[#out + 1] = floor(v / 256)
        out[#out + 1] = v % 256
        count = count + 1
        if e == nil then
            return count
        end
        pos = e + 1
    end
end


local function parse_v6(s)
    if find(s, "%", 1, true) then
        return nil
    end
    local dc = find(s, "::", 1, true)
    local head, tail = {}, {}
    local nh, nt
    if dc then
        if find(s, "::", dc + 1, true) then
            return nil
        end
        nh = parse_groups(sub(s, 1, dc - 1), head)
        nt = parse_groups(sub(s, dc + 2), tail)
        if not nh or not nt or nh + nt > 7 then
            return nil
        end
    else
        nh = parse_groups(s, head)
        if nh ~= 8 then
            return nil
        end
        nt = 0
    end
    local out = { 6 }
    for i = 1, #head do
        out[#out + 1] = head[i]
    end
    for _ = 1, (8 - nh - nt) * 2 do
        out[#out + 1] = 0
    end
    for i = 1, #tail do
        out[#out + 1] = tail[i]
    end
    if #out ~= 17 then
        return nil
    end
    return out
end


-- Parse an IP address: { 4, b1..b4 } or { 6, b1..b16 }, or nil when invalid.
function _M.parse_ip(s)
    if type(s) ~= "string" or s == "" or #s > 45 then
        return nil
    end
    if find(s, ":", 1, true) then
        return parse_v6(s)
    end
    return parse_v4(s, { 4 }, 1)
end


-- Parse "addr/prefix" (or a bare address): { addr = parsed, prefix = n }.
function _M.parse_cidr(s)
    local a, p = match(s, "^([^/]+)/(%d+)$")
    if not a then
        a = s
    end
    local addr = _M.parse_ip(a)
    if not addr then
        return nil, "invalid address in " .. s
    end
    local max = addr[1] == 4 and 32 or 128
    local prefix = p and tonumber(p) or max
    if prefix > max then
        return nil, "invalid prefix in " .. s
    end
    return { addr = addr, prefix = prefix }
end


-- True when the parsed address lies in the parsed network (same family only).
function _M.contains(net, addr)
    local na = net.addr
    if na[1] ~= addr[1] then
        return false
    end
    local bits = net.prefix
    local i = 2
    while bits >= 8 do
        if na[i] ~= addr[i] then
            return false
        end
        bits = bits - 8
        i = i + 1
    end
    if bits > 0 then
        local div = 2 ^ (8 - bits)
        return floor(na[i] / div) == floor(addr[i] / div)
    end
    return true
end


return _M
