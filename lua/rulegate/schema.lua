-- Structural validation of decoded rules before the router compiles them.
-- The full schema is enforced on write (rulegate/schema.py); this guard
-- makes sure a corrupt or foreign hash entry can never crash a worker.
local type = type
local next = next
local ipairs = ipairs
local pairs = pairs
local match = string.match
local sub = string.sub
local iputil = require("rulegate.iputil")

local _M = { _VERSION = "0.1.0" }

local KEY_SOURCES = { header = true, cookie = true, arg = true, ip = true }
local ACTIONS = { static = true, redirect = true, upstream = true, reject = true }
local MATCH = { header = true, cookie = true, arg = true }


local function str(v)
    return type(v) == "string" and v ~= ""
end


local function list(v)
    return type(v) == "table" and (#v > 0 or next(v) == nil)
end


local function check_key(key)
    if type(key) ~= "table" or not KEY_SOURCES[key.source] then
        return "key.source"
    end
    if key.source ~= "ip" and not str(key.name) then
        return "key.name"
    end
end


local function check_policy(p)
    if type(p) ~= "table" then
        return "policy"
    end
    local t = p.type
    if t == "percent" then
        if not list(p.buckets) then
            return "percent.buckets"
        end
        for _, b in ipairs(p.buckets) do
            if type(b) ~= "table" or not str(b.upstream) or type(b.weight) ~= "number" then
                return "percent.buckets"
            end
        end
        if p.salt ~= nil and type(p.salt) ~= "string" then
            return "percent.salt"
        end
        return nil
    end
    if not str(p.upstream) then
        return "policy.upstream"
    end
    if t == "uid_range" then
        if not list(p.ranges) then
            return "uid_range.ranges"
        end
        for _, r in ipairs(p.ranges) do
            if type(r) ~= "table" or type(r[1]) ~= "number" or type(r[2]) ~= "number" then
                return "uid_range.ranges"
            end
        end
    elseif t == "uid_suffix" then
        if not list(p.suffixes) then
            return "uid_suffix.suffixes"
        end
        for _, s in ipairs(p.suffixes) do
            if not str(s) then
                return "uid_suffix.suffixes"
            end
        end
    elseif t == "ip_cidr" then
        if not list(p.cidrs) then
            return "ip_cidr.cidrs"
        end
        for _, c in ipairs(p.cidrs) do
            if type(c) ~= "string" or not iputil.parse_cidr(c) then
                return "ip_cidr.cidrs"
            end
        end
    elseif MATCH[t] then
        if not str(p.name) or not list(p.values) then
            return t .. ".values"
        end
        for _, v in ipairs(p.values) do
            if type(v) ~= "string" then
                return t .. ".values"
            end
        end
    else
        return "policy.type"
    end
    return nil
end


local function check_action(a)
    if type(a) ~= "table" or not ACTIONS[a.type] then
        return "action.type"
    end
    if a.type == "static" then
        if type(a.status) ~= "number" then
            return "action.status"
        end
        if a.headers ~= nil and type(a.headers) ~= "table" then
            return "action.headers"
        end
        for k, v in pairs(a.headers or {}) do
            if type(k) ~= "string" or type(v) ~= "string" then
                return "action.headers"
            end
        end
        if a.body ~= nil and type(a.body) ~= "string" then
            return "action.body"
        end
    elseif a.type == "redirect" then
        if not str(a.location) then
            return "action.location"
        end
    elseif a.type == "upstream" then
        if not str(a.upstream) then
            return "action.upstream"
        end
    elseif a.status ~= nil and type(a.status) ~= "number" then
        return "action.status"
    end
    return nil
end


-- nil when the rule can be compiled, else nil, "<field> is invalid".
function _M.check(rule)
    if type(rule) ~= "table" then
        return nil, "rule is not a map"
    end
    if not str(rule.id) or not match(rule.id, "^[a-z0-9][a-z0-9_.-]*$") then
        return nil, "id is invalid"
    end
    local route = rule.route
    if type(route) ~= "table" or not str(route.host) or not str(route.path)
        or sub(route.path, 1, 1) ~= "/"
    then
        return nil, "route is invalid"
    end
    if route.methods ~= nil and not list(route.methods) then
        return nil, "route.methods is invalid"
    end
    local bad
    if rule.kind == "split" then
        bad = check_key(rule.key)
        if not bad and not list(rule.policies) then
            bad = "policies"
        end
        if not bad then
            for _, p in ipairs(rule.policies) do
                bad = check_policy(p)
                if bad then
                    break
                end
            end
        end
        if not bad and not str(rule.default) then
            bad = "default"
        end
    elseif rule.kind == "degrade" then
        bad = check_action(rule.action)
        if not bad and rule.percent ~= nil and type(rule.percent) ~= "number" then
            bad = "percent"
        end
        if not bad and rule.window ~= nil and type(rule.window) ~= "table" then
            bad = "window"
        end
        if not bad and rule.key ~= nil then
            bad = check_key(rule.key)
        end
    else
        bad = "kind"
    end
    if bad then
        return nil, bad .. " is invalid"
    end
    return true
end


return _M
