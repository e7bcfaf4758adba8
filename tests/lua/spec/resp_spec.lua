-- resp.read_scan: an HSCAN reply read whole off a socket, however the bytes
-- arrive (one at a time, across headers and CRLFs), each value in place.
local resp = require("rulegate.resp")

-- A socket whose receiveany hands out data in pieces of the given sizes
-- (then what is left), then "closed".
local function fake_sock(data, sizes)
    local at, k = 1, 0
    return {
        receiveany = function(_, max)
            if at > #data then
                return nil, "closed"
            end
            k = k + 1
            local n = math.min(sizes and sizes[(k - 1) % #sizes + 1] or #data, max)
            local piece = data:sub(at, at + n - 1)
            at = at + n
            return piece
        end,
    }
end

local function bulk(s)
    return "$" .. #s .. "\r\n" .. s .. "\r\n"
end

local function scan_reply(cursor, pairs_)
    local out = { "*2\r\n", bulk(cursor), "*" .. (2 * #pairs_) .. "\r\n" }
    for _, p in ipairs(pairs_) do
        out[#out + 1] = bulk(p[1])
        out[#out + 1] = bulk(p[2])
    end
    return table.concat(out)
end

local function random_bytes(n)
    local b = {}
    for i = 1, n do
        b[i] = string.char(math.random(0, 255))
    end
    return table.concat(b)
end

return function(t)
    t.it("usable in this nginx (string.buffer and receiveany)", function()
        t.truthy(resp.usable(ngx.socket.tcp()))
    end)

    t.it("encodes a command as a RESP array of bulk strings", function()
        t.eq(resp.encode({ "HSCAN", "{rg:x}:rules", "0", "COUNT", 500 }),
            "*5\r\n$5\r\nHSCAN\r\n$12\r\n{rg:x}:rules\r\n$1\r\n0\r\n$5\r\nCOUNT\r\n$3\r\n500\r\n")
    end)

    t.it("reads HSCAN replies split anywhere: the cursor, the ids, each value in place", function()
        math.randomseed(11)
        for round = 1, 60 do
            local pairs_ = {}
            for i = 1, math.random(0, 30) do
                -- values hold CR, LF and "$" bytes; some are empty
                local v = math.random(0, 5) == 0 and "" or random_bytes(math.random(1, 400)) .. "\r\n$3\r\n"
                pairs_[i] = { "r" .. round .. "." .. i, v }
            end
            local cursor = tostring(math.random(0, 1e6))
            local sizes = { math.random(1, 3), math.random(1, 50), math.random(1, 5000) }
            local st = resp.stream(fake_sock(scan_reply(cursor, pairs_), sizes))
            local r, err = resp.read_scan(st)
            t.truthy(r, err)
            t.eq(r.cursor, cursor)
            t.eq(r.n, #pairs_)
            for i, p in ipairs(pairs_) do
                t.eq(r.ids[i], p[1])
                t.eq(r.s:sub(r.first[i], r.last[i]), p[2])
            end
        end
    end)

    t.it("reads replies back to back off one stream (ASKING's +OK, then the scan)", function()
        local data = "+OK\r\n" .. scan_reply("0", { { "a", "x" } }) .. "-MOVED 12 127.0.0.1:7001\r\n"
        for _, size in ipairs({ 1, 2, 7, #data }) do
            local st = resp.stream(fake_sock(data, { size }))
            t.eq(resp.read_scan(st), "OK")
            local r = resp.read_scan(st)
            t.eq(r.ids[1], "a")
            t.eq(r.s:sub(r.first[1], r.last[1]), "x")
            t.eq(#r.s, #scan_reply("0", { { "a", "x" } })) -- the reply's bytes, not the next one's
            local e = resp.read_scan(st)
            t.eq(e[1], false)
            t.eq(e[2], "MOVED 12 127.0.0.1:7001")
        end
    end)

    t.it("an error reply is {false, message}, as lua-resty-redis gives one in a pipeline", function()
        local r = resp.read_scan(resp.stream(fake_sock("-NOPERM this user has no permissions\r\n", { 3 })))
        t.eq(r[1], false)
        t.eq(r[2], "NOPERM this user has no permissions")
    end)

    t.it("a cut connection or a reply of another shape is an error, never a partial batch", function()
        local whole = scan_reply("7", { { "a", "xyz" }, { "b", "uvw" } })
        for cut = 0, #whole - 1 do
            local r, err = resp.read_scan(resp.stream(fake_sock(whole:sub(1, cut), { 4 })))
            t.eq(r, nil, "cut at " .. cut)
            t.eq(err, "closed")
        end
        for _, bad in ipairs({
            ":5\r\n", "$3\r\nabc\r\n", "*-1\r\n", "*3\r\n", "*2\r\n$1\r\n0\r\n*3\r\n",
            "*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n:1\r\n", "*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$1\r\nxy\r\n",
            "*2\r\n$x\r\n", "*2\r\n$1\r\n0\r\n$-1\r\n",
            -- a field or value whose length is not one: null, signed, not digits, too many digits
            "*2\r\n$1\r\n0\r\n*2\r\n$-1\r\n", "*2\r\n$1\r\n0\r\n*2\r\n$+1\r\na\r\n",
            "*2\r\n$1\r\n0\r\n*2\r\n$1x\r\na\r\n", "*2\r\n$1\r\n0\r\n*2\r\n$\r\n",
            "*2\r\n$1\r\n0\r\n*2\r\n$123456789012\r\n",
            -- a count far past what was sent: an error when the bytes end, no table of that size made
            "*2\r\n$1\r\n0\r\n*2000000000\r\n$1\r\na\r\n$1\r\nb\r\n",
        }) do
            local r, err = resp.read_scan(resp.stream(fake_sock(bad .. "+OK\r\n")))
            t.eq(r, nil, bad)
            t.truthy(err and err ~= "closed", bad)
        end
    end)
end
