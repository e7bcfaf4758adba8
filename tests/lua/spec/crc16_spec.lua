local crc16 = require("rulegate.crc16")

return function(t)
    t.it("crc16 of the XMODEM check string is 0x31C3", function()
        t.eq(crc16.crc16("123456789"), 0x31C3)
    end)

    t.it("crc16 of the empty string is 0", function()
        t.eq(crc16.crc16(""), 0)
    end)

    t.it("slots match the Redis Cluster spec examples", function()
        t.eq(crc16.slot("foo"), 12182)
        t.eq(crc16.slot("bar"), 5061)
        t.eq(crc16.slot("123456789"), 0x31C3 % 16384)
    end)

    t.it("hash tag is the text between the first { and the next }", function()
        t.eq(crc16.hash_tag("{user1000}.following"), "user1000")
        t.eq(crc16.hash_tag("foo{bar}{zap}"), "bar")
        t.eq(crc16.hash_tag("foo{{bar}}zap"), "{bar")
        t.eq(crc16.hash_tag("{rg:prod}:rules"), "rg:prod")
    end)

    t.it("an empty or unclosed hash tag hashes the whole key", function()
        t.eq(crc16.hash_tag("foo{}{bar}"), nil)
        t.eq(crc16.hash_tag("foo{bar"), nil)
        t.eq(crc16.hash_tag("foo}bar{"), nil)
        t.eq(crc16.hash_tag("plain"), nil)
    end)

    t.it("keys sharing a hash tag share a slot", function()
        local s = crc16.slot("rg:prod")
        t.eq(crc16.slot("{rg:prod}:rules"), s)
        t.eq(crc16.slot("{rg:prod}:rev"), s)
        t.eq(crc16.slot("{rg:prod}:fleet"), s)
        t.eq(crc16.slot("x{rg:prod}y{other}"), s)
    end)

    t.it("slot rejects non-string keys", function()
        t.errors(function() crc16.slot(42) end, "bad argument #1")
    end)
end
