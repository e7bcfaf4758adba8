-- Circuit breakers of degrade rules: the state machine of docs/rules.md ("Breakers"),
-- the same as rulegate/breaker.py (pinned by tests/vectors/breaker.json), and a
-- per-worker registry by rule id fed from log_by_lua.
local floor = math.floor
local pairs = pairs
local setmetatable = setmetatable

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_M.CLOSED, _M.OPEN, _M.HALF_OPEN = CLOSED, OPEN, HALF_OPEN
local FIELDS = { "window", "min_requests", "error_ratio", "slow_ms", "slow_ratio", "open_seconds", "probes" }


local function clear(self)
    self.buckets = {} -- ring of { second, requests, errors, slow } from index head to tail
    self.head, self.tail = 1, 0
    self.requests, self.errors, self.slow = 0, 0, 0
end


-- A closed breaker for a rule's `breaker` object.
function _M.new(cfg)
    local self = setmetatable({ cfg = cfg, state = CLOSED, since = 0, admitted = 0, good = 0 }, mt)
    clear(self)
    return self
end


local function advance(self, t)
    local state = self.state
    if state ~= CLOSED and t >= self.since + self.cfg.open_seconds then
        self.state, self.since, self.admitted, self.good = HALF_OPEN, t, 0, 0
    end
end


local function evict(self, second)
    local buckets, limit = self.buckets, second - self.cfg.window
    while self.head <= self.tail and buckets[self.head][1] <= limit do
        local b = buckets[self.head]
        buckets[self.head] = nil
        self.head = self.head + 1
        self.requests, self.errors, self.slow = self.requests - b[2], self.errors - b[3], self.slow - b[4]
    end
end


local function open(self, t)
    self.state, self.since = OPEN, t
    clear(self)
end


-- true when the rule applies to a request decided at t (open, or half-open beyond the probes).
function _M.admit(self, t)
    advance(self, t)
    local state = self.state
    if state == CLOSED then
        return false
    end
    if state == HALF_OPEN and self.admitted < self.cfg.probes then
        self.admitted = self.admitted + 1
        return false
    end
    return true
end


-- Count the outcome of a request the breaker let through (status 0: a transport failure).
function _M.record(self, t, status, latency_ms)
    advance(self, t)
    local cfg = self.cfg
    local err = cfg.error_ratio ~= nil and (status >= 500 or status == 0)
    local slow = cfg.slow_ratio ~= nil and latency_ms >= cfg.slow_ms
    local state = self.state
    if state == HALF_OPEN then
        if err or slow then
            open(self, t)
        else
            self.good = self.good + 1
            if self.good >= cfg.probes then
                self.state = CLOSED
                clear(self)
            end
        end
        return
    end
    if state == OPEN then
        return
    end
    local second = floor(t)
    evict(self, second)
    local b = self.buckets[self.tail]
    if b == nil or b[1] ~= second then
        b = { second, 0, 0, 0 }
        self.tail = self.tail + 1
        self.buckets[self.tail] = b
    end
    local e, s = err and 1 or 0, slow and 1 or 0
    b[2], b[3], b[4] = b[2] + 1, b[3] + e, b[4] + s
    self.requests, self.errors, self.slow = self.requests + 1, self.errors + e, self.slow + s
    if self.requests >= cfg.min_requests
            and (cfg.error_ratio ~= nil and self.errors / self.requests >= cfg.error_ratio
                 or cfg.slow_ratio ~= nil and self.slow / self.requests >= cfg.slow_ratio) then
        open(self, t)
    end
end


-- The state at t: { state, requests, errors, slow } (the window's counts as of t).
function _M.snapshot(self, t)
    advance(self, t)
    evict(self, floor(t))
    return { state = self.state, requests = self.requests, errors = self.errors, slow = self.slow }
end


-- ---- this worker's breakers by rule id ----------------------------------------------
local by_rule = {}


local function same(a, b)
    for i = 1, #FIELDS do
        if a[FIELDS[i]] ~= b[FIELDS[i]] then
            return false
        end
    end
    return true
end


local function get(rule_id, cfg)
    local b = by_rule[rule_id]
    if b == nil or b.cfg ~= cfg and not same(b.cfg, cfg) then
        b = _M.new(cfg)
        by_rule[rule_id] = b
    end
    return b
end


-- true when rule_id's rule applies at t (its breaker is open, or half-open beyond the probes).
function _M.admit_rule(rule_id, cfg, t)
    return get(rule_id, cfg):admit(t)
end


-- Count one outcome of rule_id's breaker at t.
function _M.record_rule(rule_id, cfg, t, status, latency_ms)
    get(rule_id, cfg):record(t, status, latency_ms)
end


-- Count one outcome of rule_id's breaker at t, if this worker has one (decisions create it).
function _M.report(rule_id, t, status, latency_ms)
    local b = by_rule[rule_id]
    if b then
        b:record(t, status, latency_ms)
    end
end


-- Forget the breakers of rules that are gone from the applied set (routes: id -> route).
function _M.prune(routes)
    for rule_id in pairs(by_rule) do
        if routes[rule_id] == nil then
            by_rule[rule_id] = nil -- assigning nil to a visited field is allowed during pairs()
        end
    end
end


-- Every breaker of this worker at t, by rule id.
function _M.snapshot_all(t)
    local out = {}
    for rule_id, b in pairs(by_rule) do
        out[rule_id] = b:snapshot(t)
    end
    return out
end


return _M
