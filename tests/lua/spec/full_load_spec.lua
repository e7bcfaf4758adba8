-- A full load compiles the rules as the read delivers them (HSCAN batches):
-- a rule delivered twice counts once (HSCAN may repeat a field), the digest,
-- the count and the payload written are those of the rules read; the first
-- rule that fails stops the compile, drops what the writer wrote, and is
-- reported when the load finishes.
local mp = require("MessagePack")
local digest = require("rulegate.digest")
local payload = require("rulegate.payload")
local snapshot = require("rulegate.snapshot")
local sync = require("rulegate.sync")

local dict = ngx.shared.rulegate -- the spec harness's 4m dict

local function split(id)
    return mp.pack({ id = id, kind = "split", route = { host = "a.example.com", path = "/" .. id },
                     key = { source = "header", name = "x-uid" }, default = "stable",
                     policies = { { type = "uid_suffix", suffixes = { "1" }, upstream = "canary" } } })
end

local function payload_keys()
    local n = 0
    for _, key in ipairs(dict:get_keys(0)) do
        if key:find("^rs:pc:") or key == "rs:pwriting" then
            n = n + 1
        end
    end
    return n
end

return function(t)
    t.it("a rule read twice counts once; digest, count, payload and chunk map are the rules read", function()
        dict:flush_all()
        local saved = payload.CHUNK
        payload.CHUNK = 4
        local raw, order = {}, {}
        for i = 1, 10 do
            local id = "r" .. i
            raw[id] = split(id)
            order[#order + 1] = id
        end
        table.insert(order, 4, "r2") -- delivered again, later
        table.insert(order, "r9")
        local L = sync.new_loader({ shm = dict, namespace = "prod" }, 7, "g")
        for _, id in ipairs(order) do
            sync.loader_add(L, id, raw[id])
        end
        local loaded = assert(sync.loader_finish(L))
        t.eq({ loaded.rs.count, loaded.digest, loaded.rs.revision, loaded.rs.generation },
             { 10, digest.of(raw), 7, "g" })
        local head = assert(loaded.writer:finish("v1"))
        local got = {}
        assert(payload.read(dict, function(id, value)
            t.eq(got[id], nil)
            got[id] = value
            return true
        end))
        t.eq({ head.count, got }, { 10, raw })
        for id in pairs(raw) do
            local found = false
            snapshot.each_rule(dict:get(loaded.where[id]), function(rid)
                found = found or rid == id
                return true
            end)
            t.truthy(found, id)
        end
        payload.CHUNK = saved
        dict:flush_all()
    end)

    t.it("the first failing rule stops the load: its error at the finish, nothing left in the dict", function()
        dict:flush_all()
        local saved = payload.CHUNK
        payload.CHUNK = 2
        local L = sync.new_loader({ shm = dict, namespace = "prod" }, 7, "g")
        for i = 1, 5 do
            sync.loader_add(L, "r" .. i, split("r" .. i))
        end
        t.truthy(payload_keys() > 0, "chunks written as the load goes")
        sync.loader_add(L, "bad", split("other")) -- its id field is not its hash field
        sync.loader_add(L, "worse", "\193") -- not msgpack: after the first error, not looked at
        sync.loader_add(L, "r6", split("r6"))
        local loaded, err = sync.loader_finish(L)
        t.eq({ loaded, err }, { nil, "rule bad: id does not match its hash field" })
        t.eq(payload_keys(), 0)
        payload.CHUNK = saved
        dict:flush_all()
    end)
end
