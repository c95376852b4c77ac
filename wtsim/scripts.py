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
