-- Content identity of a namespace (rulegate/digest.py): the XOR of
-- SHA-1(id .. "\n" .. stored bytes) over its rules, as 40 lowercase hex digits.
-- The commit script keeps the store's copy in {rg:<ns>}:meta "digest".
local bit = require("bit")
local ffi = require("ffi")

local ngx = ngx
local sha1_bin = ngx.sha1_bin
local bxor = bit.bxor
local bor = bit.bor
local lshift = bit.lshift
local tohex = bit.tohex
local byte = string.byte
local concat = table.concat
local sub = string.sub
local pairs = pairs
local tonumber = tonumber

local _M = { _VERSION = "0.1.0" }

_M.EMPTY = "0000000000000000000000000000000000000000"


-- XOR one rule's hash into acc (five 32-bit words).
local function add_lua(acc, id, value)
    local h = sha1_bin(id .. "\n" .. value)
    for w = 0, 4 do
        local a, b, c, d = byte(h, w * 4 + 1, w * 4 + 4)
        acc[w + 1] = bxor(acc[w + 1], bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d))
    end
end


-- The same through OpenSSL's SHA1_* (nginx links libcrypto), fed id, "\n" and
-- the value in turn: no concatenated copy and no digest string per rule
-- (~40 ms of a 10,000-rule full reload otherwise). add_lua when absent.
pcall(ffi.cdef, [[
typedef struct { uint64_t opaque[32]; } rulegate_sha1_ctx; /* OpenSSL's SHA_CTX is 96 bytes */
int SHA1_Init(rulegate_sha1_ctx *c);
int SHA1_Update(rulegate_sha1_ctx *c, const void *data, size_t len);
int SHA1_Final(unsigned char *md, rulegate_sha1_ctx *c);
]])
local C = ffi.C
local ctx = ffi.new("rulegate_sha1_ctx")
local md = ffi.new("unsigned char[20]")

local function add_ffi(acc, id, value)
    C.SHA1_Init(ctx)
    C.SHA1_Update(ctx, id, #id)
    C.SHA1_Update(ctx, "\n", 1)
    C.SHA1_Update(ctx, value, #value)
    C.SHA1_Final(md, ctx)
    for w = 0, 4 do
        local i = w * 4
        acc[w + 1] = bxor(acc[w + 1], bor(lshift(md[i], 24), lshift(md[i + 1], 16), lshift(md[i + 2], 8), md[i + 3]))
    end
end

local add = add_lua
do
    local a, b = { 0, 0, 0, 0, 0 }, { 0, 0, 0, 0, 0 }
    if pcall(add_ffi, a, "r1", "\x81\xa2id\xa2r1") then
        add_lua(b, "r1", "\x81\xa2id\xa2r1")
        if a[1] == b[1] and a[2] == b[2] and a[3] == b[3] and a[4] == b[4] and a[5] == b[5] then
            add = add_ffi
        end
    end
end
_M.FFI_SHA1 = add == add_ffi


local function hex_of(acc)
    local out = {}
    for i = 1, 5 do
        out[i] = tohex(acc[i], 8)
    end
    return concat(out)
end


-- A rule's share of the digest: SHA-1(id .. "\n" .. stored bytes), 20 bytes.
-- It is also a compiled rule's identity (sync.lua reuses the compiled rule of
-- the same id and bytes in a full reload) and what the syncing worker keeps
-- of each rule for deltas (apply_sigs), instead of the bytes themselves.
function _M.sig(id, value)
    if add == add_ffi then
        C.SHA1_Init(ctx)
        C.SHA1_Update(ctx, id, #id)
        C.SHA1_Update(ctx, "\n", 1)
        C.SHA1_Update(ctx, value, #value)
        C.SHA1_Final(md, ctx)
        return ffi.string(md, 20)
    end
    return sha1_bin(id .. "\n" .. value)
end


-- sig(id, s:sub(i, j)) without making that string (through OpenSSL: bytes i..j
-- of s read in place; a bulk reader makes no string of each rule's bytes).
function _M.sig_at(id, s, i, j)
    if add == add_ffi then
        C.SHA1_Init(ctx)
        C.SHA1_Update(ctx, id, #id)
        C.SHA1_Update(ctx, "\n", 1)
        C.SHA1_Update(ctx, ffi.cast("const char *", s) + (i - 1), j - i + 1)
        C.SHA1_Final(md, ctx)
        return ffi.string(md, 20)
    end
    return sha1_bin(id .. "\n" .. sub(s, i, j))
end


-- XOR one sig (20 bytes) into acc (five 32-bit words, as of() keeps them).
local function xor_sig(acc, h)
    for w = 0, 4 do
        local a, b, c, d = byte(h, w * 4 + 1, w * 4 + 4)
        acc[w + 1] = bxor(acc[w + 1], bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d))
    end
end


-- A digest built one rule at a time: acc = new(), add_sig(acc, sig(id,
-- bytes)) per rule (in any order), hex(acc): the same as of() of those rules.
function _M.new()
    return { 0, 0, 0, 0, 0 }
end

_M.add_sig = xor_sig


local function words_of(hex)
    local acc = {}
    for w = 0, 4 do
        acc[w + 1] = tonumber(sub(hex, w * 8 + 1, w * 8 + 8), 16) or 0
    end
    return acc
end


-- The digest of a rule set given as { [id] = stored bytes }; pause, when
-- given, is called after every rule (a cooperative yield); lua_sha: hash
-- with ngx.sha1_bin (the reference the OpenSSL path is checked against).
function _M.of(raw_rules, pause, lua_sha)
    local acc = { 0, 0, 0, 0, 0 }
    local add_one = lua_sha and add_lua or add
    for id, value in pairs(raw_rules) do
        add_one(acc, id, value)
        if pause then
            pause()
        end
    end
    return hex_of(acc)
end

_M.hex = hex_of


-- The digest after one change of rule id from before to after (stored bytes,
-- or nil/false when absent): O(change), like the commit script's.
function _M.apply(hex, id, before, after)
    local acc = words_of(hex)
    if before then
        add(acc, id, before)
    end
    if after then
        add(acc, id, after)
    end
    return hex_of(acc)
end


-- apply() given the rule's sigs (sig(id, bytes)) before and after the change
-- (nil/false when absent): the same digest without the bytes.
function _M.apply_sigs(hex, before_sig, after_sig)
    local acc = words_of(hex)
    if before_sig then
        xor_sig(acc, before_sig)
    end
    if after_sig then
        xor_sig(acc, after_sig)
    end
    return hex_of(acc)
end


return _M
