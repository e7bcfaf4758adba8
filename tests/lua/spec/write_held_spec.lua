-- A checkpoint writes the held rules (the shared payload plus the overlay of
-- the rules changed since) as a new payload: chunks without a changed rule
-- are borrowed whole, the others rewritten rule by rule; the result is the same
-- rule set whichever way, and the snapshot file's bytes decode to it.
local mp = require("MessagePack")
local payload = require("rulegate.payload")
local snapshot = require("rulegate.snapshot")
local sync = require("rulegate.sync")

local dict = ngx.shared.rulegate -- the spec harness's 4m dict

local function meta(ver)
    return { ver = ver, namespace = "prod", generation = "g", revision = 1, written_at = 9 }
end

local function read_all()
    local got = {}
    local head = assert(payload.read(dict, function(id, value)
        if got[id] ~= nil then
            error("rule " .. id .. " twice")
        end
        got[id] = value
        return true
    end))
    return got, head
end

local function chunks_of(head)
    local out = {}
    for i = 1, head.n do
        out[i] = payload.chunk(dict, head, i)
    end
    return out
end

return function(t)
    t.it("copies unchanged chunks whole and applies the overlay; the same rules as a rewrite of every rule", function()
        dict:flush_all()
        local saved = payload.CHUNK
        payload.CHUNK = 3
        local raw = {}
        for i = 1, 20 do
            raw["r" .. i] = "v1/r" .. i
        end
        -- r20's bytes hold r7's packed id: the chunk holding r20 is rewritten too (a false match), harmlessly
        raw.r20 = "v1/" .. mp.pack("r7")
        local base = assert(payload.write(dict, meta("v1"), raw))
        local before = chunks_of(base)
        local overlay = { r7 = "v2/r7", r3 = false, r21 = "v2/r21" }
        local head = assert(sync.write_held(dict, { overlay = overlay, base = base.id }, meta("v2"), "v2"))
        local want = {}
        for id, v in pairs(raw) do
            want[id] = v
        end
        want.r7, want.r3, want.r21 = "v2/r7", nil, "v2/r21"
        local got, read = read_all()
        t.eq(got, want)
        t.eq({ read.id, read.ver, read.count, #read.counts }, { head.id, "v2", 20, head.n })
        -- the chunks without r3, r7 or r7's packed id are the same bytes as before
        local after, copied = chunks_of(head), 0
        local old = {}
        for _, c in ipairs(before) do
            old[c] = true
        end
        for _, c in ipairs(after) do
            if old[c] then
                copied = copied + 1
            end
        end
        t.truthy(copied >= base.n - 3 and copied < base.n, "copied " .. copied .. " of " .. base.n)
        -- the snapshot payload (prefix + chunks) decodes to the same rules
        local pieces = { snapshot.payload_prefix("prod", "g", 1, 9, head.count) }
        for i, c in ipairs(after) do
            pieces[i + 1] = c
        end
        local snap = assert(snapshot.decode_payload(table.concat(pieces)))
        t.eq(snap.rules, want)
        -- more changed rules than are looked for by id: every rule rewritten, the same rules
        local many = {}
        for i = 1, 70 do
            many["n" .. i] = "v3/n" .. i
        end
        many.r1 = false
        assert(sync.write_held(dict, { overlay = many, base = head.id }, meta("v3"), "v3"))
        for id, v in pairs(many) do
            want[id] = v or nil
        end
        t.eq((read_all()), want)
        payload.CHUNK = saved
        dict:flush_all()
    end)

    t.it("with each rule's chunk known, borrows the chunks without a change; chunks go with the last header", function()
        dict:flush_all()
        local saved = payload.CHUNK
        payload.CHUNK = 3
        local raw = {}
        for i = 1, 20 do
            raw["r" .. i] = "v1/r" .. i
        end
        local where = {}
        local w = payload.writer(dict, meta("v1"), nil, where)
        for i = 1, 20 do
            assert(w:add("r" .. i, raw["r" .. i]))
        end
        local base = assert(w:finish())
        t.eq({ base.n, where.r1, where.r4, where.r20 },
             { 7, payload.key_of(base, 1), payload.key_of(base, 2), payload.key_of(base, 7) })
        local h = { overlay = { r7 = "v2/r7", r3 = false, r21 = "v2/r21" }, base = base.id, where = where }
        local head = assert(sync.write_held(dict, h, meta("v2"), "v2"))
        local want = {}
        for id, v in pairs(raw) do
            want[id] = v
        end
        want.r7, want.r3, want.r21 = "v2/r7", nil, "v2/r21"
        local got, read = read_all()
        t.eq(got, want)
        t.eq({ read.id, read.count, #read.counts }, { head.id, 20, head.n })
        -- chunks 1 (r3) and 3 (r7) rewritten, the 5 others borrowed: the same dict keys
        local borrowed = 0
        for _, key in pairs(head.borrowed) do
            t.truthy(key:find("^rs:pc:" .. base.id:gsub("%p", "%%%0") .. ":"), key)
            borrowed = borrowed + 1
        end
        t.eq(borrowed, 5)
        -- h.where now names the new payload's chunks: every rule is in the chunk it names
        t.eq(h.where.r3, nil)
        for id in pairs(want) do
            local found = false
            snapshot.each_rule(dict:get(h.where[id]), function(rid)
                found = found or rid == id
                return true
            end)
            t.truthy(found, id)
        end
        -- a second checkpoint from the new payload, then a third: the first payload's chunks are deleted
        -- once no header names them, the borrowed ones stay while one does
        h.base, h.overlay = head.id, { r1 = "v3/r1" }
        local head3 = assert(sync.write_held(dict, h, meta("v3"), "v3"))
        want.r1 = "v3/r1"
        t.eq((read_all()), want)
        h.base, h.overlay = head3.id, { r2 = "v4/r2" }
        assert(sync.write_held(dict, h, meta("v4"), "v4"))
        want.r2 = "v4/r2"
        t.eq((read_all()), want)
        local keys = {}
        for _, key in ipairs(dict:get_keys(0)) do
            if key:find("^rs:pc:") then
                keys[key] = true
            end
        end
        local named = {}
        for _, hd in ipairs({ payload.head(dict), mp.unpack(dict:get("rs:pprev")) }) do
            for i = 1, hd.n do
                named[payload.key_of(hd, i)] = true
            end
        end
        t.eq(keys, named)
        payload.CHUNK = saved
        dict:flush_all()
    end)

    t.it("a payload replaced since the overlay was taken is not written over", function()
        dict:flush_all()
        local base = assert(payload.write(dict, meta("v1"), { a = "1" }))
        assert(payload.write(dict, meta("v2"), { a = "2" }))
        local head, err = sync.write_held(dict, { overlay = { b = "3" }, base = base.id }, meta("v3"), "v3")
        t.eq({ head, err }, { nil, "the payload was replaced" })
        t.eq(payload.head(dict).ver, "v2")
        dict:flush_all()
    end)
end
