-- The whole rule set in the shared dict, as chunks: what a new or lagging
-- worker starts from (docs/design.md "Reads"). A header record names the
-- payload's chunks; each chunk holds up to CHUNK rules as msgpack (id, bin)
-- pairs, the same bytes as a piece of the snapshot payload's "rules" map, so
-- chunks are written, read and decoded with yields between them.
--
-- Consistency: chunks are never changed in place. A write puts new chunks
-- under a new payload id, then replaces the header in one set; readers take
-- the header once and read only that header's chunks. The previous payload's
-- chunks stay until the next write (a reader that started on it can finish);
-- a reader that finds a chunk gone (two writes during its read) retries.
-- A payload may also borrow chunks of the current one (writer's add_key: a
-- checkpoint after a few changes writes only the chunks that hold them): a
-- chunk is deleted when no header in the dict (current, previous, being
-- written) names it any more.
local mp = require("MessagePack")
local mpdecode = require("rulegate.mpdecode")
local snapshot = require("rulegate.snapshot")
local has_buffer, buffer = pcall(require, "string.buffer")

local ngx = ngx
local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local concat = table.concat
local sub = string.sub
local worker_pid = ngx.worker.pid
local now = ngx.now

local _M = { _VERSION = "0.1.0", CHUNK = 256 }

local HEAD = "rs:phead" -- header of the current payload (msgpack map)
local PREV = "rs:pprev" -- header of the payload it replaced (chunks kept for readers)
local WRITING = "rs:pwriting" -- header of a payload being written (chunks removed if it never finishes)
-- the one-value payload of earlier releases and the version it holds: what a
-- SIGHUP onto this release finds in the dict until the first write
local LEGACY, LEGACY_VER = "rs:payload", "rs:payload_ver"
_M.HEAD = HEAD

local seq = 0


local function chunk_key(id, i)
    return "rs:pc:" .. id .. ":" .. i
end


-- The dict key of chunk i of the payload whose header is head: its own, or
-- the one it borrowed (head.borrowed[i]).
local function key_of(head, i)
    local borrowed = head.borrowed
    return borrowed and borrowed[i] or chunk_key(head.id, i)
end
_M.key_of = key_of


local function decode_head(raw)
    if not raw then
        return nil
    end
    local ok, head = pcall(mpdecode.unpack, raw)
    if not ok or type(head) ~= "table" or type(head.id) ~= "string" or type(head.n) ~= "number" then
        return nil
    end
    return head
end


-- The header of an earlier release's one-value payload (id "legacy", no
-- chunks), or nil.
local function legacy_head(dict)
    local ver = dict:get(LEGACY_VER)
    if ver == nil and dict:get("rs:pending") == nil then
        ver = dict:get("rs:ver") -- a release that rewrote the payload on every change
    end
    if ver == nil or dict:get(LEGACY) == nil then
        return nil
    end
    return { id = "legacy", n = 0, ver = ver }
end


-- The current payload's header: {id, n (chunks), ver, namespace, generation,
-- revision, written_at, count, bytes}, or nil when none was written.
function _M.head(dict)
    return decode_head(dict:get(HEAD)) or legacy_head(dict)
end


-- Read an earlier release's payload (see read).
local function read_legacy(dict, head, fn, pause)
    local snap = snapshot.decode_payload(dict:get(LEGACY) or "", pause)
    if not snap or legacy_head(dict) == nil or legacy_head(dict).ver ~= head.ver then
        return nil, "the payload was replaced during the read", true
    end
    head.namespace, head.generation, head.revision = snap.namespace, snap.generation, snap.revision
    head.written_at, head.count = snap.written_at, 0
    for id, value in pairs(snap.rules) do
        if pause then
            pause()
        end
        local ok, err = fn(id, value, head)
        if not ok then
            return nil, err
        end
        head.count = head.count + 1
    end
    return head
end


-- Delete the header at key and its chunks, but those another header in the
-- dict (HEAD, PREV, WRITING) names.
local function drop(dict, key)
    local head = decode_head(dict:get(key))
    if head then
        local keep = {}
        for _, other in ipairs({ HEAD, PREV, WRITING }) do
            local h = other ~= key and decode_head(dict:get(other))
            if h and h.id ~= "legacy" then
                for i = 1, h.n do
                    keep[key_of(h, i)] = true
                end
            end
        end
        for i = 1, head.n do
            local k = key_of(head, i)
            if not keep[k] then
                dict:delete(k)
            end
        end
    end
    dict:delete(key)
end


-- A payload written one rule at a time (meta as in write()): w:add(id, bytes)
-- per rule, then w:finish(ver) makes it the current payload of dict version
-- ver (meta.ver when nil) and returns its header, or w:abort() drops what was
-- written. Each chunk goes to the dict when full and is not kept: a full load
-- does not hold the payload's bytes while it builds it. add and finish return
-- nil, err when the dict is full (the writer is aborted then; the current
-- payload is unchanged). w:seal() stores the open chunk, w:key_of(i) names
-- chunk i (1 .. w.head.n). keep: the chunks are also kept in w.chunks (a list).
-- place, when given: place[id] = the dict key of the chunk each added rule
-- is written to (add_key's borrowed chunks are not read: not listed).
function _M.writer(dict, meta, keep, place)
    drop(dict, PREV) -- no reader still reads the payload before the current one
    drop(dict, WRITING) -- left by a write that failed half-way
    seq = seq + 1
    local head = {
        id = worker_pid() .. "." .. seq .. "." .. now(), n = 0, ver = meta.ver, namespace = meta.namespace,
        generation = meta.generation, revision = meta.revision, written_at = meta.written_at, count = 0, bytes = 0,
        checked = meta.checked, counts = {}, -- counts[i]: the rules in chunk i
        sizes = {}, -- sizes[i]: its bytes
    }
    local w = { head = head, chunks = keep and {} or nil }
    -- the open chunk's bytes: a string.buffer (a rule given in place in a
    -- larger string is copied from it), else a list of strings
    local sb = has_buffer and buffer.new() or nil
    local buf, in_chunk = {}, 0
    local open_key = nil -- the dict key of the chunk being filled (for place), made once per chunk
    local function store(chunk, count)
        open_key = nil
        head.n = head.n + 1
        head.counts[head.n] = count
        head.sizes[head.n] = #chunk
        dict:set(WRITING, mp.pack(head))
        local ok, err = dict:safe_set(chunk_key(head.id, head.n), chunk)
        if not ok then
            drop(dict, WRITING)
            return nil, "cannot store the rule set in the shared dict: " .. tostring(err)
        end
        if keep then
            w.chunks[head.n] = chunk
        end
        head.bytes = head.bytes + #chunk
        return true
    end
    local function flush()
        local chunk, count = nil, in_chunk
        if sb then
            chunk = sb:tostring()
            sb:reset()
        else
            chunk, buf = concat(buf), {}
        end
        in_chunk = 0
        return store(chunk, count)
    end
    local function flush_open() -- the rules added since the last chunk, if any
        if in_chunk > 0 then
            return flush()
        end
        return true
    end
    -- Add rule id, its bytes raw (raw:sub(first, last) with first, last).
    function w.add(_, id, raw, first, last)
        if sb then
            snapshot.put_rule(sb, id, raw, first, last)
        else
            snapshot.pack_rule(buf, id, first and sub(raw, first, last) or raw)
        end
        if place then
            open_key = open_key or chunk_key(head.id, head.n + 1)
            place[id] = open_key
        end
        head.count, in_chunk = head.count + 1, in_chunk + 1
        if in_chunk >= _M.CHUNK then
            return flush()
        end
        return true
    end
    -- Chunk key (a chunk of the current payload: key_of, counts[i], sizes[i])
    -- borrowed whole, not copied: after the rules added so far.
    function w.add_key(_, key, count, size)
        local ok, err = flush_open()
        if not ok then
            return nil, err
        end
        open_key = nil
        head.n = head.n + 1
        head.counts[head.n], head.sizes[head.n] = count, size
        head.borrowed = head.borrowed or {}
        head.borrowed[head.n] = key
        head.count, head.bytes = head.count + count, head.bytes + (size or 0)
        dict:set(WRITING, mp.pack(head))
        return true
    end
    function w.finish(_, ver)
        if ver ~= nil then
            head.ver = ver
        end
        local ok, err = flush_open()
        if not ok then
            return nil, err
        end
        local old = dict:get(HEAD)
        local ok, err = dict:safe_set(HEAD, mp.pack(head))
        if not ok then
            drop(dict, WRITING)
            return nil, "cannot store the rule set in the shared dict: " .. tostring(err)
        end
        if old then
            dict:set(PREV, old)
        end
        dict:delete(WRITING)
        dict:delete(LEGACY)
        dict:delete(LEGACY_VER)
        return head
    end
    function w.abort()
        drop(dict, WRITING)
    end
    -- Store the rules added since the last chunk as a chunk now (true, or nil,
    -- err as add), so every rule added is in a chunk w:key_of(1 .. w.head.n)
    -- names (the syncing worker checks those chunks in a thread pool).
    function w.seal()
        return flush_open()
    end
    function w.key_of(_, i)
        return key_of(head, i)
    end
    return w
end


-- Write raw_rules ({id = stored bytes}) as the current payload of dict version
-- meta.ver (meta: namespace, generation, revision, written_at, checked: who
-- checked every rule, kept in the header for readers); pause, when
-- given, is called after every rule. Returns the header and the chunks (a list
-- of strings: the snapshot payload's rules, snapshot.payload_prefix before
-- them), or nil, err (the current payload is unchanged).
function _M.write(dict, meta, raw_rules, pause)
    local w = _M.writer(dict, meta, true)
    for id, raw in pairs(raw_rules) do
        local ok, err = w:add(id, raw)
        if not ok then
            return nil, err
        end
        if pause then
            pause()
        end
    end
    local head, err = w:finish()
    if not head then
        return nil, err
    end
    return head, w.chunks
end


-- Chunk i of the payload whose header is head (nil when it was dropped: two
-- payloads were written since).
function _M.chunk(dict, head, i)
    return dict:get(key_of(head, i))
end


-- Read the current payload chunk by chunk: fn(id, stored bytes, header, the
-- chunk's dict key) for every rule (fn returns false, err to stop), pause before every rule. Returns the
-- header read, or nil, err, retry (true: it was replaced twice during the read,
-- or it is not the payload id want, when given). With at_offsets, fn(id, s, i,
-- j, header, key): the rule's bytes are s:sub(i, j), not cut (snapshot.each_rule_at).
function _M.read(dict, fn, pause, want, at_offsets)
    local head = _M.head(dict)
    if not head then
        return nil, "no payload in the shared dict", true
    elseif want ~= nil and head.id ~= want then
        return nil, "the payload was replaced", true
    elseif head.id == "legacy" then
        if at_offsets then
            local with_offsets = fn
            fn = function(id, raw, h, key)
                return with_offsets(id, raw, 1, #raw, h, key)
            end
        end
        return read_legacy(dict, head, fn, pause)
    end
    for i = 1, head.n do
        local key = key_of(head, i)
        local chunk = dict:get(key)
        if not chunk then
            return nil, "the payload was replaced during the read", true
        end
        local ok, err
        if at_offsets then -- fn(id, s, i, j, head, key): the bytes are s:sub(i, j), not cut
            ok, err = snapshot.each_rule_at(chunk, function(id, s, i, j)
                if pause then
                    pause()
                end
                return fn(id, s, i, j, head, key)
            end)
        else
            ok, err = snapshot.each_rule(chunk, function(id, raw)
                if pause then
                    pause()
                end
                return fn(id, raw, head, key)
            end)
        end
        if not ok then
            return nil, err
        end
    end
    return head
end


return _M
