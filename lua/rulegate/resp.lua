-- A reader of one HSCAN reply off a cosocket that keeps the
-- reply whole: one Lua string for the batch, the field names cut from it and
-- each value's bytes given as offsets into it. lua-resty-redis makes a Lua
-- string of every bulk value; a full load of 10,000 rules made 10,000 long
-- strings in the syncing worker, each interned (LuaJIT hashes a long string by
-- its length and three bytes: rules written from a template share that hash,
-- and interning each one then compares it with every earlier one) and swept.
-- Used by the cluster client for a pipeline given opts.reader; replies in
-- lua-resty-redis's shapes otherwise (an error reply is {false, message}, a
-- status reply its text), so redirects and retries work as for any command.
local ffi = require("ffi")
local ok_buffer, buffer = pcall(require, "string.buffer")
local ok_new_tab, new_tab = pcall(require, "table.new")
if not ok_new_tab then
    new_tab = function()
        return {}
    end
end

local tostring = tostring
local tonumber = tonumber
local concat = table.concat
local sub = string.sub
local cast = ffi.cast
local u8p = ffi.typeof("const uint8_t *")

local _M = { _VERSION = "0.1.0" }

local RECV = 65536 -- receiveany's bound; the cosocket's buffer size bounds it too
local CR, LF = 13, 10
local PRESIZE_MAX = 4096 -- elements an HSCAN batch's lists are presized for (COUNT 500: ~1,000)

-- Whether this nginx can read replies this way (string.buffer: LuaJIT 2.1
-- from 2021; receiveany: lua-nginx-module 0.10.14); the caller falls back to
-- lua-resty-redis when not.
function _M.usable(sock)
    return ok_buffer and sock ~= nil and sock.receiveany ~= nil
end


-- One command as a RESP array of bulk strings.
function _M.encode(args)
    local out = { "*", #args, "\r\n" }
    for i = 1, #args do
        local a = tostring(args[i])
        out[#out + 1] = "$" .. #a .. "\r\n"
        out[#out + 1] = a
        out[#out + 1] = "\r\n"
    end
    return concat(out)
end


-- A reader of the replies on sock, one after another (read_scan): the bytes
-- received and not yet consumed in a string.buffer (receiveany may return the
-- start of the next reply with the end of one) and the offset (0-based) of
-- the next byte to parse in it.
function _M.stream(sock)
    return { sock = sock, sb = buffer.new(), pos = 0 }
end


-- The reply parsed so far consumed (not the bytes after it).
local function consume(st)
    st.sb:skip(st.pos)
    st.pos = 0
end


local function fill(st)
    local data, err = st.sock:receiveany(RECV)
    if not data then
        return nil, err
    end
    st.sb:put(data)
    return true
end


-- The next line: its type byte and the offsets (0-based) of its text after
-- that byte and of its end (the CR); pos moves past the CRLF. nil, err when
-- the connection fails.
local function line(st)
    local from = st.pos
    while true do
        local p, len = st.sb:ref()
        p = cast(u8p, p)
        for k = from, len - 2 do
            if p[k] == CR and p[k + 1] == LF then
                local kind = p[st.pos]
                local start = st.pos + 1
                st.pos = k + 2
                return kind, start, k
            end
        end
        from = len - 1 > st.pos and len - 1 or st.pos -- a CR at the end may be followed by its LF
        local ok, err = fill(st)
        if not ok then
            return nil, err
        end
    end
end


-- The integer in bytes [i, j) of the received data (a length or a count).
local function int_at(st, i, j)
    local p = cast(u8p, (st.sb:ref()))
    local n, neg, k = 0, false, i
    if p[k] == 45 then -- "-"
        neg, k = true, k + 1
    end
    if k >= j then
        return nil
    end
    while k < j do
        local d = p[k] - 48
        if d < 0 or d > 9 then
            return nil
        end
        n = n * 10 + d
        k = k + 1
    end
    return neg and -n or n
end


-- The text of bytes [i, j) (a status or an error line, a cursor).
local function text_at(st, i, j)
    local p = cast(u8p, (st.sb:ref()))
    return ffi.string(p + i, j - i)
end


-- The complete bulk strings among the received bytes from offset pos
-- (0-based) on, elements k .. m of an array: at[k], len[k] each one's offset
-- and length. Returns the next element's index and the offset after the last
-- complete one, or nil, err on a malformed one. Reads only the buffer: no call
-- into the socket (or any C function) inside the loop, so LuaJIT compiles it
-- whole. The loop before called receiveany (a C function that may yield) when
-- a bulk was not all there, and its traces aborted: 0.6-0.9 us a bulk string
-- in the syncing worker, ~0.1 us here (bench/REPORT.md).
local function complete_bulks(p, len, pos, k, m, at, lens)
    while k <= m do
        if pos + 4 > len then -- "$0\r\n" is the shortest header
            break
        end
        if p[pos] ~= 36 then -- "$"
            return nil, "bulk string expected"
        end
        local q, n = pos + 1, 0
        while q < len do
            local d = p[q] - 48
            if d < 0 or d > 9 then
                break
            end
            n = n * 10 + d
            q = q + 1
        end
        if q - pos > 11 then -- more digits than a length that fits in memory
            return nil, "bad bulk string length"
        end
        if q + 1 >= len then -- the header's end is not here yet
            break
        end
        if q == pos + 1 or p[q] ~= CR or p[q + 1] ~= LF then
            return nil, "bad bulk string length"
        end
        local data = q + 2
        if data + n + 2 > len then -- its bytes are not all here yet
            break
        end
        if p[data + n] ~= CR or p[data + n + 1] ~= LF then
            return nil, "bad bulk string terminator"
        end
        at[k], lens[k] = data, n
        pos = data + n + 2
        k = k + 1
    end
    return k, pos
end


-- Bulk strings 1 .. m from st.pos on (at[k], lens[k]: each one's offset and
-- length), receiving more bytes while they are not all there; st.pos moves
-- past them. true, or nil, err.
local function read_bulks(st, m, at, lens)
    local k, pos = 1, st.pos
    while true do
        local p, len = st.sb:ref()
        local after
        k, after = complete_bulks(cast(u8p, p), len, pos, k, m, at, lens)
        if not k then
            return nil, after
        end
        pos = after
        if k > m then
            st.pos = pos
            return true
        end
        local ok, err = fill(st)
        if not ok then
            return nil, err
        end
    end
end


-- The field/value array of an HSCAN reply after its header (m elements):
-- out gets the reply's string and each field and value's place in it, or nil, err.
local function field_values(st, m, out)
    local size = m < PRESIZE_MAX and m or PRESIZE_MAX -- a reply's own count is not trusted for memory
    local at, lens = new_tab(size, 0), new_tab(size, 0)
    local ok, err = read_bulks(st, m, at, lens)
    if not ok then
        return nil, err
    end
    local s = st.sb:get(st.pos) -- the reply's bytes, one string; what follows it stays
    st.pos = 0
    local ids, first, last = new_tab(size / 2, 0), new_tab(size / 2, 0), new_tab(size / 2, 0)
    for j = 1, m / 2 do
        local f, v = 2 * j - 1, 2 * j
        ids[j] = sub(s, at[f] + 1, at[f] + lens[f])
        first[j], last[j] = at[v] + 1, at[v] + lens[v]
    end
    out.s, out.n, out.ids, out.first, out.last = s, m / 2, ids, first, last
    return out
end


-- The next reply of stream st: an error reply as {false, message}; a status reply as
-- its text (ASKING's); an HSCAN reply (cursor, field/value array) as
-- { cursor, s, n, ids, first, last }: field k is ids[k], its value
-- s:sub(first[k], last[k]). nil, err when the connection fails or the reply
-- has another shape (the connection is then not reusable).
function _M.read_scan(st)
    local kind, i, j = line(st)
    if not kind then
        return nil, i
    end
    if kind == 45 or kind == 43 then -- "-", "+"
        local text = text_at(st, i, j)
        consume(st)
        if kind == 45 then
            return { false, text }
        end
        return text
    end
    if kind ~= 42 or int_at(st, i, j) ~= 2 then -- "*2"
        return nil, "HSCAN reply expected, got " .. text_at(st, i - 1, j)
    end
    local at, n = {}, {}
    local ok, err = read_bulks(st, 1, at, n)
    if not ok then
        return nil, err
    end
    local out = { cursor = text_at(st, at[1], at[1] + n[1]) }
    kind, i, j = line(st)
    if not kind then
        return nil, i
    end
    local m = kind == 42 and int_at(st, i, j)
    if not m or m < 0 or m % 2 == 1 then
        return nil, "HSCAN reply: bad field/value array"
    end
    return field_values(st, m, out)
end


return _M
