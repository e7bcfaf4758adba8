-- Prometheus text exposition of one nginx gateway (all workers together), for
-- location = /rulegate/metrics. Everything comes from the state table
-- rulegate.state() builds from the shared dict: sync state, the exposure counts
-- every worker flushed, the outcome counts and every worker's breaker states.
-- One series per gateway, never per worker (a scrape lands on any worker).

local concat = table.concat
local gsub = string.gsub
local pairs = pairs
local ipairs = ipairs
local sort = table.sort
local tonumber = tonumber
local tostring = tostring
local type = type
local format = string.format

local _M = {}

-- latency histogram bounds in ms (rulegate/outcomes.py LAT_BOUNDS_MS; the last slot is +Inf)
local LAT_BOUNDS_MS = { 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000 }
local CLASS_NAMES = { "failed", "1xx", "2xx", "3xx", "4xx", "5xx" } -- slot 1 = transport failures
local BREAKER_STATES = { "closed", "half_open", "open" }

local ESCAPES = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }


local function label(value)
    return (gsub(tostring(value), '[\\"\n]', ESCAPES))
end


local function num(v)
    if type(v) ~= "number" then
        return nil
    end
    if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
        return format("%d", v)
    end
    return format("%.17g", v)
end


-- A histogram bucket's bound as its `le` label: the shortest decimal that reads
-- back as the same double (0.005, not 0.0050000000000000001: a dashboard's
-- le="0.005" matcher is a string match), as Go's client prints it.
local function le_of(v)
    local s = format("%.15g", v)
    if tonumber(s) ~= v then
        s = format("%.17g", v)
    end
    return s
end


-- A family: HELP and TYPE lines, then its samples (each { labels-string or "", value }).
local function family(out, name, kind, help, samples)
    if #samples == 0 then
        return
    end
    out[#out + 1] = "# HELP " .. name .. " " .. help
    out[#out + 1] = "# TYPE " .. name .. " " .. kind
    for _, s in ipairs(samples) do
        out[#out + 1] = s
    end
end


local function sample(name, labels, value)
    local v = num(value)
    if v == nil then
        return nil
    end
    if labels == "" then
        return name .. " " .. v
    end
    return name .. "{" .. labels .. "} " .. v
end


local function add(list, s)
    if s then
        list[#list + 1] = s
    end
end


local function bool(v)
    if v == true then
        return 1
    elseif v == false then
        return 0
    end
    return nil
end


-- A histogram family of one series: counts per bucket (not cumulative; the
-- last is above every bound), bounds in seconds, sum when kept.
local function histogram(out, name, help, bounds, counts, labels, sum)
    out[#out + 1] = "# HELP " .. name .. " " .. help
    out[#out + 1] = "# TYPE " .. name .. " histogram"
    local running = 0
    for slot, n in ipairs(counts) do
        running = running + n
        local le = bounds[slot] and le_of(bounds[slot]) or "+Inf"
        out[#out + 1] = sample(name .. "_bucket", labels .. ',le="' .. le .. '"', running)
    end
    if sum then
        out[#out + 1] = sample(name .. "_sum", labels, sum)
    end
    out[#out + 1] = sample(name .. "_count", labels, running)
end


-- Return the exposition text of state (rulegate.state()).
function _M.render(state)
    local out = {}
    local ns = 'namespace="' .. label(state.namespace or "") .. '"'

    local gauges = {
        { "rulegate_nginx_revision", "Namespace revision this gateway serves.", state.revision },
        { "rulegate_nginx_rules", "Rules in the served rule set.", state.rules },
        { "rulegate_nginx_in_sync", "1 when the served content digest equals the store's at the last check.",
          bool(state.in_sync) },
        { "rulegate_nginx_stale", "1 when the rules are older than max_stale.", bool(state.stale) },
        { "rulegate_nginx_staleness_seconds", "Seconds since the last successful check against Redis.",
          state.staleness },
        { "rulegate_nginx_payload_pending", "Deltas not yet folded into the payload checkpoint.",
          state.payload_pending },
    }
    for _, g in ipairs(gauges) do
        local list = {}
        add(list, sample(g[1], ns, g[3]))
        family(out, g[1], "gauge", g[2], list)
    end
    local counters = {
        { "rulegate_nginx_checks_total", "Revision checks against Redis.", state.checks },
        { "rulegate_nginx_applies_total", "Rule sets or deltas applied.", state.applies },
        { "rulegate_nginx_full_reloads_total", "Full reloads of the namespace.", state.full_reloads },
        { "rulegate_nginx_deltas_applied_total", "Revision-log entries applied as deltas.", state.deltas_applied },
        { "rulegate_nginx_reloads_skipped_total", "New generations of the held rules (same digest) taken "
          .. "without a full reload.", state.reloads_skipped },
        { "rulegate_nginx_large_deltas_total", "Log deltas of more than a quarter of the rules (and 64) read "
          .. "whole instead.", state.large_deltas },
        { "rulegate_nginx_digest_mismatches_total", "Content digest mismatches that forced a full reload.",
          state.digest_mismatches },
        { "rulegate_nginx_checkpoints_total", "Payload and snapshot checkpoints written.", state.checkpoints },
        { "rulegate_nginx_subscriptions_total", "Sharded subscriptions to the events channel made.",
          state.listener_subscriptions },
        { "rulegate_nginx_subscription_failures_total", "Subscriptions that failed or ended with an error.",
          state.listener_failures },
    }
    for _, c in ipairs(counters) do
        local list = {}
        add(list, sample(c[1], ns, c[3]))
        family(out, c[1], "counter", c[2], list)
    end

    local lag = state.loop_lag
    if type(lag) == "table" and type(lag.late) == "table" then
        histogram(out, "rulegate_nginx_loop_lag_seconds", "How late each worker's event loop ran a timer due every "
            .. "loop_lag_interval: what requests waited behind the loop, all workers.", lag.bounds, lag.late, ns,
            lag.sum)
        histogram(out, "rulegate_nginx_loop_held_seconds", "The same lags, counted when the worker ran for at least "
            .. "half of the lag: its own work held the loop, not the machine.", lag.bounds, lag.held, ns)
    end

    local ex = state.exposure
    if type(ex) == "table" and type(ex.counts) == "table" then
        local list = {}
        for _, e in ipairs(ex.counts) do
            add(list, sample("rulegate_nginx_rule_decisions_total",
                ns .. ',rule="' .. label(e.rule) .. '",target="' .. label(e.target) .. '"', e.count))
        end
        add(list, sample("rulegate_nginx_rule_decisions_total", ns .. ',rule="",target="@other"', ex.other))
        family(out, "rulegate_nginx_rule_decisions_total", "counter",
            'Decisions by rule ("" = pass) and target (upstream or @action), all workers.', list)
    end

    local oc = state.outcomes
    if type(oc) == "table" and type(oc.counts) == "table" then
        local classes, buckets, counts = {}, {}, {}
        for _, e in ipairs(oc.counts) do
            local base = ns .. ',rule="' .. label(e.rule) .. '",upstream="' .. label(e.upstream) .. '"'
            for slot, n in ipairs(e.classes) do
                if n > 0 then
                    add(classes, sample("rulegate_nginx_outcomes_total",
                        base .. ',class="' .. CLASS_NAMES[slot] .. '"', n))
                end
            end
            local running = 0
            for slot, n in ipairs(e.latency) do
                running = running + n
                local le = LAT_BOUNDS_MS[slot] and le_of(LAT_BOUNDS_MS[slot] / 1000) or "+Inf"
                add(buckets, sample("rulegate_nginx_outcome_latency_seconds_bucket", base .. ',le="' .. le .. '"',
                    running))
            end
            add(counts, sample("rulegate_nginx_outcome_latency_seconds_count", base, running))
        end
        family(out, "rulegate_nginx_outcomes_total", "counter",
            "Outcomes of requests of guarded rules and breaker passes, by status class.", classes)
        if #buckets > 0 then
            out[#out + 1] = "# HELP rulegate_nginx_outcome_latency_seconds Latency of those requests "
                .. "(histogram; no _sum is kept)."
            out[#out + 1] = "# TYPE rulegate_nginx_outcome_latency_seconds histogram"
            for _, s in ipairs(buckets) do
                out[#out + 1] = s
            end
            for _, s in ipairs(counts) do
                out[#out + 1] = s
            end
        end
    end

    local br = state.breakers_fleet
    if type(br) == "table" then
        local rules, list = {}, {}
        for rule_id in pairs(br) do
            rules[#rules + 1] = rule_id
        end
        sort(rules)
        for _, rule_id in ipairs(rules) do
            for _, st in ipairs(BREAKER_STATES) do
                add(list, sample("rulegate_nginx_breaker_instances",
                    ns .. ',rule="' .. label(rule_id) .. '",state="' .. st .. '"', br[rule_id][st] or 0))
            end
        end
        family(out, "rulegate_nginx_breaker_instances", "gauge",
            "Breaker instances (one per worker) of a degrade rule in each state.", list)
    end
    out[#out + 1] = ""
    return concat(out, "\n")
end


return _M
