-- The last-known-good rule set on disk, in the agent's format
-- (rulegate/snapshot.py): one header line
--   RGSNAP1 <crc32 of payload, 8 lowercase hex digits> <payload length>\n
-- then a msgpack map {namespace, generation, revision, written_at,
-- rules = {rule id: the rule's msgpack bytes as stored in Redis (bin)}}.
-- Written as tmp file + fsync + rename + directory fsync.
local ffi = require("ffi")
local mp = require("MessagePack")
local mpdecode = require("rulegate.mpdecode")
local running_crc = require("rulegate.crc32")

local ngx = ngx
local crc32 = ngx.crc32_long
local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tonumber = tonumber
local tostring = tostring
local format = string.format
local char = string.char
local byte = string.byte
local find = string.find
local match = string.match
local sub = string.sub
local concat = table.concat
local sort = table.sort
local floor = math.floor
local at = mpdecode.at
local bytes_at = mpdecode.bytes_at
local io_open = io.open

local _M = { _VERSION = "0.1.0", MAGIC = "RGSNAP1" }

local C = ffi.C
for _, decl in ipairs({
    "int open(const char *pathname, int flags, int mode);",
    "int close(int fd);",
    "long write(int fd, const void *buf, size_t count);",
    "int fsync(int fd);",
    "int rename(const char *oldpath, const char *newpath);",
    "int unlink(const char *pathname);",
    "int getpid(void);",
}) do
    pcall(ffi.cdef, decl)
end

local O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC = 0, 1, 0x40, 0x200

-- zlib's crc32() (nginx links zlib for gzip): the snapshot file's CRC over
-- megabytes in C, ~13 ms at 10,000 rules in Lua; the Lua CRC when it is absent
pcall(ffi.cdef, "unsigned long crc32(unsigned long crc, const unsigned char *buf, unsigned int len);")
local zlib_crc32 = nil
do
    local ok, fn = pcall(function() return C.crc32 end)
    if ok and fn and tonumber(fn(0, "123456789", 9)) == 0xcbf43926 then
        zlib_crc32 = fn
    end
end
_M.ZLIB_CRC = zlib_crc32 ~= nil


local function pack_map_header(buf, n)
    if n < 16 then
        buf[#buf + 1] = char(0x80 + n)
    elseif n < 0x10000 then
        buf[#buf + 1] = char(0xde, floor(n / 256), n % 256)
    else
        buf[#buf + 1] = char(0xdf, floor(n / 16777216) % 256, floor(n / 65536) % 256,
            floor(n / 256) % 256, n % 256)
    end
end


-- The payload's bytes before its rules: the map's other fields, then the
-- header of the "rules" map of count entries.
function _M.payload_prefix(namespace, generation, revision, written_at, count)
    local buf = {}
    pack_map_header(buf, 5)
    buf[#buf + 1] = mp.pack("namespace")
    buf[#buf + 1] = mp.pack(namespace)
    buf[#buf + 1] = mp.pack("generation")
    buf[#buf + 1] = mp.pack(generation)
    buf[#buf + 1] = mp.pack("revision")
    buf[#buf + 1] = mp.pack(revision)
    buf[#buf + 1] = mp.pack("written_at")
    buf[#buf + 1] = mp.pack(written_at)
    buf[#buf + 1] = mp.pack("rules")
    pack_map_header(buf, count)
    return concat(buf)
end


-- The msgpack header of a str of n bytes as lua-MessagePack packs one (its
-- default "string_compat": fixstr, str16, str32; no str8), and of a bin.
local function str_head(n)
    if n <= 0x1f then
        return char(0xa0 + n)
    elseif n <= 0xffff then
        return char(0xda, floor(n / 0x100), n % 0x100)
    end
    return char(0xdb, floor(n / 0x1000000), floor(n / 0x10000) % 0x100, floor(n / 0x100) % 0x100, n % 0x100)
end


local function bin_head(n)
    if n <= 0xff then
        return char(0xc4, n)
    elseif n <= 0xffff then
        return char(0xc5, floor(n / 0x100), n % 0x100)
    end
    return char(0xc6, floor(n / 0x1000000), floor(n / 0x10000) % 0x100, floor(n / 0x100) % 0x100, n % 0x100)
end


-- Append one rule of the "rules" map to buf: its id (a string), then its
-- stored bytes as bin; the bytes mp.pack gives, without its buffer table and
-- concatenation per value (a full load packs every rule: bench/REPORT.md).
function _M.pack_rule(buf, id, raw)
    local n = #buf
    buf[n + 1] = str_head(#id)
    buf[n + 2] = id
    buf[n + 3] = bin_head(#raw)
    buf[n + 4] = raw
end


-- The same into a string.buffer sb, the rule's bytes s:sub(first, last) (all
-- of s without first) copied from s in place: no string of them is made.
function _M.put_rule(sb, id, s, first, last)
    if not first then
        sb:put(str_head(#id), id, bin_head(#s), s)
        return
    end
    local n = last - first + 1
    sb:put(str_head(#id), id, bin_head(n))
    sb:putcdata(ffi.cast("const char *", s) + (first - 1), n)
end


-- The payload bytes: a msgpack map whose rule values are bin (so Python reads bytes).
-- pause, when given, is called after every rule (a cooperative yield).
function _M.encode_payload(namespace, generation, revision, written_at, raw_rules, pause)
    local ids = {}
    for id in pairs(raw_rules) do
        ids[#ids + 1] = id
    end
    sort(ids)
    local buf = { _M.payload_prefix(namespace, generation, revision, written_at, #ids) }
    for _, id in ipairs(ids) do
        _M.pack_rule(buf, id, raw_rules[id])
        if pause then
            pause()
        end
    end
    return concat(buf)
end


-- walk(s, fn) protected: a chunk that does not decode is an error value.
local function walked(walk, s, fn)
    local ok, res, err = pcall(walk, s, fn)
    if not ok then
        return nil, "undecodable payload chunk"
    end
    return res, err
end


local function each_pair_at(s, fn)
    local i, n = 1, #s
    while i <= n do
        local id, len, first
        id, i = at(s, i)
        len, first = bytes_at(s, i) -- pack_rule's bin
        if type(id) ~= "string" then
            return nil, "undecodable payload chunk"
        end
        local ok, err
        if len and first + len - 1 <= n then
            ok, err = fn(id, s, first, first + len - 1)
            i = first + len
        else -- a fixstr, say: cut as each_rule does
            local raw
            raw, i = at(s, i)
            if type(raw) ~= "string" then
                return nil, "undecodable payload chunk"
            end
            ok, err = fn(id, raw, 1, #raw)
        end
        if not ok then
            return nil, err
        end
    end
    return true
end


-- each_rule's walk, fn(id, s, i, j) for every rule: its stored bytes are
-- bytes i..j of s (the chunk, or a string of their own), not cut. LuaJIT
-- interns every string it makes, and rules that differ in a few bytes can
-- share a hash (bench/REPORT.md "Log deltas of many rules"): a reader of
-- every rule makes no string of each one's bytes.
function _M.each_rule_at(s, fn)
    return walked(each_pair_at, s, fn)
end


-- fn(id, stored bytes) for every rule of s, a run of pack_rule pairs (a
-- piece of a payload's rules map); true, or nil, err (undecodable, or fn's
-- false, err).
function _M.each_rule(s, fn)
    return walked(each_pair_at, s, function(id, chunk, i, j)
        return fn(id, sub(chunk, i, j))
    end)
end


-- The snapshot file's bytes for an encoded payload.
function _M.frame(payload)
    return format("%s %08x %d\n", _M.MAGIC, crc32(payload), #payload) .. payload
end


function _M.encode(namespace, generation, revision, written_at, raw_rules)
    return _M.frame(_M.encode_payload(namespace, generation, revision, written_at, raw_rules))
end


-- The entry count of the msgpack map at byte i of s, and the index after its header.
local function map_header(s, i)
    local b = byte(s, i)
    if b and b >= 0x80 and b <= 0x8f then
        return b - 0x80, i + 1
    elseif b == 0xde then
        local b1, b2 = byte(s, i + 1, i + 2)
        return b1 * 256 + b2, i + 3
    elseif b == 0xdf then
        local b1, b2, b3, b4 = byte(s, i + 1, i + 4)
        return ((b1 * 256 + b2) * 256 + b3) * 256 + b4, i + 5
    end
    error("not a map")
end


-- mpdecode.unpack of a payload map, calling pause after every rule of its "rules"
-- map (the part that grows with the namespace) so a timer can yield.
local function unpack_yielding(payload, pause)
    local body = {}
    local n, i = map_header(payload, 1)
    for _ = 1, n do
        local key
        key, i = at(payload, i)
        if key == "rules" then
            local rules = {}
            local count
            count, i = map_header(payload, i)
            for _ = 1, count do
                local id, raw
                id, i = at(payload, i)
                raw, i = at(payload, i)
                rules[id] = raw
                pause()
            end
            body.rules = rules
        else
            body[key], i = at(payload, i)
        end
    end
    if i <= #payload then
        error("extra bytes")
    end
    return body
end


-- Decode a payload: {namespace, generation, revision, written_at, rules} or nil, err.
-- pause, when given, is called after every rule (a cooperative yield).
function _M.decode_payload(payload, pause)
    local ok, body
    if pause then
        ok, body = pcall(unpack_yielding, payload, pause)
    else
        ok, body = pcall(mpdecode.unpack, payload)
    end
    if not ok or type(body) ~= "table" or type(body.rules) ~= "table" then
        return nil, "undecodable snapshot payload"
    end
    local rev = tonumber(body.revision)
    if not rev or type(body.namespace) ~= "string" then
        return nil, "undecodable snapshot payload"
    end
    for k, v in pairs(body.rules) do
        if type(k) ~= "string" or type(v) ~= "string" then
            return nil, "undecodable snapshot payload"
        end
    end
    return {
        namespace = body.namespace, generation = tostring(body.generation or ""),
        revision = rev, written_at = tonumber(body.written_at) or 0, rules = body.rules,
        payload = payload,
    }
end


-- Decode snapshot file bytes; nil, err when truncated, corrupt or foreign.
function _M.decode(data)
    local nl = find(data, "\n", 1, true)
    if not nl or nl > 64 then
        return nil, "not a rulegate snapshot (no header line)"
    end
    local magic, sum, len = match(sub(data, 1, nl - 1), "^(%S+) (%x%x%x%x%x%x%x%x) (%d+)$")
    if magic ~= _M.MAGIC then
        return nil, "not a rulegate snapshot (bad header)"
    end
    local payload = sub(data, nl + 1)
    if #payload ~= tonumber(len) then
        return nil, "truncated snapshot: " .. #payload .. " of " .. len .. " payload bytes"
    end
    if format("%08x", crc32(payload)) ~= sum then
        return nil, "snapshot checksum mismatch"
    end
    return _M.decode_payload(payload)
end


function _M.read(path)
    local f, err = io_open(path, "rb")
    if not f then
        return nil, "cannot read snapshot " .. path .. ": " .. tostring(err)
    end
    local data = f:read("*a")
    f:close()
    if not data then
        return nil, "cannot read snapshot " .. path
    end
    return _M.decode(data)
end


local function errno_msg(what, path)
    return what .. " " .. path .. " failed: " .. ffi.string(ffi.C.strerror(ffi.errno()))
end
pcall(ffi.cdef, "char *strerror(int errnum);")


local function write_all(fd, data)
    local off, n = 0, #data
    local p = ffi.cast("const char *", data)
    while off < n do
        local w = C.write(fd, p + off, n - off)
        if w < 0 then
            return false
        end
        off = off + tonumber(w)
    end
    return true
end


-- Write every piece in order (pause between two); true or false.
local function write_pieces(fd, pieces, pause)
    for i, piece in ipairs(pieces) do
        if not write_all(fd, piece) then
            return false
        end
        if pause and i < #pieces then
            pause()
        end
    end
    return true
end


-- Atomically replace the file at path with data (tmp + fsync + rename + dir
-- fsync); data is a string or a list of strings written in order, pause
-- (when given) called between them.
function _M.write_file(path, data, pause)
    local tmp = path .. "." .. C.getpid() .. ".tmp"
    local fd = C.open(tmp, O_WRONLY + O_CREAT + O_TRUNC, 420) -- 0644
    if fd < 0 then
        return nil, errno_msg("open", tmp)
    end
    if not write_pieces(fd, type(data) == "table" and data or { data }, pause) or C.fsync(fd) ~= 0 then
        local err = errno_msg("write", tmp)
        C.close(fd)
        C.unlink(tmp)
        return nil, err
    end
    C.close(fd)
    if C.rename(tmp, path) ~= 0 then
        local err = errno_msg("rename", tmp)
        C.unlink(tmp)
        return nil, err
    end
    local dir = match(path, "^(.*)/[^/]*$") or "."
    local dfd = C.open(dir == "" and "/" or dir, O_RDONLY, 0)
    if dfd >= 0 then
        C.fsync(dfd)
        C.close(dfd)
    end
    return true
end


-- The snapshot file's pieces for a payload given as pieces (its prefix, then
-- runs of rules): the header line, then the pieces; the CRC runs over them
-- with pause between pieces, never over one concatenated copy.
function _M.frame_pieces(pieces, pause, lua_crc)
    local state, crc, len = nil, 0, 0
    local zcrc = not lua_crc and zlib_crc32
    for _, piece in ipairs(pieces) do
        if zcrc then
            crc = tonumber(zcrc(crc, piece, #piece))
        else
            state = running_crc.update(state, piece)
        end
        len = len + #piece
        if pause then
            pause()
        end
    end
    if not zcrc then
        crc = running_crc.finish(state)
    end
    local out = { format("%s %08x %d\n", _M.MAGIC, crc, len) }
    for i, piece in ipairs(pieces) do
        out[i + 1] = piece
    end
    return out
end


function _M.write(path, namespace, generation, revision, raw_rules)
    local data = _M.encode(namespace, generation, revision, floor(ngx.now()), raw_rules)
    return _M.write_file(path, data)
end


return _M
