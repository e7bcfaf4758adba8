-- Redis Cluster topology parsing: node addresses, MOVED/ASK replies, CLUSTER SLOTS.
local ngx = ngx
local null = ngx.null
local type = type
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local sort = table.sort
local sub = string.sub
local match = string.match

local _M = { _VERSION = "0.1.0" }


-- "host:port" -> host, port (the port is the text after the last colon)
local function split_addr(addr)
    local host, port = match(addr, "^(.*):(%d+)$")
    if not host then
        return nil, nil
    end
    return host, tonumber(port)
end
_M.split_addr = split_addr


-- Parse a MOVED / ASK error reply: returns kind ("MOVED"|"ASK"), slot, "host:port".
function _M.parse_redirect(err)
    if type(err) ~= "string" then
        return nil
    end
    local kind, slot, addr = match(err, "^(%u+) (%d+) (%S+)$")
    if kind ~= "MOVED" and kind ~= "ASK" then
        return nil
    end
    if sub(addr, 1, 1) == ":" then
        -- "MOVED 3999 :6380": the same host as the node that answered
        return kind, tonumber(slot), addr
    end
    if not split_addr(addr) then
        return nil
    end
    return kind, tonumber(slot), addr
end


local function node_addr(node, default_host)
    if type(node) ~= "table" then
        return nil
    end
    local host, port = node[1], node[2]
    if host == nil or host == null or host == "" or host == "?" then
        host = default_host
    end
    if type(host) ~= "string" or not tonumber(port) then
        return nil
    end
    return host .. ":" .. tostring(port)
end


-- Parse a CLUSTER SLOTS reply into a sorted list of ranges
-- { {first = n, last = n, master = "h:p", replicas = {"h:p", ...}}, ... }.
-- `default_host` replaces empty endpoints ("" / "?").
function _M.parse_slots(reply, default_host)
    if type(reply) ~= "table" then
        return nil, "bad CLUSTER SLOTS reply"
    end
    local ranges = {}
    for _, entry in ipairs(reply) do
        local first, last = tonumber(entry[1]), tonumber(entry[2])
        local master = node_addr(entry[3], default_host)
        if not first or not last or not master or first > last or last > 16383 then
            return nil, "bad CLUSTER SLOTS entry"
        end
        local replicas = {}
        for i = 4, #entry do
            local addr = node_addr(entry[i], default_host)
            if addr then
                replicas[#replicas + 1] = addr
            end
        end
        ranges[#ranges + 1] = { first = first, last = last, master = master, replicas = replicas }
    end
    if #ranges == 0 then
        return nil, "empty CLUSTER SLOTS reply"
    end
    sort(ranges, function(a, b) return a.first < b.first end)
    return ranges
end


-- Build the per-worker slot -> range lookup from a list of ranges.
function _M.build_slot_index(ranges)
    local slots = {}
    for _, r in ipairs(ranges) do
        for s = r.first, r.last do
            slots[s] = r
        end
    end
    return slots
end



return _M
