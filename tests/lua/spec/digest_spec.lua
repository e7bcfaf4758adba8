-- digest.of hashes through OpenSSL's SHA1_* when nginx has them: the same
-- digests as through ngx.sha1_bin of the concatenation (its reference).
local digest = require("rulegate.digest")

return function(t)
    t.it("OpenSSL and ngx.sha1_bin digests agree on random rule sets, and apply() follows of()", function()
        t.truthy(digest.FFI_SHA1, "nginx's libcrypto SHA1_* are found")
        math.randomseed(42)
        for _ = 1, 30 do
            local raw = {}
            for i = 1, math.random(0, 40) do
                local bytes = {}
                for j = 1, math.random(0, 300) do
                    bytes[j] = string.char(math.random(0, 255))
                end
                raw["r" .. i .. string.rep("x", math.random(0, 60))] = table.concat(bytes)
            end
            local sum = digest.of(raw)
            t.eq(sum, digest.of(raw, nil, true))
            local id, value = next(raw)
            if id then
                local without = digest.apply(sum, id, value, nil)
                raw[id] = nil
                t.eq(without, digest.of(raw, nil, true))
            end
        end
        t.eq(digest.of({}), digest.EMPTY)
    end)

    t.it("a digest built from each rule's sig, and apply_sigs, equal of() and apply()", function()
        math.randomseed(7)
        for _ = 1, 30 do
            local raw, acc = {}, digest.new()
            for i = 1, math.random(0, 40) do
                local bytes = {}
                for j = 1, math.random(0, 300) do
                    bytes[j] = string.char(math.random(0, 255))
                end
                raw["r" .. i] = table.concat(bytes)
            end
            for id, value in pairs(raw) do
                local sig = digest.sig(id, value)
                t.eq(sig, ngx.sha1_bin(id .. "\n" .. value))
                digest.add_sig(acc, sig)
            end
            local sum = digest.hex(acc)
            t.eq(sum, digest.of(raw, nil, true))
            local id, value = next(raw)
            if id then
                local after = value .. "x"
                t.eq(digest.apply_sigs(sum, digest.sig(id, value), digest.sig(id, after)),
                     digest.apply(sum, id, value, after))
                t.eq(digest.apply_sigs(sum, digest.sig(id, value), nil), digest.apply(sum, id, value, nil))
                t.eq(digest.apply_sigs(sum, nil, digest.sig("new", "b")), digest.apply(sum, "new", nil, "b"))
            end
        end
    end)
end
