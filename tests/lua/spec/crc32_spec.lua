local crc32 = require("rulegate.crc32")

return function(t)
    t.it("crc32 of the check string is 0xCBF43926", function()
        t.eq(crc32.sum("123456789"), 0xCBF43926)
    end)

    t.it("crc32 of the empty string is 0", function()
        t.eq(crc32.sum(""), 0)
    end)

    t.it("matches ngx.crc32_long on many strings, bytes 0-255 included", function()
        local samples = { "a", "bench:4242", "canary-2024:user-\0-\255", string.rep("x", 1000) }
        for i = 0, 255 do
            samples[#samples + 1] = string.char(i) .. "salt:" .. i
        end
        for _, s in ipairs(samples) do
            t.eq(crc32.sum(s), ngx.crc32_long(s))
        end
    end)

    t.it("a running state continues where the prefix stopped", function()
        local seed = crc32.update(nil, "rule-1:")
        for _, key in ipairs({ "", "7", "4242", "user@example.com", "\255\0" }) do
            t.eq(crc32.finish(crc32.update(seed, key)), ngx.crc32_long("rule-1:" .. key))
        end
    end)
end
