-- rulegate.mpdecode gives what lua-MessagePack's unpack gives, value and
-- error, for every msgpack type byte and for damaged input: random streams
-- built from every encoding (the ones it decodes and the ones it hands to the
-- library), their truncations, extensions and byte flips, and stored rules.
local mp = require("MessagePack")
local mpdecode = require("rulegate.mpdecode")

local char = string.char
local floor = math.floor

local function be(n, bytes) -- n as `bytes` big-endian bytes
    local out = {}
    for i = bytes, 1, -1 do
        out[i] = char(n % 256)
        n = floor(n / 256)
    end
    return table.concat(out)
end

local DOUBLES = { -- sign/exponent/mantissa bytes: normal, zeros, subnormal, infinities, NaN
    "\x3f\xf0\0\0\0\0\0\0", "\xc0\x09\x21\xfb\x54\x44\x2d\x18", "\0\0\0\0\0\0\0\0", "\x80\0\0\0\0\0\0\0",
    "\0\0\0\0\0\0\0\1", "\x80\x0f\xff\xff\xff\xff\xff\xff", "\x7f\xf0\0\0\0\0\0\0", "\xff\xf0\0\0\0\0\0\0",
    "\x7f\xf8\0\0\0\0\0\0", "\x7f\xef\xff\xff\xff\xff\xff\xff", "\x00\x10\0\0\0\0\0\0", "\x3f\xb9\x99\x99\x99\x99\x99\x9a",
}
local UINT64 = { 0, 1, 2 ^ 32, 2 ^ 40 + 7, 2 ^ 53 - 1, 2 ^ 53, 2 ^ 53 + 1, 2 ^ 60 + 3, 2 ^ 64 - 1 }

local gen -- forward

local function gen_str(depth, kind)
    local n = math.random(0, kind == "fix" and 31 or 40)
    local s = string.rep(char(math.random(32, 126)), n)
    if kind == "fix" then
        return char(0xa0 + n) .. s
    end
    local byte = ({ s8 = 0xd9, s16 = 0xda, s32 = 0xdb, b8 = 0xc4, b16 = 0xc5, b32 = 0xc6 })[kind]
    local width = ({ [0xd9] = 1, [0xc4] = 1, [0xda] = 2, [0xc5] = 2, [0xdb] = 4, [0xc6] = 4 })[byte]
    return char(byte) .. be(n, width) .. s
end

local function gen_container(depth, is_map)
    local n = math.random(0, depth > 2 and 2 or 5)
    local parts = {}
    for i = 1, n do
        if is_map then
            local r = math.random(10)
            parts[#parts + 1] = r == 1 and "\xc0" or r == 2 and "\xcb\x7f\xf8\0\0\0\0\0\0" or r == 3 and "\x01"
                or gen_str(depth, "fix")
        end
        parts[#parts + 1] = gen(depth + 1)
    end
    local width = ({ 0, 2, 4 })[math.random(3)]
    local header
    if width == 0 and n < 16 then
        header = char((is_map and 0x80 or 0x90) + n)
    else
        width = width == 0 and 2 or width
        header = char(is_map and (width == 2 and 0xde or 0xdf) or (width == 2 and 0xdc or 0xdd)) .. be(n, width)
    end
    return header .. table.concat(parts)
end

function gen(depth)
    local r = math.random(depth > 3 and 22 or 26)
    if r == 1 then return char(math.random(0, 0x7f)) end
    if r == 2 then return char(math.random(0xe0, 0xff)) end
    if r == 3 then return ({ "\xc0", "\xc2", "\xc3" })[math.random(3)] end
    if r == 4 then return "\xcc" .. char(math.random(0, 255)) end
    if r == 5 then return "\xcd" .. be(math.random(0, 65535), 2) end
    if r == 6 then return "\xce" .. be(math.random(0, 2 ^ 32 - 1), 4) end
    if r == 7 then return "\xcf" .. be(UINT64[math.random(#UINT64)], 8) end
    if r == 8 then return "\xd0" .. char(math.random(0, 255)) end
    if r == 9 then return "\xd1" .. be(math.random(0, 65535), 2) end
    if r == 10 then return "\xd2" .. be(math.random(0, 2 ^ 32 - 1), 4) end
    if r == 11 then return "\xd3" .. be(math.random(0, 2 ^ 32 - 1), 4) .. be(math.random(0, 2 ^ 32 - 1), 4) end
    if r == 12 then return "\xcb" .. DOUBLES[math.random(#DOUBLES)] end
    if r == 13 then return "\xca\x3f\xc0\0\0" end -- float32
    if r == 14 then return ({ "\xd4\x01\x02", "\xc7\x02\x05ab", "\xd6\x7f\0\0\0\0" })[math.random(3)] end -- ext
    if r == 15 then return "\xc1" end -- never used
    if r <= 22 then
        return gen_str(depth, ({ "fix", "fix", "s8", "s16", "s32", "b8", "b16" })[r - 15])
    end
    return gen_container(depth, r % 2 == 0)
end

-- Same value: numbers bit for bit (NaN equal to NaN, signed zeros apart), tables
-- with the same length and the same pairs() order.
local function same(a, b, path)
    path = path or "value"
    if type(a) ~= type(b) then
        return false, path .. ": " .. type(a) .. " vs " .. type(b)
    end
    if type(a) == "number" then
        if a ~= a and b ~= b then
            return true
        end
        if a ~= b or (a == 0 and 1 / a ~= 1 / b) then
            return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
        end
        return true
    end
    if type(a) ~= "table" then
        return a == b, path
    end
    if #a ~= #b then
        return false, path .. ": length " .. #a .. " vs " .. #b
    end
    local ka, kb = {}, {}
    for k in pairs(a) do ka[#ka + 1] = k end
    for k in pairs(b) do kb[#kb + 1] = k end
    if #ka ~= #kb then
        return false, path .. ": " .. #ka .. " vs " .. #kb .. " keys"
    end
    for i = 1, #ka do
        if ka[i] ~= kb[i] then
            return false, path .. ": key order"
        end
        local ok, where = same(a[ka[i]], b[kb[i]], path .. "." .. tostring(ka[i]))
        if not ok then
            return false, where
        end
    end
    return true
end

local function check(t, s)
    local ok1, v1 = pcall(mp.unpack, s)
    local ok2, v2 = pcall(mpdecode.unpack, s)
    local hex = s:gsub(".", function(c) return string.format("%02x", c:byte()) end)
    t.eq(ok2, ok1, "ok for " .. hex)
    if ok1 then
        local same_value, where = same(v2, v1)
        t.truthy(same_value, "value for " .. hex .. " (" .. tostring(where) .. ")")
    else
        t.eq(tostring(v2), tostring(v1), "error for " .. hex)
    end
    return ok1
end

return function(t)
    t.it("every type byte, alone and with its bytes cut short", function()
        for b = 0, 255 do
            check(t, char(b))
            check(t, char(b) .. "\0\0\0\0\0\0\0\0")
            check(t, char(b) .. "\1\2\3")
        end
        for _, d in ipairs(DOUBLES) do
            check(t, "\xcb" .. d)
        end
        for _, n in ipairs(UINT64) do
            check(t, "\xcf" .. be(n, 8))
            check(t, "\x91\xcf" .. be(n, 8))
        end
        check(t, "")
        check(t, "\x92\x01") -- an array short of an element
        check(t, "\x81\xc0\x01") -- a nil key is skipped
        check(t, "\x81\xa1k\xc0") -- a nil value leaves no key
        check(t, "\x93\x01\xc0\x03") -- a hole in an array
        check(t, "\x94\xc0\xc0\xc0\x04")
    end)

    t.it("random streams of every encoding, their truncations, extensions and byte flips", function()
        math.randomseed(20261130)
        local decoded = 0
        for _ = 1, 3000 do
            local s = gen(0)
            if check(t, s) then
                decoded = decoded + 1
            end
            check(t, s .. char(math.random(0, 255)))
            check(t, s:sub(1, math.random(0, #s - 1)))
            local i = math.random(#s)
            check(t, s:sub(1, i - 1) .. char(math.random(0, 255)) .. s:sub(i + 1))
        end
        t.truthy(decoded > 1000, "most generated streams decode: " .. decoded)
    end)

    t.it("stored rules decode to the library's tables, whole or damaged", function()
        local rules = {
            { id = "r1", kind = "split", route = { host = "a.example.com", path = "/api", methods = { "GET", "POST" } },
              key = { source = "header", name = "x-uid" }, default = "stable",
              policies = { { type = "uid_range", ranges = { { 0, 2 ^ 53 - 1 }, { 10, 99 } }, upstream = "canary" },
                           { type = "percent", buckets = { { upstream = "b", weight = 2500 } },
                             ramp = { start = 1700000000, ["end"] = 1800000000, from = 0, to = 10000, mode = "linear",
                                      guard = { control = "stable", min_requests = 100, window = 60,
                                                max_error_increase = 0.05, on_breach = "revert" } } } } },
            { id = "d1", kind = "degrade", route = { host = "*", path = "/" }, percent = 12.5,
              action = { type = "static", status = 503, body = string.rep("x", 300), headers = { ["X-A"] = "1" } },
              window = { start = 1.5, ["end"] = 2 ^ 40 }, breaker = { window = 10, error_ratio = 0.5 } },
        }
        for _, rule in ipairs(rules) do
            local s = mp.pack(rule)
            t.truthy(check(t, s), "rule decodes")
            for n = 0, #s - 1 do
                check(t, s:sub(1, n))
            end
            for i = 1, #s do
                check(t, s:sub(1, i - 1) .. char((s:byte(i) + 0x41) % 256) .. s:sub(i + 1))
            end
        end
    end)

    t.it("nesting up to and past the decoder's own depth gives the library's tables", function()
        for _, depth in ipairs({ 1, 2, 63, 64, 65, 66, 200 }) do
            for _, open in ipairs({ "\x91", "\x81\xa1k", "\xdc\0\1", "\x82\x01\x02\xa1k" }) do
                check(t, string.rep(open, depth) .. "\xa1v")
                check(t, string.rep(open, depth) .. "\x90")
                check(t, string.rep(open, depth)) -- cut short
            end
        end
    end)

    t.it("at() reads a run of values as the library's cursor does", function()
        math.randomseed(7)
        for _ = 1, 300 do
            local parts = {}
            for i = 1, math.random(1, 6) do
                parts[i] = gen(1)
            end
            local s = table.concat(parts)
            local c = { s = s, i = 1, j = #s, underflow = function() error("missing bytes") end }
            local i = 1
            while c.i <= c.j do
                local ok1, v1 = pcall(mp.unpack_cursor, c)
                local ok2, v2, j = pcall(mpdecode.at, s, i)
                t.eq(ok2, ok1, "ok at " .. i)
                if not ok1 then
                    break
                end
                t.truthy(same(v2, v1), "value at " .. i)
                t.eq(j, c.i, "next index")
                i = j
            end
        end
    end)

    t.it("same_in_python: what Python reads as Lua does, and why not", function()
        local ok = function(v) return (mpdecode.same_in_python(mp.pack(v))) end
        local why = function(raw) return select(2, mpdecode.same_in_python(raw)) end
        t.truthy(ok({ a = "x", percent = 12.5, policies = {}, headers = { ["x-a"] = "v" }, n = 3, b = true }))
        -- 2.0 packed as a float64 under an integer field; the same under percent
        t.eq(why("\x81\xa6status\xcb" .. "\x40\0\0\0\0\0\0\0"), "a float in status, which takes an integer")
        t.eq(select(1, mpdecode.same_in_python("\x81\xa7percent\xcb\x40\0\0\0\0\0\0\0")), true)
        t.eq(why("\x91\xca\x40\0\0\0"), "a float in a list, which takes integers")
        t.eq(why("\x81\xa4body\xc0"), "a null value in body")
        t.eq(why("\x91\xc0"), "a null value")
        t.eq(why("\x81\xa8policies\x80"), "an empty map in policies")
        t.eq(why("\x81\xa7headers\x90"), "an empty list in headers")
        t.eq(why("\x81\xa7headers\xde\0\0"), nil) -- a map16 of 0 entries: a map
        t.eq(why("\x81\xa8policies\xdc\0\0"), nil) -- array16 of 0: a list
        t.eq(why("\x81\x01\xa1x"), "a map key that is not a string")
        t.eq(why("\x81\xa1a\xc4\x01x"), "a binary value")
        t.eq(why("\x81\xa1a\xa2\xc0\xaf"), "a string that is not valid UTF-8")
        t.eq(why("\x81\xa2\xc0\xaf\x01"), "a string that is not valid UTF-8")
        t.eq(why("\x81\xa1a\xd4\x01\x02"), "an ext value")
        t.eq(why("\x82\xa1a\x01"), "missing bytes")
        t.eq(why("\x01\x02"), "extra bytes")
        t.eq(select(1, mpdecode.same_in_python(string.rep("\x91", 40) .. "\x01")), false) -- nested too deep
    end)
    t.it("array_len: the item count of the array a log entry's changes start with", function()
        for _, n in ipairs({ 0, 1, 15, 16, 65535, 65536, 70000 }) do
            local items = {}
            for k = 1, n do
                items[k] = k
            end
            t.eq(mpdecode.array_len(mp.pack(items)), n, "an array of " .. n)
        end
        t.eq(mpdecode.array_len(mp.pack({ a = 1 })), nil, "a map")
        t.eq(mpdecode.array_len(""), nil, "nothing")
        t.eq(mpdecode.array_len("\xdc\x01"), nil, "an array 16 cut short")
        t.eq(mpdecode.array_len(nil), nil, "not a string")
    end)
    t.it("unpack_paused: a log entry's changes decoded a change at a time, as unpack decodes them whole", function()
        local triples = { { "a", false, "x" }, { "b", "y", false }, { "c.d", "\0\1bytes", string.rep("x", 300) } }
        local entry = mp.pack(triples)
        local calls = 0
        local arr = mpdecode.unpack_paused(entry, function() calls = calls + 1 end)
        t.eq(arr, mp.unpack(entry))
        t.eq(calls, 3, "one pause an item")
        t.eq(select(1, pcall(mpdecode.unpack_paused, entry .. "\1", function() end)), false, "extra bytes")
        t.eq(select(1, pcall(mpdecode.unpack_paused, entry:sub(1, -3), function() end)), false, "cut short")
        local record = mp.pack({ to = "v2", rev = 7, changes = { a = "x", b = false } })
        calls = 0
        t.eq(mpdecode.unpack_paused(record, function() calls = calls + 1 end), mp.unpack(record), "a map: unpack's")
        t.eq(calls, 0, "a map is decoded whole")
        t.eq(mpdecode.unpack_paused(mp.pack("text"), function() end), "text", "not a container: unpack's answer")
    end)

    t.it("change_ids collects a log entry's rule ids without decoding its bytes; nil for another shape", function()
        local seen = {}
        local entry = mp.pack({ { "a", false, string.rep("x", 300) }, { "b", "old", false }, { "a", "1", "2" } })
        t.eq(mpdecode.change_ids(entry, seen), 3)
        t.eq(seen, { a = true, b = true })
        t.eq(mpdecode.change_ids(mp.pack({}), {}), 0)
        for _, bad in ipairs({ "", mp.pack({ a = 1 }), mp.pack({ { 1, false, false } }), mp.pack({ {} }),
                                entry:sub(1, -2), "\193" }) do
            t.eq(mpdecode.change_ids(bad, {}), nil, bad)
        end
    end)

    t.it("delta_at reads a published delta as unpack does, each rule's bytes left in place", function()
        math.randomseed(23)
        for round = 1, 40 do
            local changes, n = {}, 0
            for k = 1, math.random(0, 40) do
                local size = ({ 0, 5, 31, 32, 200, 255, 256, 70000 })[math.random(1, 8)]
                local b = {}
                for j = 1, size do
                    b[j] = char(math.random(0, 255))
                end
                changes["r" .. round .. "." .. k] = math.random(0, 4) == 0 and false or table.concat(b)
                n = n + 1
            end
            local raw = mp.pack({ to = "v" .. round, rev = round, gen = "g", changes = changes })
            local d, last = mpdecode.delta_at(raw)
            local count = 0
            for _ in pairs(d.changes) do
                count = count + 1
            end
            t.eq({ d.to, d.rev, d.gen, count }, { "v" .. round, round, "g", n })
            local got = {}
            for id, v in pairs(d.changes) do
                if type(v) == "number" then
                    t.truthy(#changes[id] > 31, "in place: a sized str")
                    got[id] = raw:sub(v, last[id])
                else
                    got[id] = v -- false, or a fixstr (never a rule)
                end
            end
            t.eq(got, changes)
            t.eq(got, mpdecode.unpack(raw).changes)
        end
        local whole = mp.pack({ to = "v", changes = { a = string.rep("x", 300) } })
        t.errors(function() mpdecode.delta_at(whole:sub(1, -2)) end)
        t.errors(function() mpdecode.delta_at(whole .. "\0") end, "extra bytes")
        t.errors(function() mpdecode.delta_at(mp.pack({ 1, 2 })) end, "a delta is a map")
    end)
end
