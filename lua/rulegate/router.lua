-- The rule router: compile a rule set once, then decide() per request with no I/O.
-- Mirrors rulegate/evaluator.py exactly; tests/vectors/ pin the semantics.
local iputil = require("rulegate.iputil")
local crc32 = require("rulegate.crc32")
local mpdecode = require("rulegate.mpdecode")

local ngx = ngx
local error = error
local crc_update = crc32.update
local crc_finish = crc32.finish
local parse_ip = iputil.parse
local contains_words = iputil.contains_words
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local floor = math.floor
local sort = table.sort
local sub = string.sub
local find = string.find
local lower = string.lower
local byte = string.byte
local next = next
local rawget = rawget

local getmetatable = getmetatable
local setmetatable = setmetatable
local has_clone, table_clone = pcall(require, "table.clone") -- OpenResty's LuaJIT: a shallow copy in C
local has_nkeys, table_nkeys = pcall(require, "table.nkeys")
local has_new, table_new = pcall(require, "table.new") -- LuaJIT: a table with its parts presized
local new_tab = has_new and table_new or function() return {} end

-- OVERLAY_MIN: a set's exact-host map is an overlay of the hosts deltas changed
-- over a shared base until it holds more than this many and more than an eighth
-- of the base, then it is flattened (with_changes).
-- PENDING_MAX: a route with more rules than this is not left pending; finish()
-- compiles it with the load (yielding between rules), so a first request
-- compiles at most this many rules (~2-3 µs each).
local _M = { _VERSION = "0.1.0", BUCKETS = 10000, OVERLAY_MIN = 64, PENDING_MAX = 32 }

local BUCKETS = 10000
local MAX_UID_DIGITS = 16
local BODILESS = { [204] = true, [205] = true, [304] = true }


-- The running CRC-32 of salt .. ":", computed once per rule at compile time.
local function salt_seed(salt)
    return crc_update(nil, salt .. ":")
end


-- The sticky bucket 0..9999 of a key under a salt seed: crc32(salt .. ":" .. key) % 10000.
local function bucket_from(seed, key)
    return crc_finish(crc_update(seed, key)) % BUCKETS
end


function _M.bucket_of(salt, key)
    return bucket_from(salt_seed(salt), key)
end


local function key_value(source, name, req)
    if source == "ip" then
        local ip = req.ip
        if ip == nil or ip == "" then
            return nil
        end
        return ip
    end
    if source == "request" then
        return req.request_id
    end
    if source == "header" then
        return req.headers[name]
    end
    if source == "cookie" then
        return req.cookies[name]
    end
    return req.args[name]
end


-- guarded: true for a guarded rule (its outcomes count); the field is only
-- set then (a table with four keys takes half the memory of one with five)
local function proxy(upstream, rule_id, rev, guarded)
    local d = { action = "proxy", upstream = upstream, rule_id = rule_id, revision = rev }
    if guarded then
        d.guarded = true
    end
    return d
end


-- A uid key: 1..16 ASCII digits (leading zeros allowed) as a number, else nil.
-- Range bounds are at most 2^53-1, so rounding a 16-digit key above 2^53 can
-- never make it match: the comparison is exact.
local function parse_uid(key)
    local n = #key
    if n == 0 or n > MAX_UID_DIGITS then
        return nil
    end
    for i = 1, n do
        local d = byte(key, i)
        if d < 48 or d > 57 then
            return nil
        end
    end
    return tonumber(key)
end


-- The client IP of the request being decided, parsed once per request string.
local last_ip, last_fam, last_w1, last_w2, last_w3, last_w4

local function client_ip(req)
    local ip = req.ip
    if ip ~= last_ip then
        last_ip = ip
        last_fam, last_w1, last_w2, last_w3, last_w4 = parse_ip(ip)
    end
    return last_fam, last_w1, last_w2, last_w3, last_w4
end


local function set_of(list)
    local s = {}
    for _, v in ipairs(list) do
        s[v] = true
    end
    return s
end


local function ends_with(s, suffix)
    local n = #suffix
    return n <= #s and sub(s, -n) == suffix
end


-- Floor division a // b for b > 0, exact while |a| and |q * b| stay below 2^53:
-- the double quotient is corrected where it rounded onto the wrong integer.
local function fdiv(a, b)
    local q = floor(a / b)
    if q * b > a then
        q = q - 1
    elseif (q + 1) * b <= a then
        q = q + 1
    end
    return q
end


-- The effective total share (0..10000) of a ramp at time now (docs/rules.md "Ramps";
-- rulegate/schema.py ramp_share): integers and floor division only.
local function ramp_share(r, now)
    if now >= r.stop then
        return r.to
    end
    if not (now >= r.start) then -- before the start (or NaN)
        return r.from
    end
    local low = r.from
    local elapsed = floor(now) - r.start
    if r.steps then
        return low + fdiv((r.to - low) * fdiv(elapsed * r.steps, r.span), r.steps)
    end
    return low + fdiv((r.to - low) * elapsed, r.span)
end

-- A stored ramp as ramp_share() reads it.
local function compile_ramp(ramp)
    return { start = ramp.start, stop = ramp["end"], span = ramp["end"] - ramp.start, from = ramp.from,
             to = ramp.to, steps = ramp.mode == "step" and ramp.steps or nil }
end


function _M.ramp_share(ramp, now)
    return ramp_share(compile_ramp(ramp), now)
end


-- A compiled policy is a check c = { match, hit, data... }: c[1](c, key, req)
-- gives its decision or nil. Functions are the module's, never built per
-- rule: a closure per rule kept the JIT off the whole compile loop (LuaJIT
-- does not compile closure creation) and cost an upvalue object per field.
-- A policy's list (edges, ranges, suffixes, networks) is laid out in the check
-- itself, not in tables of its own: fewer objects per rule for every load to
-- allocate and every collection to traverse.

-- percent: c[2] the CRC seed of the salt, then (cumulative weight, decision)
-- pairs from c[3]
local function match_percent(c, key, req)
    local k = key
    if k == nil then
        k = req.ip or ""
    end
    local bucket = bucket_from(c[2], k)
    for i = 3, #c, 2 do
        if bucket < c[i] then
            return c[i + 1]
        end
    end
    return nil
end


-- A percent policy with a ramp (c[3], compile_ramp; c[4] the total weight W),
-- then (cumulative weight, decision) pairs from c[5]: bucket i covers
-- [E*c(i-1)//W, E*c(i)//W) of the effective share E, tested as
-- (bucket+1)*W <= E*c(i) (no division per request).
local function match_ramped(c, key, req)
    local k = key
    if k == nil then
        k = req.ip or ""
    end
    local share = ramp_share(c[3], req.now or ngx.now())
    local bucket = bucket_from(c[2], k)
    if bucket >= share then
        return nil
    end
    local need = (bucket + 1) * c[4]
    for i = 5, #c, 2 do
        if need <= share * c[i] then
            return c[i + 1]
        end
    end
    return nil
end


-- uid_range: c[2] the decision, then (low, high) pairs from c[3]
local function match_range(c, key)
    if key == nil then
        return nil
    end
    local uid = parse_uid(key)
    if uid == nil then
        return nil
    end
    for i = 3, #c, 2 do
        if c[i] <= uid and uid <= c[i + 1] then
            return c[2]
        end
    end
    return nil
end


-- uid_suffix: c[2] the decision, the suffixes from c[3]
local function match_suffix(c, key)
    if key == nil then
        return nil
    end
    for i = 3, #c do
        if ends_with(key, c[i]) then
            return c[2]
        end
    end
    return nil
end


-- ip_cidr: c[2] the decision, the parsed networks from c[3]
local function match_cidr(c, _, req)
    local fam, w1, w2, w3, w4 = client_ip(req)
    if not fam then
        return nil
    end
    for i = 3, #c do
        if contains_words(c[i], fam, w1, w2, w3, w4) then
            return c[2]
        end
    end
    return nil
end


-- header / cookie / arg: c[2] the decision, c[3] the set of values, c[4] the
-- request table ("headers", "cookies", "args"), c[5] the name in it
local function match_value(c, _, req)
    local v = req[c[4]][c[5]]
    if v ~= nil and c[3][v] then
        return c[2]
    end
    return nil
end


local FIELDS = { header = "headers", cookie = "cookies", arg = "args" }


-- Where a percent check's (cumulative weight, decision) pairs start: after the
-- match function and seed, and for a ramped one also the ramp and total weight.
local function pairs_from(ramped)
    return ramped and 5 or 3
end


-- Build the decisions of a cold split (compile_split) in place: each check's
-- upstream name (a percent check's every second slot from its pairs' start,
-- any other check's c[2]) and the default become proxy decisions. Items are
-- shared by the sets a delta or a reload derives; a decision does not depend
-- on the set (decide() stamps the revision), so warming is done once per item.
local function warm(split)
    local id, guarded = split.rule_id, split.guarded
    for j = 4, #split do
        local c = split[j]
        local m = c[1]
        if m == match_percent or m == match_ramped then
            for k = pairs_from(m == match_ramped) + 1, #c, 2 do -- each pair's decision
                c[k] = proxy(c[k], id, 0, guarded)
            end
        else
            c[2] = proxy(c[2], id, 0, guarded)
        end
    end
    split[3] = proxy(split[3], id, 0, guarded)
end


local function compile_policy(p, rule_id)
    local ptype = p.type
    if ptype == "percent" then
        local seed, buckets = salt_seed(p.salt or rule_id), p.buckets
        local ramped = p.ramp ~= nil
        local first = pairs_from(ramped)
        local c = new_tab(first - 1 + 2 * #buckets, 0)
        c[1], c[2] = ramped and match_ramped or match_percent, seed
        local total = 0
        for i, b in ipairs(buckets) do
            total = total + b.weight
            c[first + 2 * (i - 1)], c[first + 2 * i - 1] = total, b.upstream
        end
        if ramped then
            c[3], c[4] = compile_ramp(p.ramp), total
        end
        return c
    end
    local hit = p.upstream -- its decision once the split is warm
    if ptype == "uid_range" then
        local ranges = p.ranges
        local c = new_tab(2 + 2 * #ranges, 0)
        c[1], c[2] = match_range, hit
        for i, r in ipairs(ranges) do
            c[1 + 2 * i], c[2 + 2 * i] = r[1], r[2]
        end
        return c
    end
    if ptype == "uid_suffix" or ptype == "ip_cidr" then
        local list = ptype == "uid_suffix" and p.suffixes or p.cidrs
        local c = new_tab(2 + #list, 0)
        c[1], c[2] = ptype == "uid_suffix" and match_suffix or match_cidr, hit
        for i, v in ipairs(list) do
            c[2 + i] = ptype == "uid_suffix" and v or assert(iputil.parse_cidr(v))
        end
        return c
    end
    local name = p.name
    if ptype == "header" then
        name = lower(name)
    end
    return { match_value, hit, set_of(p.values), FIELDS[ptype] or "args", name }
end

local function key_name(key)
    local name = key.name or ""
    if key.source == "header" then
        return lower(name)
    end
    return name
end


local function compile_split(rule)
    local guarded -- any percent policy's ramp has a guard (docs/rules.md "Outcome counts")
    for _, p in ipairs(rule.policies or {}) do
        if type(p.ramp) == "table" and p.ramp.guard ~= nil then
            guarded = true
        end
    end
    -- The split's array part: split[1] its key's source, split[2] the key's name
    -- ("" when none), split[3] its default, then the policies' checks from
    -- split[4]. Its hash holds what every item has (rule_id, and host, path, sig
    -- as the set and sync add them: 4 keys, a hash of 4 slots) and the optional
    -- fields, set only when present (methods, guarded; windowed, start, end).
    -- A split is compiled cold: its checks and default hold upstream names, and
    -- warm() builds their decisions the first time the split decides a request
    -- (two to five tables a rule that a load, a delta and every collection of a
    -- set would otherwise make or traverse for rules no request has reached).
    local policies = rule.policies or {}
    local split = new_tab(3 + #policies, 4)
    split[1], split[2], split[3] = rule.key.source, key_name(rule.key), rule.default
    for i, p in ipairs(policies) do
        split[3 + i] = compile_policy(p, rule.id)
    end
    split.rule_id = rule.id
    if guarded then
        split.guarded = true
    end
    local window = rule.window
    if window ~= nil then
        split.windowed, split.start, split["end"] = true, window.start, window["end"]
    end
    return split
end


local function action_decision(action, rule_id, rev)
    local atype = action.type
    if atype == "upstream" then
        return proxy(action.upstream, rule_id, rev)
    end
    if atype == "static" then
        local headers = {}
        if not BODILESS[action.status] then
            headers["Content-Type"] = action.content_type or "text/plain; charset=utf-8"
        end
        for k, v in pairs(action.headers or {}) do
            headers[k] = v
        end
        return { action = "respond", status = action.status, headers = headers,
                 body = action.body or "", rule_id = rule_id, revision = rev }
    end
    if atype == "redirect" then
        return { action = "redirect", status = action.status or 302,
                 headers = { Location = action.location }, body = "",
                 location = action.location, rule_id = rule_id, revision = rev }
    end
    local headers = {}
    if action.retry_after ~= nil then
        headers["Retry-After"] = tostring(action.retry_after)
    end
    return { action = "respond", status = action.status or 503, headers = headers, body = "",
             rule_id = rule_id, revision = rev }
end


local function compile_degrade(rule, rev)
    local window = rule.window or {}
    local key = rule.key or { source = "request" }
    local percent = rule.percent
    if percent == nil then
        percent = 100
    end
    local degrade = {
        rule_id = rule.id, edge = floor(percent * 100 + 0.5),
        source = key.source, name = key_name(key), seed = salt_seed(rule.salt or rule.id),
        decision = action_decision(rule.action, rule.id, rev),
    }
    degrade.start, degrade["end"], degrade.breaker = window.start, window["end"], rule.breaker -- when set
    return degrade
end


local function degrade_applies(d, req, now)
    if d.start ~= nil and now < d.start then
        return false
    end
    if d["end"] ~= nil and now >= d["end"] then
        return false
    end
    if d.edge >= BUCKETS then
        return true
    end
    if d.edge <= 0 then
        return false
    end
    local key = key_value(d.source, d.name, req)
    if key == nil then
        key = req.ip or ""
    end
    return bucket_from(d.seed, key) < d.edge
end


-- A split rule with a window is skipped outside it (as a degrade rule's window).
local function split_active(s, req)
    local now = req.now or ngx.now()
    if s.start ~= nil and now < s.start then
        return false
    end
    return s["end"] == nil or now < s["end"]
end


local function longest_first(a, b)
    return a > b
end


local function by_rule_id(a, b)
    return a.rule_id < b.rule_id
end


local function methods_set(route)
    local m = route.methods
    if type(m) ~= "table" or #m == 0 then
        return nil
    end
    return set_of(m)
end


-- The methods some rule of a route accepts: nil when one of them accepts any method.
local function accepted_methods(route)
    local set
    local list = route.degrades
    for _ = 1, 2 do
        for i = 1, #list do
            local methods = list[i].methods
            if methods == nil then
                return nil
            end
            set = set or {}
            for m in pairs(methods) do
                set[m] = true
            end
        end
        list = route -- its splits
    end
    return set or {}
end


-- A route is { degrades = list, accepts = set or nil, split, split, ... }: its
-- splits are its own array part (one table fewer a route).

-- The degrades list of routes without degrade rules (most routes): shared and
-- never appended to; a route's own list is made by its first degrade rule.
local NONE = setmetatable({}, { __newindex = function() error("router.NONE is read-only", 2) end })


-- Append a degrade item to a route's list (its own, made on the first).
local function add_degrade(route, item)
    local list = route.degrades
    if list == NONE then
        list = {}
        route.degrades = list
    end
    list[#list + 1] = item
end

-- Where a rule sits: its route {host, path}, or for a degrade rule of scope
-- namespace NS_PLACE (host "": no request's route; decide() tries the rules
-- there before routing, docs/rules.md "Namespace scope").
local NS_PLACE = setmetatable({ host = "", path = "/" },
                              { __newindex = function() error("router.NS_PLACE is read-only", 2) end })

local function place_of(rule)
    if rule.scope ~= nil then
        return NS_PLACE
    end
    return rule.route
end
_M.place_of = place_of


-- Compile one enabled rule into its route's degrades or splits (each item's
-- methods: the set it accepts, nil for any; route: the rule's, for add_compiled).
local function add_rule(route, rule, rev)
    local item
    if rule.kind == "split" then
        item = compile_split(rule)
        route[#route + 1] = item
    else
        item = compile_degrade(rule, rev)
        add_degrade(route, item)
    end
    -- the route's host and path, not the decoded route table: one table fewer a
    -- rule (an item stands for its route wherever {host, path} is read)
    local place = place_of(rule)
    item.methods, item.host, item.path = methods_set(rule.route), place.host, place.path
    return item
end


-- A route's accepted methods (accepted_methods). nil, most routes' value, is
-- not stored where the route has none: in LuaJIT a nil stored under a new key
-- takes a hash slot too, and the route's hash part would double.
local function set_accepts(route)
    local accepts = accepted_methods(route)
    if accepts ~= nil or route.accepts ~= nil then
        route.accepts = accepts
    end
end


-- A built route's degrades and splits sorted, its accepted methods set, an
-- empty degrades list shared.
local function finish_route(route)
    local n = #route.degrades
    if n == 0 then
        route.degrades = NONE
    elseif n > 1 then
        sort(route.degrades, by_rule_id)
    end
    if #route > 1 then
        sort(route, by_rule_id)
    end
    if not route.pending then -- a pending route's methods are known once it is compiled
        set_accepts(route)
    end
end


-- Pending items. A gateway worker that loads a set another worker of the same
-- gateway already checked and compiled (sync.compile_current: the shared
-- payload's rules) places each rule in its route without compiling it: a
-- pending item {false, stored bytes, kind; rule_id, host, path, sig}. The first
-- request that reaches a route with pending items (route.pending) compiles them in
-- place (compile_route): each becomes the item add() would have made from the
-- same bytes, so every set sharing it sees it compiled, and the route gets its
-- accepted methods. A full load then costs O(rules) placements, and each
-- route's compile is paid once, by its first request (docs/design.md).

-- True while item is pending (not compiled yet).
local function is_pending(item)
    return item[1] == false
end
_M.is_pending = is_pending


-- Compile a pending item in place (the bytes decoded; this gateway checked them).
local function compile_pending(item)
    local raw, kind, first, last = item[2], item[3], item[4], item[5]
    local rule
    if first then -- bytes first..last of raw, a payload chunk (add_pending)
        local nxt
        rule, nxt = mpdecode.at(raw, first)
        if nxt ~= last + 1 then
            error("pending rule " .. tostring(item.rule_id) .. " does not decode to its index entry", 0)
        end
    else
        rule = mpdecode.unpack(raw)
    end
    local route_of = type(rule) == "table" and rule.route
    local place = type(route_of) == "table" and place_of(rule)
    if not place or rule.id ~= item.rule_id or rule.kind ~= kind or place.host ~= item.host
        or place.path ~= item.path or rule.enabled == false then
        error("pending rule " .. tostring(item.rule_id) .. " does not decode to its index entry", 0)
    end
    local compiled = kind == "split" and compile_split(rule) or compile_degrade(rule, 0)
    item[1], item[2], item[3], item[4], item[5] = nil, nil, nil, nil, nil -- a split's array part is set again below
    for k, v in pairs(compiled) do
        item[k] = v
    end
    local methods = methods_set(route_of)
    if methods ~= nil then -- (as in set_accepts: a nil under a new key takes a slot)
        item.methods = methods
    end
end


-- A pending item whose compile fails: a rule this gateway's check passed
-- that the router cannot compile (a bug: the acceptance tests compile every
-- rule the check accepts), or bytes that no longer match their index entry.
-- Said by on_compile_failure(rule id, error) (at ERR, once per item) and
-- counted (compile_failures: /rulegate/status, this worker's); its route
-- leaves it out, so its other rules still apply and no request fails for it.
_M.compile_failures = 0
function _M.on_compile_failure(rule_id, err)
    ngx.log(ngx.ERR, "rulegate: rule ", tostring(rule_id), " does not compile; its route leaves it out: ",
            tostring(err))
end


-- list (an array: a route's degrades, or the route itself for its splits)
-- without the items of set gone, in place
local function drop_items(list, gone)
    local n, j = #list, 0
    for i = 1, n do
        local item = list[i]
        if not gone[item] then
            j = j + 1
            list[j] = item
        end
    end
    for i = n, j + 1, -1 do
        list[i] = nil
    end
end


-- Compile a route's pending items in place and set its accepted methods;
-- pause, when given, is called before each item is looked at (a request
-- served meanwhile may compile an item this route shares with its set).
local function compile_route(route, pause)
    local list = route.degrades
    for _ = 1, 2 do
        local gone
        for i = 1, #list do
            if pause then
                pause()
            end
            local item = list[i]
            if is_pending(item) then
                local ok, err = pcall(compile_pending, item)
                if not ok then
                    gone = gone or {}
                    gone[item] = true
                    if not item.failed then -- an item shared by several sets is said once
                        item.failed = true
                        _M.compile_failures = _M.compile_failures + 1
                        pcall(_M.on_compile_failure, item.rule_id, err)
                    end
                end
            end
        end
        if gone then
            drop_items(list, gone)
        end
        list = route -- its splits
    end
    route.pending = nil
    set_accepts(route)
end


-- A rule set built one rule at a time: new_set(revision), add(rs, rule) for
-- every (validated, normalised) rule, then finish(rs, pause). Callers that
-- decode rules one by one add each as it is decoded, so the decoded rules are
-- garbage as soon as they are compiled instead of all held until the compile.
function _M.new_set(revision)
    local rev = revision or 0
    return {
        revision = rev, exact = {}, wildcard = {}, any_host = nil, count = 0,
        pass = { action = "pass", revision = rev },
        revision_text = tostring(rev), -- for the response header, built once
        building = {}, -- the host indexes made so far (finish() completes them)
    }
end


-- (table name, key) of a route host: "exact"/host, "wildcard"/".domain", "any"/"",
-- "ns"/"" (NS_PLACE's host "").
local function host_slot(host)
    if host == "" then
        return "ns", ""
    end
    if host == "*" then
        return "any", ""
    end
    if byte(host, 1) == 42 and byte(host, 2) == 46 then -- "*."
        return "wildcard", sub(host, 2)
    end
    return "exact", host
end


local function get_index(rs, tab, key)
    if tab == "any" then
        return rs.any_host
    elseif tab == "ns" then
        return rs.ns
    end
    return rs[tab][key] or nil -- false: removed in an overlay
end


local function set_index(rs, tab, key, index)
    if tab == "any" then
        rs.any_host = index
    elseif tab == "ns" then
        rs.ns = index
    elseif tab == "exact" then
        rs.exact[key] = index or false -- an overlay's own entry hides the base's
    else
        rs[tab][key] = index
    end
end


-- The route table of a set being built for a rule route {host, path}
-- (place_of: host "" is the namespace-scope degrade rules' index, rs.ns).
local function route_for(rs, rule_route)
    local tab, key = host_slot(rule_route.host)
    local index = get_index(rs, tab, key)
    if not index then
        index = { by_path = {} }
        set_index(rs, tab, key, index)
        rs.building[#rs.building + 1] = index
    end
    local path = rule_route.path
    local route = index.by_path[path]
    if not route then
        route = { degrades = NONE }
        index.by_path[path] = route
    end
    return route
end


-- Compile one rule into the set; returns its compiled item (nil when disabled).
function _M.add(rs, rule)
    rs.count = rs.count + 1
    if rule.enabled == false then
        return nil
    end
    return add_rule(route_for(rs, place_of(rule)), rule, rs.revision)
end


-- Add a compiled item of another set (items()): what add() of the rule it was
-- compiled from would add (items do not depend on the set's revision: decide()
-- sets it on the decision it returns).
function _M.add_compiled(rs, item)
    rs.count = rs.count + 1
    local route = route_for(rs, item) -- its host and path
    local pending = is_pending(item)
    if pending then
        route.pending = true
    end
    -- a pending item has its kind; a compiled degrade rule has its decision
    if (pending and item[3] == "split") or (not pending and item.decision == nil) then
        route[#route + 1] = item
    else
        add_degrade(route, item)
    end
end


-- Add an enabled rule of stored bytes raw (checked and compiled by this
-- gateway: see "Pending items") pending, placed by its host, path and kind
-- (mpdecode.route_of); sig: the SHA-1 of its bytes (sync). With first, last:
-- its bytes are raw:sub(first, last), raw a payload chunk the item keeps
-- until its route compiles it (no string of each rule's bytes: snapshot.each_rule_at).
-- Returns the item.
function _M.add_pending(rs, id, raw, sig, host, path, kind, first, last)
    local item = new_tab(first and 5 or 4, 4) -- a split of one policy fills the same slots when compiled
    item[1], item[2], item[3] = false, raw, kind
    if first then
        item[4], item[5] = first, last
    end
    item.rule_id, item.host, item.path, item.sig = id, host, path, sig
    _M.add_compiled(rs, item)
    return item
end


local function copy(t)
    local out = {}
    if t then
        for k, v in pairs(t) do
            out[k] = v
        end
    end
    return out
end

local clone = has_clone and table_clone or copy

local nkeys = has_nkeys and table_nkeys or function(t)
    local n = 0
    for _ in pairs(t) do
        n = n + 1
    end
    return n
end


-- A set's exact-host map (host -> index) is flat, or an overlay: its own
-- entries are the hosts deltas changed since the last flattening (an index, or
-- false: the host has no route any more), its metatable's __index the flat map
-- they change (shared, never modified). A delta copies the overlay, O(changed
-- hosts), not the map, O(hosts); find_route reads through it (false is no
-- index). base_n: the flat map's size.
local function exact_overlay(rs)
    local cur = rs.exact
    local mt = getmetatable(cur)
    if mt then
        return setmetatable(copy(cur), mt), rs.exact_base_n
    end
    return setmetatable({}, { __index = cur }), rs.exact_base_n or nkeys(cur)
end


-- The map an overlay stands for, flat, and its size.
local function flatten(map)
    local flat = clone(getmetatable(map).__index)
    for host, index in pairs(map) do
        flat[host] = index or nil
    end
    return flat, nkeys(flat)
end


-- fn(index) for every index of an exact-host map, flat or overlay.
local function each_exact(map, fn)
    local mt = getmetatable(map)
    for _, index in pairs(map) do
        if index then
            fn(index)
        end
    end
    if mt then
        for host, index in pairs(mt.__index) do
            if rawget(map, host) == nil then
                fn(index)
            end
        end
    end
end


-- id -> compiled item of every enabled rule of a set (disabled rules have
-- none); pause, when given, is called between routes.
function _M.items(rs, pause)
    local out = new_tab(0, rs.count or 0) -- presized: no rehash as it fills
    local function from(index)
        for _, route in pairs(index.by_path) do
            if pause then
                pause()
            end
            local list = route.degrades
            for _ = 1, 2 do
                for i = 1, #list do
                    local item = list[i]
                    out[item.rule_id] = item
                end
                list = route -- its splits
            end
        end
    end
    each_exact(rs.exact, from)
    for _, index in pairs(rs.wildcard) do
        from(index)
    end
    if rs.any_host then
        from(rs.any_host)
    end
    if rs.ns then
        from(rs.ns)
    end
    return out
end


-- The set add() built, ready to decide(); pause as in compile().
function _M.finish(rs, pause)
    local indexes = rs.building
    rs.building = nil
    for _, index in ipairs(indexes) do
        local seen, lengths = {}, {}
        for path, route in pairs(index.by_path) do
            if pause then
                pause()
            end
            if not seen[#path] then
                seen[#path] = true
                lengths[#lengths + 1] = #path
            end
            finish_route(route)
            if route.pending and #route.degrades + #route > _M.PENDING_MAX then
                compile_route(route, pause) -- not left to a request (PENDING_MAX)
            end
        end
        sort(lengths, longest_first)
        index.lengths = lengths
    end
    return rs
end


-- Compile a list of (validated, normalised) rules at a revision into a rule set;
-- pause, when given, is called between rules (a cooperative yield).
function _M.compile(rules, revision, pause)
    local rs = _M.new_set(revision)
    for _, rule in ipairs(rules) do
        if pause then
            pause()
        end
        _M.add(rs, rule)
    end
    return _M.finish(rs, pause)
end


local function without(items, ids, out)
    out = out or {}
    for i = 1, #items do
        if not ids[items[i].rule_id] then
            out[#out + 1] = items[i]
        end
    end
    return out
end


-- A new rule set: rs with `changes` (id -> new rule, or false when removed)
-- applied at `revision`; `before` maps ids to the routes of the rules rs was
-- compiled from (only the changed ids are read). Copy-on-write: the routes the changes touch
-- are rebuilt, everything else is shared with rs, which is not modified. It
-- decides exactly as compile() of the whole new set would (tests/lua).
-- pause, when given, is called before each change and each touched route (a
-- cooperative yield: sync.pauser; rs and changes must not change meanwhile).
function _M.with_changes(rs, before, changes, revision, pause)
    local rev = revision or 0
    local exact, base_n = exact_overlay(rs)
    local new = {
        revision = rev, exact = exact, exact_base_n = base_n, wildcard = copy(rs.wildcard),
        any_host = rs.any_host, count = rs.count, pass = { action = "pass", revision = rev },
        revision_text = tostring(rev), generation = rs.generation, ns = rs.ns,
    }
    local touched, ids = {}, {} -- "tab\0key" -> { tab, key, paths = {path = true} }
    local function touch(route)
        local tab, key = host_slot(route.host)
        local slot = tab .. "\0" .. key
        local t = touched[slot]
        if not t then
            t = { tab = tab, key = key, paths = {} }
            touched[slot] = t
        end
        t.paths[route.path] = true
    end
    local ns_ids = {} -- the rules of scope namespace rs holds (whatever `before` says of their place)
    local ns_route = rs.ns and rs.ns.by_path["/"]
    if ns_route then
        for i = 1, #ns_route.degrades do
            ns_ids[ns_route.degrades[i].rule_id] = true
        end
    end
    for id, after in pairs(changes) do
        if pause then
            pause()
        end
        ids[id] = true
        local old = before[id]
        if old then
            touch(old)
            new.count = new.count - 1
        end
        if ns_ids[id] then
            touch(NS_PLACE)
        end
        if after then
            touch(place_of(after))
            new.count = new.count + 1
        end
    end
    for _, t in pairs(touched) do
        local old = get_index(rs, t.tab, t.key)
        local index = { by_path = copy(old and old.by_path) }
        for path in pairs(t.paths) do
            if pause then
                pause()
            end
            local route = index.by_path[path]
            if route then
                if route.pending then
                    compile_route(route) -- its items are copied into the route rebuilt here
                end
                index.by_path[path] = without(route, ids, { degrades = without(route.degrades, ids) })
            else
                index.by_path[path] = { degrades = NONE }
            end
        end
        set_index(new, t.tab, t.key, index)
    end
    for _, after in pairs(changes) do
        if pause then
            pause()
        end
        if after and after.enabled ~= false then
            local place = place_of(after)
            local tab, key = host_slot(place.host)
            add_rule(get_index(new, tab, key).by_path[place.path], after, rev)
        end
    end
    for _, t in pairs(touched) do
        local index = get_index(new, t.tab, t.key)
        for path in pairs(t.paths) do
            local route = index.by_path[path]
            if #route.degrades == 0 and #route == 0 then
                index.by_path[path] = nil
            else
                finish_route(route)
            end
        end
        local seen, lengths = {}, {}
        for path in pairs(index.by_path) do
            if not seen[#path] then
                seen[#path] = true
                lengths[#lengths + 1] = #path
            end
        end
        if #lengths == 0 then
            set_index(new, t.tab, t.key, nil)
        else
            sort(lengths, longest_first)
            index.lengths = lengths
        end
    end
    local own = nkeys(exact)
    if own > _M.OVERLAY_MIN and own * 8 > base_n then
        new.exact, new.exact_base_n = flatten(exact) -- O(hosts), after at least OVERLAY_MIN changed hosts
    end
    return new
end


-- The route of path prefix length n, when the request matches it.
local function route_at(by_path, path, plen, n, req)
    if plen >= n then
        local route = by_path[sub(path, 1, n)]
        if route ~= nil then
            if route.pending then -- its first request: compiled now (see "Pending items")
                compile_route(route)
            end
            local accepts = route.accepts
            if accepts == nil or accepts[req.method] then
                return route
            end
        end
    end
    return nil
end


-- The first four lengths are tried without a loop: a loop here, looping on every
-- request, gets a trace of its own, and LuaJIT then stops each trace of the
-- request path at it (jit.v: "inner loop in root trace"), leaving the rest of
-- the request to the interpreter.
local function route_in(index, req)
    local path = req.path
    local plen = #path
    local by_path = index.by_path
    local lengths = index.lengths
    local count = #lengths
    if count == 0 then
        return nil
    end
    local route = route_at(by_path, path, plen, lengths[1], req)
    if route ~= nil or count == 1 then
        return route
    end
    route = route_at(by_path, path, plen, lengths[2], req)
    if route ~= nil or count == 2 then
        return route
    end
    route = route_at(by_path, path, plen, lengths[3], req)
    if route ~= nil or count == 3 then
        return route
    end
    route = route_at(by_path, path, plen, lengths[4], req)
    if route ~= nil or count == 4 then
        return route
    end
    for i = 5, count do
        route = route_at(by_path, path, plen, lengths[i], req)
        if route ~= nil then
            return route
        end
    end
    return nil
end


-- The most specific route matching the request, or nil.
function _M.find_route(rs, req)
    local host = req.host
    local index = rs.exact[host]
    if index then
        local route = route_in(index, req)
        if route then
            return route
        end
    end
    if next(rs.wildcard) ~= nil then
        local dot = find(host, ".", 1, true)
        while dot do
            index = rs.wildcard[sub(host, dot)]
            if index then
                local route = route_in(index, req)
                if route then
                    return route
                end
            end
            dot = find(host, ".", dot + 1, true)
        end
    end
    if rs.any_host then
        return route_in(rs.any_host, req)
    end
    return nil
end


-- The decision for one request. req = {host, path, method, ip, now, headers,
-- cookies, args}; headers are keyed by lowercase name. Never raises on request content.
-- A degrade rule with a breaker applies when breakers.admit_rule(id, cfg, now) says so
-- (rulegate.breaker; without breakers, never); a request it lets through on to the
-- splits or pass gets req.breaker = its rule id (the outcome to report).
function _M.decide(rs, req, breakers)
    local ns = rs.ns
    if ns ~= nil then -- degrade rules of scope namespace, before routing (no breaker: the schema refuses one)
        local route = ns.by_path["/"]
        if route ~= nil then
            if route.pending then
                compile_route(route)
            end
            local degrades = route.degrades
            local now = req.now or ngx.now()
            for i = 1, #degrades do
                local dg = degrades[i]
                local methods = dg.methods
                if (methods == nil or methods[req.method]) and degrade_applies(dg, req, now) then
                    local d = dg.decision
                    d.revision = rs.revision
                    return d
                end
            end
        end
    end
    local route = _M.find_route(rs, req)
    if route == nil then
        return rs.pass
    end
    local degrades = route.degrades
    if #degrades > 0 then
        local now = req.now or ngx.now()
        local passed
        for i = 1, #degrades do
            local item = degrades[i]
            local dg = item
            local methods = item.methods -- req.method is read only where a rule needs it (nginx: a call)
            if (methods == nil or methods[req.method]) and degrade_applies(dg, req, now) then
                if dg.breaker ~= nil and not (breakers and breakers.admit_rule(dg.rule_id, dg.breaker, now)) then
                    passed = passed or dg.rule_id
                else
                    local d = dg.decision
                    d.revision = rs.revision -- shared with the sets with_changes() derived
                    return d
                end
            end
        end
        if passed ~= nil or rawget(req, "breaker") ~= nil then -- no nil stored into a missing key (request.build)
            req.breaker = passed
        end
    end
    for i = 1, #route do -- its splits
        local item = route[i]
        local split = item
        local methods = item.methods
        if (methods == nil or methods[req.method]) and (not split.windowed or split_active(split, req)) then
            if type(split[3]) == "string" then -- cold: no request reached it yet
                warm(split)
            end
            local key = key_value(split[1], split[2], req)
            for j = 4, #split do -- the policies' checks
                local c = split[j]
                local hit = c[1](c, key, req)
                if hit ~= nil then
                    hit.revision = rs.revision
                    return hit
                end
            end
            local d = split[3] -- the default
            d.revision = rs.revision
            return d
        end
    end
    return rs.pass
end


_M.parse_uid = parse_uid

return _M
