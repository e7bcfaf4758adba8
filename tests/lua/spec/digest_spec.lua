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
end
