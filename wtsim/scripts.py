"""The Lua scripts: compare-and-set (versioned mode) and leases, each in one round trip.

Redis runs a script atomically, so "read the version that is there, compare,
write" cannot interleave with another client's write. Both scripts read the
envelope of :mod:`wtsim.codec` (``{"v": version, "d": data}`` or
``{"v": version, "t": 1}``) with Redis' built-in cjson. A payload that does not
decode as an envelope (corrupt, foreign) has no version and is overwritten.

Arguments: ``KEYS[1]`` the entry key; ``ARGV[1]`` the payload; ``ARGV[2]`` the
version (``""`` for unknown); ``ARGV[3]`` the TTL in milliseconds (``""`` for
none).
"""

# Refuse when the entry or tombstone present is newer, or is a tombstone of
# unknown version; otherwise store. Answer 1 (stored) or 0 (refused).
SET_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, env = pcall(cjson.decode, current)
  if ok and type(env) == 'table' and (env['t'] == 1 or type(env['d']) == 'table') then
    local v = env['v']
    if env['t'] == 1 and type(v) ~= 'number' then return 0 end
    if type(v) == 'number' and v > tonumber(ARGV[2]) then return 0 end
  end
end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
end
return 1
"""

# Replace the entry by a tombstone unless what is present already covers this
# version: an entry at least as new, or a tombstone as new or of unknown
# version. An unknown version (ARGV[2] == '') always writes the tombstone.
TOMBSTONE = """
if ARGV[2] ~= '' then
  local current = redis.call('GET', KEYS[1])
  if current then
    local ok, env = pcall(cjson.decode, current)
    if ok and type(env) == 'table' and (env['t'] == 1 or type(env['d']) == 'table') then
      local v = env['v']
      if env['t'] == 1 and type(v) ~= 'number' then return 0 end
      if type(v) == 'number' and v >= tonumber(ARGV[2]) then return 0 end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

# Leases (KEYS[1] the entry key; ARGV[1] the lease envelope; ARGV[2] its TTL in
# milliseconds). Grant the lease unless a value or a live lease is at the key:
# a tombstone or a foreign payload gives way, since only a lease holder may
# populate. Answer 1 (granted), or the payload that is there.
LEASE = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, env = pcall(cjson.decode, current)
  if ok and type(env) == 'table' and (type(env['d']) == 'table' or type(env['l']) == 'string') then
    return current
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Populate only while our lease is still at the key (KEYS[1]; ARGV[1] the
# payload; ARGV[2] our lease envelope, compared byte for byte; ARGV[3] the TTL
# in milliseconds, "" for none). Answer 1 (stored) or 0 (refused).
SET_LEASED = """
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
end
return 1
"""

# -- write-behind --------------------------------------------------------------------------
# Their own arguments, given above each. A dirty entry is built by concatenation,
# exactly as wtsim.codec.dirty_payload builds it, so the flusher can compare bytes.

# Queue a write (KEYS[1] the entry key, KEYS[2] the stream; ARGV[1] the row as
# JSON, ARGV[2] the base version or "", ARGV[3] max_pending, ARGV[4] the
# namespace, ARGV[5] the entity id as JSON). The new version is one more than
# the cached entry's (value or tombstone), else than the base. Answers
# {0, pending} when the stream is full, {-1, pending} when the base is needed,
# {version, stream entry id} when written. SET without EX: a dirty entry has no
# TTL, so no volatile-* maxmemory policy evicts it.
QUEUE_WRITE = """
local pending = redis.call('XLEN', KEYS[2])
if pending >= tonumber(ARGV[3]) then return {0, pending} end
local version
local current = redis.call('GET', KEYS[1])
if current then
  local ok, env = pcall(cjson.decode, current)
  if ok and type(env) == 'table' and type(env['v']) == 'number'
     and (type(env['d']) == 'table' or env['t'] == 1) then
    version = env['v'] + 1
  end
end
if not version then
  if ARGV[2] == '' then return {-1, pending} end
  version = tonumber(ARGV[2]) + 1
end
local v = string.format('%d', version)
redis.call('SET', KEYS[1], '{"v":' .. v .. ',"w":1,"d":' .. ARGV[1] .. '}')
local id = redis.call('XADD', KEYS[2], '*', 'ns', ARGV[4], 'id', ARGV[5], 'v', v, 'p', ARGV[1])
return {version, id}
"""

# Populate on a miss (KEYS[1]; ARGV[1] the payload; ARGV[2] the TTL in
# milliseconds, "" for none) unless a value, dirty or clean, is there: a
# tombstone, a lease or a foreign payload gives way. Answer 1 (stored) or 0.
POPULATE = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, env = pcall(cjson.decode, current)
  if ok and type(env) == 'table' and type(env['d']) == 'table' then return 0 end
end
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""

# Un-pin flushed entries (KEYS: entry keys; ARGV[1] the TTL in milliseconds, ""
# for none; then per key its dirty payload and its clean payload). Only an
# entry still holding that exact dirty payload is replaced: a newer write stays
# pinned. Answer how many were replaced.
UNPIN = """
local done = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[2 * i] then
    if ARGV[1] == '' then
      redis.call('SET', key, ARGV[2 * i + 1])
    else
      redis.call('SET', key, ARGV[2 * i + 1], 'PX', ARGV[1])
    end
    done = done + 1
  end
end
return done
"""
