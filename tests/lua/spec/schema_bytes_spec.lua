-- schema.lua checks hosts, paths, ids and header names with byte loops; they
-- accept exactly what the Lua patterns they replaced accepted (kept here as
-- the reference), for random strings over the bytes that matter.
local schema = require("rulegate.schema")

local find, match, byte = string.find, string.match, string.byte

local REFERENCE = {
    host = function(v)
        if v == "*" then
            return true
        end
        if v == "" or #v > 253 then
            return false
        end
        local bare = match(v, "^%*%.(.*)$") or v
        return bare ~= "" and not find(bare, "[^a-z0-9%.%-]") and not find(bare, "..", 1, true)
            and not find(bare, "^[%.%-]") and not find(bare, "[%.%-]$")
    end,
    path = function(v)
        return v ~= "" and #v <= 512 and byte(v, 1) == 47 and not find(v, "[^!-~]") and not find(v, "[?#]")
    end,
    id = function(v)
        return v ~= "" and #v <= 64 and match(v, "^[a-z0-9][a-z0-9_.-]*$") ~= nil
    end,
    name = function(v)
        return v ~= "" and #v <= 128 and not find(v, "[^%w%-]")
    end,
}

local ALPHABET = { "a", "z", "m", "A", "Z", "0", "9", ".", "-", "_", "*", "/", "?", "#", " ", "~", "!", ":", "\0",
                   "\127", "\128", "\255", "\n", "`", "{", "@", "[" }

local function random_string()
    local out = {}
    for i = 1, math.random(0, 8) do
        out[i] = ALPHABET[math.random(#ALPHABET)]
    end
    local s = table.concat(out)
    local r = math.random(6)
    if r == 1 then
        return "*." .. s
    elseif r == 2 then
        return "/" .. s
    end
    return s
end

local function rule_with(field, v)
    local rule = { id = "r1", kind = "split", route = { host = "a.example.com", path = "/" },
                   key = { source = "header", name = "x-uid" }, default = "stable",
                   policies = { { type = "uid_suffix", suffixes = { "1" }, upstream = "canary" } } }
    if field == "host" then
        rule.route.host = v
    elseif field == "path" then
        rule.route.path = v
    elseif field == "id" then
        rule.id = v
    else
        rule.key.name = v
    end
    return rule
end

local ERRORS = { host = "route.host is invalid", path = "route.path is invalid", id = "id is invalid",
                 name = "key.name is invalid" }

return function(t)
    t.it("host, path, id and header name checks accept what the patterns accepted", function()
        math.randomseed(1130)
        local accepted = {}
        for field, reference in pairs(REFERENCE) do
            accepted[field] = 0
            local cases = { "*", "*.", "*.a", "a..b", "-a", "a-", ".a", "a.", "/", "/a?b", "/#", "a", "A", "0a",
                            "_a", "x-Uid", string.rep("a", 64), string.rep("a", 65), string.rep("a", 128) .. "b" }
            for _ = 1, 4000 do
                cases[#cases + 1] = random_string()
            end
            for _, v in ipairs(cases) do
                local want = reference(v)
                local ok, err = schema.check(rule_with(field, v))
                if want then
                    accepted[field] = accepted[field] + 1
                    t.truthy(ok, field .. " " .. string.format("%q", v) .. " refused: " .. tostring(err))
                else
                    t.eq(err, ERRORS[field], field .. " " .. string.format("%q", v))
                end
            end
            t.truthy(accepted[field] > 50, field .. ": enough accepted cases (" .. accepted[field] .. ")")
        end
    end)
end
