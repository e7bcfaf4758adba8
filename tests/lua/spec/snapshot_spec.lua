local snapshot = require("rulegate.snapshot")
local mp = require("MessagePack")

return function(t)
    local raw = { r1 = mp.pack({ id = "r1" }), r2 = mp.pack({ id = "r2" }) }

    t.it("encode then decode returns the same rule set", function()
        local data = snapshot.encode("prod", "gen-1", 7, 1700000000, raw)
        local snap = assert(snapshot.decode(data))
        t.eq({ snap.namespace, snap.generation, snap.revision, snap.written_at },
            { "prod", "gen-1", 7, 1700000000 })
        t.eq(snap.rules, raw)
    end)

    t.it("decoding with pauses gives what one unpack gives, for any key order and map size", function()
        local many = {}
        for i = 1, 300 do -- a map16 of rules
            many["r" .. i] = mp.pack({ id = "r" .. i })
        end
        local calls = 0
        local function pause()
            calls = calls + 1
        end
        for _, rules in ipairs({ raw, many, {} }) do
            local payload = snapshot.encode_payload("prod", "g", 3, 9, rules)
            t.eq(snapshot.decode_payload(payload, pause).rules, snapshot.decode_payload(payload).rules)
        end
        t.eq(calls, 302)
        -- "rules" first (the Python agent's key order may differ from ours)
        local reordered = "\x85" .. mp.pack("rules") .. mp.pack(raw) .. mp.pack("namespace")
            .. mp.pack("prod") .. mp.pack("generation") .. mp.pack("g") .. mp.pack("revision") .. mp.pack(4)
            .. mp.pack("written_at") .. mp.pack(1)
        local snap = assert(snapshot.decode_payload(reordered, pause))
        t.eq({ snap.namespace, snap.revision }, { "prod", 4 })
        t.eq(snap.rules, raw)
        t.eq(snapshot.decode_payload(reordered .. "x", pause), nil)
        t.eq(snapshot.decode_payload(reordered:sub(1, -3), pause), nil)
    end)

    t.it("pack_rule gives lua-MessagePack's bytes for the id and the bin, at every header size", function()
        local function rep(n)
            return string.rep("a", n)
        end
        for _, idlen in ipairs({ 0, 1, 31, 32, 255, 256, 65535, 65536 }) do
            for _, rawlen in ipairs({ 0, 1, 255, 256, 65535, 65536 }) do
                local id, value = rep(idlen), rep(rawlen)
                local buf = { "x" }
                snapshot.pack_rule(buf, id, value)
                local want = { "x", mp.pack(id) }
                mp.packers["binary"](want, value)
                t.eq(table.concat(buf), table.concat(want), idlen .. " / " .. rawlen)
            end
        end
    end)

    t.it("the header carries crc32 and payload length", function()
        local data = snapshot.encode("prod", "g", 1, 1, raw)
        local sum, len = data:match("^RGSNAP1 (%x+) (%d+)\n")
        t.eq(#sum, 8)
        t.eq(tonumber(len), #data - #data:match("^[^\n]*\n"))
    end)

    t.it("frame_pieces gives frame()'s header, with zlib's CRC and with the Lua one", function()
        t.truthy(snapshot.ZLIB_CRC, "nginx's zlib crc32 is found")
        math.randomseed(3)
        for _ = 1, 20 do
            local pieces = {}
            for i = 1, math.random(1, 6) do
                local bytes = {}
                for j = 1, math.random(0, 3000) do
                    bytes[j] = string.char(math.random(0, 255))
                end
                pieces[i] = table.concat(bytes)
            end
            local whole = table.concat(pieces)
            local want = snapshot.frame(whole):sub(1, -#whole - 1)
            t.eq(snapshot.frame_pieces(pieces)[1], want)
            t.eq(snapshot.frame_pieces(pieces, nil, true)[1], want)
        end
    end)

    t.it("truncated, corrupted and foreign files are rejected", function()
        local data = snapshot.encode("prod", "g", 1, 1, raw)
        t.truthy(select(2, snapshot.decode(data:sub(1, -2))):find("truncated"))
        local flipped = data:sub(1, -2) .. string.char((data:byte(-1) + 1) % 256)
        t.eq(select(2, snapshot.decode(flipped)), "snapshot checksum mismatch")
        t.truthy(select(2, snapshot.decode("hello\nworld")):find("bad header"))
        t.truthy(select(2, snapshot.decode("no newline")):find("no header"))
    end)

    t.it("write_file replaces the file atomically and leaves no temp file", function()
        local dir = ngx.config.prefix() .. "tmp"
        local path = dir .. "/spec.snap"
        assert(snapshot.write_file(path, "one"))
        assert(snapshot.write_file(path, "two"))
        local f = assert(io.open(path, "rb"))
        t.eq(f:read("*a"), "two")
        f:close()
        t.eq(io.open(path .. "." .. ngx.worker.pid() .. ".tmp", "rb"), nil)
        os.remove(path)
    end)

    t.it("write_file reports an unwritable directory", function()
        local ok, err = snapshot.write_file("/nonexistent-dir/x.snap", "x")
        t.eq(ok, nil)
        t.truthy(err:find("open"))
    end)
end
