-- The one IP grammar of rulegate (rulegate/iputil.py mirrors it; docs/rules.md
-- "IP addresses"): IPv4 = four decimal octets 0..255 without leading zeros;
-- IPv6 = RFC 4291 text (1-4 hex digits per group, one "::" for one or more
-- zero groups, an optional IPv4 tail); no zone id, no brackets, no spaces.
-- parse() returns the family and four 32-bit words without creating a table,
-- so a request's IP costs no garbage.
local type = type
local byte = string.byte
local find = string.find
local match = string.match
local tonumber = tonumber
local floor = math.floor

local _M = { _VERSION = "0.2.0" }

local MAX_TEXT = 45
local POW = {}
for i = 0, 32 do
    POW[i] = 2 ^ i
end

-- scratch groups of the address being parsed: parsing never yields, so one
-- pair per worker is enough
local HEAD, TAIL = {}, {}


-- s[i..j] as a dotted quad: the 32-bit value, or nil
local function v4(s, i, j)
    local value, parts, k = 0, 0, i
    while true do
        local dot = find(s, ".", k, true)
        if dot == nil or dot > j then
            dot = j + 1
        end
        local len = dot - k
        if len < 1 or len > 3 then
            return nil
        end
        local octet = 0
        for p = k, dot - 1 do
            local c = byte(s, p)
            if c < 48 or c > 57 then
                return nil
            end
            octet = octet * 10 + c - 48
        end
        if octet > 255 or (len > 1 and byte(s, k) == 48) then
            return nil
        end
        value = value * 256 + octet
        parts = parts + 1
        if dot == j + 1 then
            break
        end
        if parts == 4 then
            return nil
        end
        k = dot + 1
    end
    if parts ~= 4 then
        return nil
    end
    return value
end


-- the hex groups of s[i..j] into G[1..]: their count, or nil; with tail the
-- last part may be an IPv4 address (two groups)
local function groups(s, i, j, tail, G)
    if i > j then
        return 0
    end
    local n, k = 0, i
    while true do
        local colon = find(s, ":", k, true)
        if colon == nil or colon > j then
            colon = j + 1
        end
        if tail and colon == j + 1 then
            local dot = find(s, ".", k, true)
            if dot and dot <= j then
                local v = v4(s, k, j)
                if v == nil then
                    return nil
                end
                G[n + 1] = floor(v / 65536)
                G[n + 2] = v % 65536
                return n + 2
            end
        end
        local len = colon - k
        if len < 1 or len > 4 then
            return nil
        end
        local v = 0
        for p = k, colon - 1 do
            local c = byte(s, p)
            if c >= 48 and c <= 57 then
                v = v * 16 + c - 48
            elseif c >= 97 and c <= 102 then
                v = v * 16 + c - 87
            elseif c >= 65 and c <= 70 then
                v = v * 16 + c - 55
            else
                return nil
            end
        end
        n = n + 1
        if n > 8 then
            return nil
        end
        G[n] = v
        if colon == j + 1 then
            return n
        end
        k = colon + 1
    end
end


local function group(g, nh, nt)
    if g <= nh then
        return HEAD[g]
    end
    if g > 8 - nt then
        return TAIL[g - 8 + nt]
    end
    return 0
end


local function v6(s, len)
    local gap = find(s, "::", 1, true)
    local nh, nt
    if gap == nil then
        nh = groups(s, 1, len, true, HEAD)
        if nh ~= 8 then
            return nil
        end
        nt = 0
    else
        if find(s, "::", gap + 1, true) then
            return nil
        end
        nh = groups(s, 1, gap - 1, false, HEAD)
        nt = nh and groups(s, gap + 2, len, true, TAIL)
        if not nt or nh + nt > 7 then
            return nil
        end
    end
    return 6,
        group(1, nh, nt) * 65536 + group(2, nh, nt),
        group(3, nh, nt) * 65536 + group(4, nh, nt),
        group(5, nh, nt) * 65536 + group(6, nh, nt),
        group(7, nh, nt) * 65536 + group(8, nh, nt)
end


-- The family (4 or 6) and the address as four 32-bit words (IPv4: w1, then
-- zeros), or nil when s is not an address. Never raises, allocates nothing.
local function parse(s)
    if type(s) ~= "string" then
        return nil
    end
    local len = #s
    if len == 0 or len > MAX_TEXT then
        return nil
    end
    if find(s, ":", 1, true) then
        return v6(s, len)
    end
    local v = v4(s, 1, len)
    if v == nil then
        return nil
    end
    return 4, v, 0, 0, 0
end
_M.parse = parse


-- True when the words lie in net = { family, prefix, w1, w2, w3, w4 }.
local function contains_words(net, family, w1, w2, w3, w4)
    if family ~= net[1] then
        return false
    end
    local bits = net[2]
    local w = w1
    for i = 3, 6 do
        if bits >= 32 then
            if w ~= net[i] then
                return false
            end
            bits = bits - 32
        else
            if bits > 0 then
                local div = POW[32 - bits]
                return floor(w / div) == floor(net[i] / div)
            end
            return true
        end
        if i == 3 then
            w = w2
        elseif i == 4 then
            w = w3
        else
            w = w4
        end
    end
    return true
end
_M.contains_words = contains_words


-- Parse a canonical "address/prefix" (explicit prefix without leading zeros,
-- host bits zero): { family, prefix, w1..w4, addr = bytes, prefix = n }, or nil, err.
function _M.parse_cidr(s)
    if type(s) ~= "string" then
        return nil, "not a string"
    end
    local a, p = match(s, "^([^/]+)/(%d%d?%d?)$")
    if not a or (#p > 1 and byte(p, 1) == 48) then
        return nil, "not address/prefix: " .. s
    end
    local family, w1, w2, w3, w4 = parse(a)
    if not family then
        return nil, "invalid address in " .. s
    end
    local prefix = tonumber(p)
    if prefix > (family == 4 and 32 or 128) then
        return nil, "invalid prefix in " .. s
    end
    local net = { family, prefix, w1, w2, w3, w4 }
    -- host bits are zero when the network's own words equal their masked form
    local bits = prefix
    for i = 3, 6 do
        local keep = bits >= 32 and 32 or (bits > 0 and bits or 0)
        local div = POW[32 - keep]
        if net[i] % div ~= 0 then
            return nil, "host bits set in " .. s
        end
        bits = bits - keep
    end
    local bytes = _M.parse_ip(a)
    net.addr = bytes
    net.prefix = prefix
    return net
end


-- An address as bytes: { 4, b1..b4 } or { 6, b1..b16 }, or nil (allocates;
-- for tests and tools; the request path uses parse()).
function _M.parse_ip(s)
    local family, w1, w2, w3, w4 = parse(s)
    if not family then
        return nil
    end
    local out = { family }
    local words = { w1, w2, w3, w4 }
    for i = 1, family == 4 and 1 or 4 do
        local w = words[i]
        out[#out + 1] = floor(w / 16777216)
        out[#out + 1] = floor(w / 65536) % 256
        out[#out + 1] = floor(w / 256) % 256
        out[#out + 1] = w % 256
    end
    return out
end


-- True when the parsed address (parse_ip) lies in the network (parse_cidr).
function _M.contains(net, addr)
    local w = { 0, 0, 0, 0 }
    for i = 2, #addr do
        local k = floor((i - 2) / 4) + 1
        w[k] = w[k] * 256 + addr[i]
    end
    return contains_words(net, addr[1], w[1], w[2], w[3], w[4])
end


return _M
