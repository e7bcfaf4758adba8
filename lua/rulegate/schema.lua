-- Checks a decoded rule before the router compiles it. ruleadmin stores only
-- canonical rules (rulegate/schema.py); this verifies what the canonical form
-- guarantees, so a corrupt or foreign hash entry can never crash a worker nor
-- be applied differently from the Python gateways. Every rule the Python
-- validator emits passes (a property test proves it).
local type = type
local next = next
local ipairs = ipairs
local pairs = pairs
local unpack = unpack
local pcall = pcall
local tostring = tostring
local floor = math.floor
local find = string.find
local lower = string.lower
local byte = string.byte
local sub = string.sub
local gsub = string.gsub
local iputil = require("rulegate.iputil")

local _M = { _VERSION = "0.2.0" }

local MAX_UID = 9007199254740991 -- 2^53 - 1
local MAX_TIME = 1099511627776 -- 2^40
local MAX_RAMP_SPAN = 366 * 86400 -- keeps the router's ramp products below 2^53
local MAX_RAMP_STEPS = 1000
-- rulegate/schema.py _check_guard: a canonical guard has only these (window, on_breach filled in)
local GUARD_FIELDS = {
    control = true, min_requests = true, window = true, max_error_increase = true, max_p95_ratio = true,
    on_breach = true,
}
local GUARD_BREACH = { revert = true, freeze = true }
local KEY_SOURCES = { header = true, cookie = true, arg = true, ip = true }
local METHODS = { GET = true, HEAD = true, POST = true, PUT = true, PATCH = true, DELETE = true, OPTIONS = true }
local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local BODILESS = { [204] = true, [205] = true, [304] = true }
local GATEWAY_HEADERS = {
    ["content-type"] = true, ["content-length"] = true, ["transfer-encoding"] = true, connection = true,
}


local function str(v)
    return type(v) == "string" and v ~= ""
end


-- A set of the names given.
local function fields(...)
    local set = {}
    for _, name in ipairs({ ... }) do
        set[name] = true
    end
    return set
end


-- true when v decoded from a map (an object): a table without an array part
-- (an empty list is told from an empty map by rule_check.stored_form).
local function is_map(v)
    return type(v) == "table" and v[1] == nil
end


-- The path of the first problem rulegate/schema.py _Checker.obj finds in
-- value t at path: path itself when t is not an object, else path .. "." ..
-- the field obj() names; nil when none. (path "" gives the field relative to
-- t: ".name", or "" for t itself.)
local object_problem -- below obj


-- A table key as text safe in a status page or a log line: printable ASCII,
-- at most 128 bytes ("?" for any other byte; only a failing rule's key).
local function printable(k)
    local name = tostring(k)
    return (gsub(#name > 128 and sub(name, 1, 128) .. "..." or name, "[^\32-\126]", "?"))
end


-- The first problem rulegate/schema.py _Checker.obj finds in table t, as the
-- name of the field within t (nil: none): a key not in the set allowed (an
-- unknown field, at every level of a rule), else the first name of the list
-- required that t lacks. Python reports its first problem the same way.
-- (Paths are built only for a rule that fails: LuaJIT interns every string.)
local function obj(t, allowed, required)
    for k in pairs(t) do
        if not allowed[k] then
            return printable(k)
        end
    end
    for i = 1, #(required or "") do
        if t[required[i]] == nil then
            return required[i]
        end
    end
end


function object_problem(t, path, allowed, required)
    if not is_map(t) then
        return path
    end
    local bad = obj(t, allowed, required)
    return bad and path .. "." .. bad
end


-- The first problem of an object whose field `tag` (a rule's kind, a policy's
-- or an action's type) picks the fields it may and must have (fields[tag],
-- required[tag]), as a path relative to it: "" (not an object), "." .. tag
-- (an unknown one), "." .. the field obj() names; nil when none.
local function tagged_problem(t, tag, fields, required)
    if not is_map(t) then
        return ""
    end
    local allowed = fields[t[tag]]
    if not allowed then
        return "." .. tag
    end
    local bad = obj(t, allowed, required[t[tag]])
    return bad and "." .. bad
end


local COMMON = { "id", "kind", "route", "enabled", "description", "updated_by", "updated_at" }
local RULE_FIELDS = {
    split = fields("key", "policies", "default", "window", unpack(COMMON)),
    degrade = fields("action", "percent", "window", "key", "salt", "breaker", "scope", unpack(COMMON)),
}
local RULE_REQUIRED = { -- rulegate/schema.py _COMMON_REQUIRED + _KIND_FIELDS, in its order
    split = { "id", "kind", "route", "key", "policies", "default" }, degrade = { "id", "kind", "route", "action" },
}
local ROUTE_FIELDS, ROUTE_REQUIRED = fields("host", "path", "methods"), { "host", "path" }
local KEY_FIELDS, KEY_REQUIRED = fields("source", "name"), { "source" }
local WINDOW_FIELDS = fields("start", "end")
local BUCKET_FIELDS, BUCKET_REQUIRED = fields("upstream", "weight"), { "upstream", "weight" }
local RAMP_FIELDS = fields("start", "end", "from", "to", "mode", "steps", "guard")
local RAMP_REQUIRED = { "start", "end", "from", "to", "mode" }
local GUARD_REQUIRED = { "control", "min_requests" }
local BREAKER_FIELDS = fields("window", "min_requests", "open_seconds", "probes", "error_ratio", "slow_ms",
                              "slow_ratio")
local BREAKER_REQUIRED = { "window", "min_requests", "open_seconds", "probes" }
local POLICY_FIELDS = {
    uid_range = fields("type", "ranges", "upstream"), uid_suffix = fields("type", "suffixes", "upstream"),
    ip_cidr = fields("type", "cidrs", "upstream"), header = fields("type", "name", "values", "upstream"),
    cookie = fields("type", "name", "values", "upstream"), arg = fields("type", "name", "values", "upstream"),
    percent = fields("type", "buckets", "salt", "ramp"),
}
local POLICY_REQUIRED = {
    uid_range = { "type", "ranges", "upstream" }, uid_suffix = { "type", "suffixes", "upstream" },
    ip_cidr = { "type", "cidrs", "upstream" }, header = { "type", "name", "values", "upstream" },
    cookie = { "type", "name", "values", "upstream" }, arg = { "type", "name", "values", "upstream" },
    percent = { "type", "buckets" },
}
local ACTION_FIELDS = {
    static = fields("type", "status", "content_type", "headers", "body"),
    redirect = fields("type", "location", "status"), upstream = fields("type", "upstream"),
    reject = fields("type", "status", "retry_after"),
}
local ACTION_REQUIRED = {
    static = { "type", "status" }, redirect = { "type", "location" }, upstream = { "type", "upstream" },
    reject = { "type" },
}


-- An upstream name: 1-128 of A-Z a-z 0-9 _ . : - (rulegate/schema.py _upstream;
-- nginx proxies to it: a "/" or a space would change the request it sends).
local function upstream(v)
    return type(v) == "string" and v ~= "" and #v <= 128 and not find(v, "[^%w_.:%-]")
end


local function list(v, max)
    return type(v) == "table" and (#v > 0 or next(v) == nil) and (max == nil or #v <= max)
end


local function int(v, lo, hi)
    return type(v) == "number" and v == floor(v) and v >= lo and v <= hi
end


-- Byte classes (sets of byte values) for the checks every rule goes through:
-- loops over bytes, which LuaJIT compiles, where string patterns would be a
-- C call each (~10 per rule). Each class is the ASCII set its comment names.
local function class(ranges, extra)
    local set = {}
    for i = 1, #ranges, 2 do
        for b = byte(ranges, i), byte(ranges, i + 1) do
            set[b] = true
        end
    end
    for i = 1, #(extra or "") do
        set[byte(extra, i)] = true
    end
    return set
end
local NAME_BYTES = class("azAZ09", "-") -- Lua's %w (C locale) and '-'
local HOST_BYTES = class("az09", ".-")
local ID_FIRST = class("az09")
local ID_BYTES = class("az09", "_.-")
local PATH_BYTES = class("!~") -- printable ASCII without space...
PATH_BYTES[63], PATH_BYTES[35] = nil, nil -- ... '?' and '#'
local URI_BYTES = class("!~") -- printable ASCII without space (a redirect's location)
local TOKEN_BYTES = class("azAZ09", "!#$%&'*+-.^_`|~") -- an HTTP token (cookie and arg names, suffixes)
local VALUE_BYTES = class(" ~", "\t") -- printable ASCII and tab (a response header's value)
local MAX_TEXT = 1024 -- rulegate/schema.py MAX_TEXT
local MAX_BODY_BYTES = 65536
local MAX_HEADERS = 32
-- For rulegate.schema_fast, which checks the same fields in a rule's stored
-- bytes (read only: each is the set its comment above names).
_M.BYTES = { name = NAME_BYTES, host = HOST_BYTES, id_first = ID_FIRST, id = ID_BYTES, path = PATH_BYTES,
             token = TOKEN_BYTES, value = VALUE_BYTES }
_M.class = class
_M.METHODS, _M.KEY_SOURCES = METHODS, KEY_SOURCES
_M.MAX_UID, _M.MAX_TIME, _M.MAX_TEXT, _M.MAX_BODY_BYTES = MAX_UID, MAX_TIME, MAX_TEXT, MAX_BODY_BYTES


-- true when every byte of s from index i on is in set
local function all_in(s, set, i)
    for j = i, #s do
        if not set[byte(s, j)] then
            return false
        end
    end
    return true
end


-- letters, digits and '-': a header name nginx delivers ($http_*) and sends as is
local function header_name(v)
    return str(v) and #v <= 128 and all_in(v, NAME_BYTES, 1)
end


-- 1..max bytes of an HTTP token
local function token(v, max)
    return str(v) and #v <= max and all_in(v, TOKEN_BYTES, 1)
end


-- Text as rulegate/schema.py's _Checker.text takes it: a string of at most max
-- characters (code points: the bytes that do not continue a UTF-8 sequence)
-- with no NUL, nor CR or LF unless multi_line. (Its UTF-8 is not checked:
-- Python's msgpack refuses a stored string that is not.)
local function text(v, max, multi_line)
    if type(v) ~= "string" or find(v, "\0", 1, true) then
        return false
    end
    if not multi_line and (find(v, "\r", 1, true) or find(v, "\n", 1, true)) then
        return false
    end
    if #v > max then
        local n = 0
        for i = 1, #v do
            local b = byte(v, i)
            if b < 0x80 or b >= 0xc0 then
                n = n + 1
            end
        end
        return n <= max
    end
    return true
end


-- A response header's value (rulegate/schema.py _header_value): 1..max bytes
-- of printable ASCII or tab, not starting or ending with a space or a tab.
local function header_value(v, max)
    if not str(v) or #v > max or not all_in(v, VALUE_BYTES, 1) then
        return false
    end
    local first, last = byte(v, 1), byte(v, #v)
    return first ~= 32 and first ~= 9 and last ~= 32 and last ~= 9
end


-- A redirect's location: 1-2048 bytes of printable ASCII without space, an
-- absolute http(s) URL or a path starting with '/'.
local function location(v)
    if not str(v) or #v > 2048 or not all_in(v, URI_BYTES, 1) then
        return false
    end
    return byte(v, 1) == 47 or sub(v, 1, 7) == "http://" or sub(v, 1, 8) == "https://"
end


-- "*", or [*.]labels of a-z 0-9 '-' joined by single dots, neither starting
-- nor ending with '.' or '-'
local function host(v)
    if v == "*" then
        return true
    end
    if not str(v) or #v > 253 then
        return false
    end
    local i, n = 1, #v
    if byte(v, 1) == 42 and byte(v, 2) == 46 then -- "*."
        i = 3
    end
    if i > n or not all_in(v, HOST_BYTES, i) or find(v, "..", i, true) then
        return false
    end
    local first, last = byte(v, i), byte(v, n)
    return first ~= 46 and first ~= 45 and last ~= 46 and last ~= 45
end


local function path(v)
    -- printable ASCII without spaces, '?' or '#', starting with '/'
    return str(v) and #v <= 512 and byte(v, 1) == 47 and all_in(v, PATH_BYTES, 1)
end


local function check_key(key, degrade)
    local bad = object_problem(key, "key", KEY_FIELDS, KEY_REQUIRED)
    if bad then
        return bad
    end
    local source = key.source
    if not (KEY_SOURCES[source] or degrade and source == "request") then
        return "key.source"
    end
    if source == "ip" or source == "request" then
        return key.name ~= nil and "key.name" or nil
    end
    if key.name == nil or source == "header" and not header_name(key.name) or not token(key.name, 128) then
        return "key.name"
    end
end


-- A number lo .. hi in the canonical form of rulegate/schema.py _decimal: the
-- double nearest to units / scale (integers included).
local function decimal(v, lo, hi, scale)
    return type(v) == "number" and v >= lo and v <= hi and floor(v * scale + 0.5) / scale == v
end


-- The path of field `rest` of policy i (rest "": the policy itself).
local function policy_field(i, rest)
    return "policies[" .. (i - 1) .. "]" .. rest
end


-- A ramp's guard exactly as ruleadmin stores it (docs/rules.md "Guards"): nil,
-- or the field that is not, within the guard ("": the guard). The router
-- ignores it; it is checked so that no rule nginx applies is one ruleadmin
-- would refuse.
local function guard_problem(g, buckets)
    local bad = object_problem(g, "", GUARD_FIELDS, GUARD_REQUIRED)
    if bad then
        return bad
    end
    local control = g.control
    if not upstream(control) then
        return ".control"
    end
    for _, b in ipairs(buckets) do
        if b.upstream == control then
            return ".control"
        end
    end
    if not int(g.min_requests, 1, 1000000) then
        return ".min_requests"
    end
    if g.window ~= nil and not int(g.window, 10, 3600) then
        return ".window"
    end
    local err, p95 = g.max_error_increase, g.max_p95_ratio
    if err ~= nil and not decimal(err, 0, 1, 10000) then
        return ".max_error_increase"
    end
    if p95 ~= nil and not decimal(p95, 1, 100, 100) then
        return ".max_p95_ratio"
    end
    if g.on_breach ~= nil and not GUARD_BREACH[g.on_breach] then
        return ".on_breach"
    end
    if err == nil and p95 == nil then
        return ""
    end
    if g.window == nil then -- a default ruleadmin fills in: always stored
        return ".window"
    end
    if g.on_breach == nil then
        return ".on_breach"
    end
end


-- A ramp the router can evaluate exactly (rulegate/schema.py _check_ramp):
-- nil, or the field that is not, within the ramp ("": the ramp).
local function ramp_problem(r, buckets)
    local bad = object_problem(r, "", RAMP_FIELDS, RAMP_REQUIRED)
    if bad then
        return bad
    end
    if not int(r.start, 0, MAX_TIME) then
        return ".start"
    end
    if not int(r["end"], 0, MAX_TIME) or r["end"] <= r.start or r["end"] - r.start > MAX_RAMP_SPAN then
        return ".end"
    end
    if not int(r.from, 0, 10000) then
        return ".from"
    end
    if not int(r.to, 0, 10000) then
        return ".to"
    end
    if r.mode == "step" then
        if not int(r.steps, 1, MAX_RAMP_STEPS) then
            return ".steps"
        end
    elseif r.mode ~= "linear" then
        return ".mode"
    elseif r.steps ~= nil then
        return ".steps"
    end
    if r.guard ~= nil then
        bad = guard_problem(r.guard, buckets)
        return bad and ".guard" .. bad
    end
end


-- The index of the first item of list items that fails ok(item, a), or nil.
local function first_bad(items, ok, a)
    for i = 1, #items do
        if not ok(items[i], a) then
            return i
        end
    end
end


-- nil, or the field of percent policy p that is not as stored, within p.
local function percent_problem(p)
    if p.salt ~= nil and not text(p.salt, 64) then
        return ".salt"
    end
    local buckets = p.buckets
    if not list(buckets, 100) or #buckets == 0 then
        return ".buckets"
    end
    local total = 0
    for i, b in ipairs(buckets) do
        local bad = object_problem(b, "", BUCKET_FIELDS, BUCKET_REQUIRED)
            or not upstream(b.upstream) and ".upstream" or not int(b.weight, 1, 10000) and ".weight" or nil
        if bad then
            return ".buckets[" .. (i - 1) .. "]" .. bad
        end
        total = total + b.weight
    end
    if total > 10000 then
        return ".buckets"
    end
    if p.ramp ~= nil then
        local bad = ramp_problem(p.ramp, buckets)
        return bad and ".ramp" .. bad
    end
end


-- nil, or the field of policy p that is not as stored, within p ("": p).
local function policy_problem(p)
    local bad = tagged_problem(p, "type", POLICY_FIELDS, POLICY_REQUIRED)
    if bad then
        return bad
    end
    local t = p.type
    if t == "percent" then
        return percent_problem(p)
    end
    if not upstream(p.upstream) then
        return ".upstream"
    end
    if t == "uid_range" then
        local ranges = p.ranges
        if not list(ranges, 256) or #ranges == 0 then
            return ".ranges"
        end
        for i, r in ipairs(ranges) do
            if type(r) ~= "table" or #r ~= 2 then
                bad = ""
            elseif not int(r[1], 0, MAX_UID) then
                bad = "[0]"
            elseif not int(r[2], 0, MAX_UID) then
                bad = "[1]"
            elseif r[1] > r[2] then
                bad = ""
            end
            if bad then
                return ".ranges[" .. (i - 1) .. "]" .. bad
            end
        end
    elseif t == "uid_suffix" then
        if not list(p.suffixes, 256) or #p.suffixes == 0 then
            return ".suffixes"
        end
        local i = first_bad(p.suffixes, token, 32)
        return i and ".suffixes[" .. (i - 1) .. "]"
    elseif t == "ip_cidr" then
        if not list(p.cidrs, 256) or #p.cidrs == 0 then
            return ".cidrs"
        end
        local i = first_bad(p.cidrs, iputil.parse_cidr)
        return i and ".cidrs[" .. (i - 1) .. "]"
    else -- header, cookie, arg
        if not token(p.name, 128) or (t == "header" and not header_name(p.name)) then
            return ".name"
        end
        if not list(p.values, 256) or #p.values == 0 then
            return ".values"
        end
        local i = first_bad(p.values, text, MAX_TEXT)
        return i and ".values[" .. (i - 1) .. "]"
    end
end


local function check_static(a)
    if not int(a.status, 200, 599) then
        return "action.status"
    end
    if BODILESS[a.status] then
        if a.content_type ~= nil then
            return "action.content_type"
        end
    elseif a.content_type ~= nil and not header_value(a.content_type, 128) then
        return "action.content_type"
    end
    if a.body ~= nil and not (text(a.body, MAX_BODY_BYTES * 4, true) and #a.body <= MAX_BODY_BYTES) then
        return "action.body"
    end
    if BODILESS[a.status] and a.body ~= nil and a.body ~= "" then
        return "action.body"
    end
    if a.headers == nil then
        return
    end
    if not is_map(a.headers) then
        return "action.headers"
    end
    local count = 0
    for _ in pairs(a.headers) do
        count = count + 1
    end
    if count > MAX_HEADERS then
        return "action.headers"
    end
    local seen = {}
    for k, v in pairs(a.headers) do
        if not header_name(k) then
            return "action.headers." .. printable(k)
        end
        local name = lower(k)
        if seen[name] or GATEWAY_HEADERS[name] or not header_value(v, MAX_TEXT) then
            return "action.headers." .. k
        end
        seen[name] = true
    end
end


local function check_action(a)
    local bad = tagged_problem(a, "type", ACTION_FIELDS, ACTION_REQUIRED)
    if bad then
        return "action" .. bad
    end
    local t = a.type
    if t == "static" then
        return check_static(a)
    elseif t == "redirect" then
        if a.status ~= nil and not REDIRECT[a.status] then
            return "action.status"
        end
        if not location(a.location) then
            return "action.location"
        end
    elseif t == "upstream" then
        if not upstream(a.upstream) then
            return "action.upstream"
        end
    else -- reject
        if a.status ~= nil and not int(a.status, 400, 599) then
            return "action.status"
        end
        if a.retry_after ~= nil and not int(a.retry_after, 0, 86400) then
            return "action.retry_after"
        end
    end
end


-- rulegate/schema.py _check_window: a start, an end or both, each 0 .. 2^40,
-- the end after the start.
local function check_window(w)
    local bad = object_problem(w, "window", WINDOW_FIELDS)
    if bad then
        return bad
    end
    local s, e = w.start, w["end"]
    if s ~= nil and not int(s, 0, MAX_TIME) then
        return "window.start"
    end
    if e ~= nil and not int(e, 0, MAX_TIME) then
        return "window.end"
    end
    if s == nil and e == nil then
        return "window"
    end
    if s ~= nil and e ~= nil and e <= s then
        return "window.end"
    end
end


local function check_split(rule)
    local bad = check_key(rule.key)
    if bad then
        return bad
    end
    local policies = rule.policies
    if not list(policies, 32) then
        return "policies"
    end
    for i = 1, #policies do
        bad = policy_problem(policies[i])
        if bad then
            return policy_field(i, bad)
        end
    end
    if not upstream(rule.default) then
        return "default"
    end
    if rule.window ~= nil then
        return check_window(rule.window)
    end
end


local BREAKER_INTS = { -- rulegate/schema.py BREAKER_LIMITS, in its order
    { "window", 600 }, { "min_requests", 1000000 }, { "slow_ms", 3600000 }, { "open_seconds", 3600 },
    { "probes", 1000 },
}


local function ratio(v)
    return type(v) == "number" and v >= 0 and v <= 1
end


local function check_breaker(b)
    local bad = object_problem(b, "breaker", BREAKER_FIELDS, BREAKER_REQUIRED)
    if bad then
        return bad
    end
    for _, limit in ipairs(BREAKER_INTS) do
        local name = limit[1]
        if b[name] ~= nil and not int(b[name], 1, limit[2]) then
            return "breaker." .. name
        end
    end
    if b.error_ratio ~= nil and not ratio(b.error_ratio) then
        return "breaker.error_ratio"
    end
    if b.slow_ratio ~= nil and not ratio(b.slow_ratio) then
        return "breaker.slow_ratio"
    end
    if (b.slow_ms == nil) ~= (b.slow_ratio == nil) then
        return b.slow_ms ~= nil and "breaker.slow_ratio" or "breaker.slow_ms"
    end
    if b.error_ratio == nil and b.slow_ratio == nil then
        return "breaker"
    end
end


local function check_degrade(rule)
    local bad = check_action(rule.action)
    if bad then
        return bad
    end
    if rule.percent ~= nil and not decimal(rule.percent, 0, 100, 100) then -- at most 2 decimals, canonical
        return "percent"
    end
    if rule.window ~= nil then
        bad = check_window(rule.window)
        if bad then
            return bad
        end
    end
    if rule.key ~= nil then
        bad = check_key(rule.key, true)
        if bad then
            return bad
        end
    end
    if rule.salt ~= nil and not text(rule.salt, 64) then
        return "salt"
    end
    if rule.breaker ~= nil then
        bad = check_breaker(rule.breaker)
        if bad then
            return bad
        end
    end
    if rule.scope ~= nil then -- "namespace" only: route * /, no breaker (docs/rules.md "Namespace scope")
        if rule.scope ~= "namespace" then
            return "scope"
        end
        if rule.route.host ~= "*" then
            return "route.host"
        end
        if rule.route.path ~= "/" then
            return "route.path"
        end
        if rule.breaker ~= nil then
            return "breaker"
        end
    end
end


local function check_route(route)
    local bad = object_problem(route, "route", ROUTE_FIELDS, ROUTE_REQUIRED)
    if bad then
        return bad
    end
    if not host(route.host) then
        return "route.host"
    end
    if not path(route.path) then
        return "route.path"
    end
    local methods = route.methods
    if methods ~= nil then
        if not list(methods, 7) or #methods == 0 then
            return "route.methods"
        end
        local seen = {}
        for i, m in ipairs(methods) do
            if not METHODS[m] then
                return "route.methods[" .. (i - 1) .. "]"
            end
            if seen[m] then
                return "route.methods"
            end
            seen[m] = true
        end
    end
end


-- The path of the first field of rule that is not as rulegate/schema.py's
-- validator stores it (its first error's path when the rule has one fault;
-- "<root>": not an object), or nil. Checked in the validator's order: the
-- kind, unknown and missing fields, the id, the route, the common fields, then
-- the kind's.
local function check(rule)
    local bad = tagged_problem(rule, "kind", RULE_FIELDS, RULE_REQUIRED)
    if bad then
        return bad == "" and "<root>" or sub(bad, 2)
    end
    local kind = rule.kind
    local id = rule.id -- [a-z0-9][a-z0-9_.-]*
    if not str(id) or #id > 64 or not ID_FIRST[byte(id, 1)] or not all_in(id, ID_BYTES, 2) then
        return "id"
    end
    bad = check_route(rule.route)
    if bad then
        return bad
    end
    if rule.enabled ~= nil and type(rule.enabled) ~= "boolean" then
        return "enabled"
    end
    if rule.description ~= nil and not text(rule.description, MAX_TEXT, true) then
        return "description"
    end
    if rule.updated_by ~= nil and not text(rule.updated_by, 128) then
        return "updated_by"
    end
    if rule.updated_at ~= nil and not int(rule.updated_at, 0, MAX_TIME) then
        return "updated_at"
    end
    if kind == "split" then
        return check_split(rule)
    end
    return check_degrade(rule)
end


-- true when the rule can be compiled, else nil, "<field> is invalid".
function _M.check(rule)
    local ok, bad = pcall(check, rule)
    if not ok then
        return nil, "rule cannot be checked: " .. tostring(bad)
    end
    if bad then
        return nil, bad .. " is invalid"
    end
    return true
end


return _M
