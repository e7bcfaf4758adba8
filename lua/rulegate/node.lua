-- One connection to one Redis node (lua-resty-redis): timeouts, a keepalive
-- pool per credentials and TLS settings, TLS handshake, AUTH, READONLY.
local ok_resty, redis = pcall(require, "resty.redis")
if not ok_resty then
    redis = require("nginx.redis")
end

local ngx = ngx
local tostring = tostring
local rawget = rawget
local sub = string.sub
local find = string.find
local match = string.match

local _M = { _VERSION = "0.1.0" }

local HAS_SET_TIMEOUTS = rawget(redis, "set_timeouts") ~= nil


-- The pool-name suffix of a client: a hash of its credentials and its TLS
-- settings, so plain, TLS and differently verified connections never mix.
function _M.pool_suffix(c)
    local out = ""
    if c.password then
        out = ":" .. sub(ngx.md5((c.username or "") .. "\0" .. c.password), 1, 12)
    end
    if c.ssl then
        out = out .. ":tls" .. (c.ssl_verify and ":v:" or ":nv:") .. (c.server_name or "")
    end
    return out
end


local function set_timeouts(red, c, s, r)
    if HAS_SET_TIMEOUTS then
        return red:set_timeouts(c, s, r)
    end
    return rawget(red, "_sock"):settimeouts(c, s, r)
end


-- The TLS name of a node: c.server_name, else its host unless that is an IP
-- literal (then the certificate chain is verified, not the name).
local function tls_name(c, host)
    if c.server_name then
        return c.server_name
    end
    if find(host, ":", 1, true) or match(host, "^[%d.]+$") then
        return nil
    end
    return host
end


-- What a new connection does once: TLS handshake (SNI; with ssl_verify the
-- certificate against lua_ssl_trusted_certificate and its name), AUTH, READONLY.
local function setup(c, red, host, addr, readonly)
    local ok, err
    if c.ssl then
        ok, err = rawget(red, "_sock"):sslhandshake(false, tls_name(c, host), c.ssl_verify)
        if not ok then
            return nil, "TLS handshake with redis " .. addr .. " failed: " .. tostring(err)
        end
    end
    if c.password then
        if c.username then
            ok, err = red:auth(c.username, c.password)
        else
            ok, err = red:auth(c.password)
        end
        if not ok then
            return nil, "failed to authenticate to redis " .. addr .. ": " .. tostring(err)
        end
    end
    if readonly then
        ok, err = red:readonly()
        if not ok then
            return nil, "READONLY failed on redis " .. addr .. ": " .. tostring(err)
        end
    end
    return true
end


-- A ready connection to host:port (addr) with the settings of client c
-- (timeouts, pool, ssl, credentials), or nil, err. The caller puts it back
-- with set_keepalive after success and closes it after any error.
function _M.open(c, addr, host, port, readonly)
    local red, err = redis:new()
    if not red then
        return nil, "failed to create a redis client: " .. tostring(err)
    end
    set_timeouts(red, c.connect_timeout, c.send_timeout, c.read_timeout)
    local pool = "rulegate:" .. addr .. c.pool_suffix .. (readonly and ":ro" or "")
    local ok
    ok, err = red:connect(host, port, { pool = pool, pool_size = c.keepalive_pool_size })
    if not ok then
        red:close()
        return nil, "failed to connect to redis " .. addr .. ": " .. tostring(err)
    end
    if red:get_reused_times() == 0 then
        ok, err = setup(c, red, host, addr, readonly)
        if not ok then
            red:close()
            return nil, err
        end
    end
    return red
end


return _M
