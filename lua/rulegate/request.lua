-- The request the router sees, built from nginx (build) or from raw values
-- (from_raw, for tests and tools). rulegate/request.py builds the same request
-- in Python; docs/rules.md "Requests" is the spec both follow.
--
-- build() refills one table per worker: decide() never yields, so no two
-- requests of a worker share it at once. The method, headers, cookies, args,
-- ip and now are read lazily: most routes need few of them.
local ngx = ngx
local var = ngx.var
local req_get_method = ngx.req.get_method
local req_get_headers = ngx.req.get_headers
local now = ngx.now
local type = type
local ipairs = ipairs
local tonumber = tonumber
local setmetatable = setmetatable
local rawget = rawget
local rawset = rawset
local find = string.find
local sub = string.sub
local gsub = string.gsub
local gmatch = string.gmatch
local match = string.match
local lower = string.lower
local upper = string.upper
local char = string.char
local byte = string.byte
local clear_tab = require("table.clear")
local random = math.random
local format = string.format

local _M = { _VERSION = "0.2.0", MAX_ARGS = 100 }
local MAX_ARGS = 100

-- a request id when neither nginx nor the caller gave one (from_raw)
local function random_id()
    return format("%08x%08x", random(0, 0x7fffffff), random(0, 0x7fffffff))
end

-- "%4a", "%4A", ... -> the byte: every hex pair in either case
local HEX = {}
do
    local digits = "0123456789abcdefABCDEF"
    for i = 1, #digits do
        for j = 1, #digits do
            local pair = sub(digits, i, i) .. sub(digits, j, j)
            HEX[pair] = char(tonumber(pair, 16))
        end
    end
end


-- '+' is a space, then %XX is decoded; an invalid escape stays as it is.
local function unescape(s)
    if find(s, "+", 1, true) then
        s = gsub(s, "%+", " ")
    end
    if find(s, "%", 1, true) then
        s = gsub(s, "%%(%x%x)", HEX)
    end
    return s
end
_M.unescape = unescape


-- The host a gateway routes on: port stripped, A-Z lower-cased, one trailing
-- dot removed (nginx's $host is already this).
function _M.host(raw)
    local host = raw
    if byte(raw, 1) == 91 then -- "["
        local close = find(raw, "]", 1, true)
        if close then
            host = sub(raw, 1, close)
        end
    else
        local colon = find(raw, ":", 1, true)
        if colon then
            host = sub(raw, 1, colon - 1)
        end
    end
    host = lower(host)
    if byte(host, -1) == 46 then -- "."
        host = sub(host, 1, -2)
    end
    return host
end


-- Fill t from a raw query string: the first max '&'-separated segments count;
-- name=value (no '='; value ""), both unescaped; an empty name is ignored
-- (but counted); the first occurrence of a name counts. Uses rawget/rawset,
-- so t may be a lazy table.
local function parse_args(query, t, max)
    local pos, len = 1, #query
    for _ = 1, max or MAX_ARGS do
        local amp = find(query, "&", pos, true)
        local stop = amp and amp - 1 or len
        local eq = find(query, "=", pos, true)
        local name, value
        if eq and eq <= stop then
            name, value = sub(query, pos, eq - 1), sub(query, eq + 1, stop)
        else
            name, value = sub(query, pos, stop), ""
        end
        name = unescape(name)
        if name ~= "" and rawget(t, name) == nil then
            rawset(t, name, unescape(value))
        end
        if not amp then
            break
        end
        pos = amp + 1
    end
    return t
end
_M.parse_args = parse_args


-- Fill t from a Cookie header: name=value pieces split on ';', spaces and tabs
-- trimmed; no '=' or an empty name: ignored; the first occurrence counts.
local function parse_cookies(raw, t)
    for piece in gmatch(raw, "[^;]+") do
        local eq = find(piece, "=", 1, true)
        if eq then
            local name = match(sub(piece, 1, eq - 1), "^[ \t]*(.-)[ \t]*$")
            if name ~= "" and rawget(t, name) == nil then
                rawset(t, name, (match(sub(piece, eq + 1), "^[ \t]*(.-)[ \t]*$")))
            end
        end
    end
    return t
end
_M.parse_cookies = parse_cookies


-- A request from raw values: { host = Host header, target = request target,
-- method, ip, now, headers = { {name, value}, ... } } (tests, tools).
function _M.from_raw(r)
    local headers, cookie = {}, nil
    for _, h in ipairs(r.headers or {}) do
        local name, value = lower(h[1]), h[2]
        if name == "cookie" then
            cookie = cookie and (cookie .. "; " .. value) or value
        elseif headers[name] == nil then
            headers[name] = value
        end
    end
    headers.cookie = cookie
    local target = r.target or "/"
    local q = find(target, "?", 1, true)
    local path = q and sub(target, 1, q - 1) or target
    return {
        host = _M.host(r.host or ""), path = path ~= "" and path or "/",
        method = upper(r.method or "GET"), ip = r.ip or "", now = r.now,
        request_id = r.request_id or random_id(),
        headers = headers, cookies = parse_cookies(cookie or "", {}),
        args = q and parse_args(sub(target, q + 1), {}) or {},
    }
end


-- nginx ---------------------------------------------------------------------

local LOADED = {}      -- sentinel key of the lazy tables
local header_vars = {} -- header name -> nginx variable name ("x-uid" -> "http_x_uid")
local conf = {}        -- the rulegate options of the current request
local uri, query_at    -- the current request target and the position of its '?'

-- headers through $http_*: no table per request. Rule header names are
-- [a-z0-9-] and nginx drops names with '_' (underscores_in_headers off), so
-- '-' and '_' cannot be confused. nginx joins some repeated headers ("a, b"):
-- the first occurrence counts, so a value with a comma is looked up again.
local headers = setmetatable({}, { __index = function(_, name)
    local vn = header_vars[name]
    if vn == nil then
        vn = "http_" .. gsub(lower(name), "-", "_")
        header_vars[name] = vn
    end
    local v = var[vn]
    if v ~= nil and name ~= "cookie" and find(v, ",", 1, true) then
        v = req_get_headers(0)[name]
        if type(v) == "table" then
            v = v[1]
        end
    end
    return v
end })

local cookies = setmetatable({}, { __index = function(t, name)
    if rawget(t, LOADED) then
        return nil
    end
    rawset(t, LOADED, true)
    local raw = var.http_cookie -- every Cookie line, joined with "; "
    if raw then
        parse_cookies(raw, t)
    end
    return rawget(t, name)
end })

local args = setmetatable({}, { __index = function(t, name)
    if rawget(t, LOADED) then
        return nil
    end
    rawset(t, LOADED, true)
    if query_at then
        parse_args(sub(uri, query_at + 1), t, MAX_ARGS)
    end
    return rawget(t, name)
end })

-- method, ip, request_id and now are read on first use: most routes need none of them
local lazy = {
    method = req_get_method,
    ip = function()
        local ip
        if conf.ip_header then
            ip = headers[conf.ip_header]
        end
        if ip == nil then
            ip = var.remote_addr or ""
        end
        return ip
    end,
    -- a degrade keyed on "request": $request_id (16 random bytes in hex), or a
    -- configured header that an edge in front of nginx fills
    request_id = function()
        local id
        if conf.request_id_header then
            id = headers[conf.request_id_header]
        end
        if id == nil or id == "" then
            id = var.request_id or random_id()
        end
        return id
    end,
    now = function()
        local t
        if conf.now_header then
            t = tonumber(headers[conf.now_header])
        end
        return t or now()
    end,
}

local request = setmetatable({ headers = headers, cookies = cookies, args = args }, {
    __index = function(t, name)
        local f = lazy[name]
        if f == nil then
            return nil
        end
        local v = f()
        rawset(t, name, v)
        return v
    end,
})


-- t[k] = nil only when t holds k: a compiled store of nil into a key the
-- table lacks inserts the key (IR NEWREF), and the table's next rehash drops
-- it again, ~3,900 instructions a request for the request table's fields
-- (bench/REPORT.md, "nginx hot path: no table key inserted per request").
local function clear(t, k)
    if rawget(t, k) ~= nil then
        t[k] = nil
    end
end


-- The current nginx request for the router (opts: ip_header, now_header).
function _M.build(opts)
    if rawget(cookies, LOADED) then
        clear_tab(cookies)
    end
    if rawget(args, LOADED) then
        clear_tab(args)
    end
    conf = opts
    uri = var.request_uri or "/"
    query_at = find(uri, "?", 1, true)
    local path = query_at and sub(uri, 1, query_at - 1) or uri
    if path == "" then
        path = "/"
    end
    local req = request
    req.host = var.host or ""
    req.path = path
    -- what an earlier request set (the lazy fields it read, the breaker rule
    -- decide() let it pass), cleared
    clear(req, "method")
    clear(req, "ip")
    clear(req, "now")
    clear(req, "request_id")
    clear(req, "breaker")
    return req
end


return _M
