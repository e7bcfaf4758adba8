local payload = require("rulegate.payload")
local snapshot = require("rulegate.snapshot")

local dict = ngx.shared.rulegate -- the spec harness's 4m dict

local function empty()
    dict:flush_all()
    dict:flush_expired()
end

-- a rule set whose every value names the version it belongs to
local function rules_of(version, n)
    local raw = {}
    for i = 1, n do
        raw["r" .. i] = version .. "/r" .. i
    end
    return raw
end

local function meta(version)
    return { ver = version, namespace = "prod", generation = "g", revision = 1, written_at = 9 }
end

local function chunk_keys()
    local n = 0
    for _, key in ipairs(dict:get_keys(0)) do
        if key:find("^rs:pc:") then
            n = n + 1
        end
    end
    return n
end

return function(t)
    t.it("what is written reads back whole, in chunks of at most CHUNK rules", function()
        empty()
        local raw = rules_of("v1", 600)
        local head, chunks = assert(payload.write(dict, meta("v1"), raw))
        t.eq({ head.ver, head.count, head.n, #chunks }, { "v1", 600, 3, 3 })
        local got = {}
        local read = assert(payload.read(dict, function(id, value)
            got[id] = value
            return true
        end))
        t.eq(read.id, head.id)
        t.eq(got, raw)
    end)

    t.it("a reader sees one whole version while writes replace the payload, or is told to retry", function()
        empty()
        local saved = payload.CHUNK
        payload.CHUNK = 3 -- many chunks: many yields inside one read
        local yield = function() ngx.sleep(0) end
        assert(payload.write(dict, meta("v0"), rules_of("v0", 20), yield))
        local done, whole, retried, mixed = false, 0, 0, {}
        local function reader()
            while not done do
                local seen, n = nil, 0
                local head, err, retry = payload.read(dict, function(_, value)
                    local version = value:match("^(v%d+)/")
                    seen = seen or version
                    if version ~= seen then
                        mixed[#mixed + 1] = seen .. " and " .. version
                    end
                    n = n + 1
                    return true
                end, yield)
                if head then
                    if seen ~= head.ver or n ~= head.count then
                        mixed[#mixed + 1] = tostring(seen) .. " read under header " .. head.ver
                    end
                    whole = whole + 1
                else
                    t.eq(retry, true, err)
                    retried = retried + 1
                end
            end
        end
        local threads = { ngx.thread.spawn(reader), ngx.thread.spawn(reader), ngx.thread.spawn(reader) }
        for v = 1, 40 do
            assert(payload.write(dict, meta("v" .. v), rules_of("v" .. v, 20), yield))
            if v % 3 == 0 then
                ngx.sleep(0)
            end
        end
        done = true
        for _, th in ipairs(threads) do
            assert(ngx.thread.wait(th))
        end
        payload.CHUNK = saved
        t.eq(mixed, {})
        t.eq(whole > 0, true) -- and retried > 0 here: reads overlap two writes
        -- only the current payload's chunks and the previous one's (kept for readers) remain
        t.eq(chunk_keys(), 2 * 7)
    end)

    t.it("an earlier release's one-value payload (a SIGHUP onto this one) reads until the first write", function()
        empty()
        dict:set("rs:payload", snapshot.encode_payload("prod", "g", 4, 9, rules_of("v0", 5)))
        dict:set("rs:payload_ver", "v0")
        local got = {}
        local head = assert(payload.read(dict, function(id, value)
            got[id] = value
            return true
        end))
        t.eq({ head.ver, head.revision, head.count, got }, { "v0", 4, 5, rules_of("v0", 5) })
        assert(payload.write(dict, meta("v1"), rules_of("v1", 5)))
        t.eq({ payload.head(dict).ver, dict:get("rs:payload"), dict:get("rs:payload_ver") }, { "v1", nil, nil })
        empty()
    end)

    t.it("a write that cannot store a chunk leaves the current payload and no stray chunk", function()
        empty()
        assert(payload.write(dict, meta("v1"), rules_of("v1", 10)))
        local big = {}
        for i = 1, 80 do
            big["r" .. i] = string.rep("x", 64 * 1024) -- 5 MiB: more than the 4m dict holds
        end
        local head, err = payload.write(dict, meta("v2"), big)
        t.eq(head, nil)
        t.eq(err:find("cannot store the rule set", 1, true) ~= nil, true, err)
        t.eq(payload.head(dict).ver, "v1")
        t.eq(chunk_keys(), 1)
        empty()
    end)
end
