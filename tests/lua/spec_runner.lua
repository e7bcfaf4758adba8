-- A tiny busted-like runner executed inside nginx: each spec file returns
-- function(t) that registers cases with t.it(name, fn); assertions raise.
local cjson = require("cjson.safe")

local _M = {}

local function fmt(v)
    if type(v) == "table" then
        return cjson.encode(v) or tostring(v)
    end
    return tostring(v)
end

local function deep_eq(a, b)
    if type(a) ~= type(b) then
        return false
    end
    if type(a) ~= "table" then
        return a == b
    end
    for k, v in pairs(a) do
        if not deep_eq(v, b[k]) then
            return false
        end
    end
    for k in pairs(b) do
        if a[k] == nil then
            return false
        end
    end
    return true
end

local function make_t(cases)
    local t = {}
    function t.it(name, fn)
        cases[#cases + 1] = { name = name, fn = fn }
    end
    function t.eq(got, want, msg)
        if not deep_eq(got, want) then
            error((msg and msg .. ": " or "") .. "expected " .. fmt(want) .. ", got " .. fmt(got), 2)
        end
    end
    function t.truthy(v, msg)
        if not v then
            error((msg or "expected a truthy value") .. ", got " .. fmt(v), 2)
        end
    end
    function t.falsy(v, msg)
        if v then
            error((msg or "expected a falsy value") .. ", got " .. fmt(v), 2)
        end
    end
    function t.errors(fn, pattern)
        local ok, err = pcall(fn)
        if ok then
            error("expected an error", 2)
        end
        if pattern and not tostring(err):find(pattern) then
            error("error " .. fmt(err) .. " does not match " .. pattern, 2)
        end
    end
    return t
end

-- Run the spec module `name` (e.g. "spec.crc16_spec"); returns a result table.
_M.deep_eq = deep_eq -- for tests/lua/decide_harness.lua


function _M.run(name, ctx)
    local cases = {}
    package.loaded[name] = nil
    local ok, spec = pcall(require, name)
    if not ok then
        return { passed = {}, failed = { { name = "load " .. name, err = tostring(spec) } } }
    end
    spec(make_t(cases), ctx)
    local res = { passed = {}, failed = {} }
    for _, c in ipairs(cases) do
        local cok, err = xpcall(c.fn, debug.traceback)
        if cok then
            res.passed[#res.passed + 1] = c.name
        else
            res.failed[#res.failed + 1] = { name = c.name, err = tostring(err) }
        end
    end
    return res
end

return _M
