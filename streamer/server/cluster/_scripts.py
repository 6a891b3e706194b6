"""The Lua scripts of the Redis control plane: each runs atomically in Redis, so two
replicas never both claim a session, and a key's sessions or characters across the
cluster are counted and charged in one step.

Key layout (``P`` is the prefix, ``tts:``):

- ``P s:<id>``: hash of one session (``replica``, ``key``, ``attached``, ``config``,
  ``json``), with the session TTL; a heartbeat rewrites it;
- ``P sessions``: sorted set of session ids by expiry (ms), for listing;
- ``P r:<replica>``: the replica's load and capacity (JSON), with the session TTL;
- ``P slots:<key>``: hash replica → sessions the key holds there;
- ``P chars:<key>``: sorted set of the key's charges in the last window, by time.

Scripts touch keys they are not passed in ``KEYS`` (one per session, per replica): they
need a standalone Redis or Valkey, not Redis Cluster (one instance holds hundreds of
replicas' directory with room to spare).
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "tts:"

#: ARGV: prefix, replica, ttl_ms, then (id, key, attached, config, json) per session.
#: Writes each session this replica holds, unless another replica claimed it since
#: (those ids are returned: the caller drops its copy). Once attached, an entry stays
#: attached (a heartbeat taken just before a claim must not undo it).
REGISTER: Final = """
local p, me, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
local lost = {}
for i = 4, #ARGV, 5 do
  local id = ARGV[i]
  local k = p .. 's:' .. id
  local owner = redis.call('HGET', k, 'replica')
  if owner and owner ~= me then
    lost[#lost + 1] = id
  else
    local attached = ARGV[i + 2]
    if redis.call('HGET', k, 'attached') == '1' then attached = '1' end
    redis.call('HSET', k, 'replica', me, 'key', ARGV[i + 1], 'attached', attached,
               'config', ARGV[i + 3], 'json', ARGV[i + 4])
    redis.call('PEXPIRE', k, ttl)
    redis.call('ZADD', p .. 'sessions', expiry, id)
  end
end
return lost
"""

#: ARGV: prefix, replica, ids... Removes each session's entry if ``replica`` holds it
#: (a replica that lost a session to a claim must not remove the new holder's entry).
REMOVE: Final = """
local p, owner = ARGV[1], ARGV[2]
for i = 3, #ARGV do
  local k = p .. 's:' .. ARGV[i]
  if redis.call('HGET', k, 'replica') == owner then
    redis.call('DEL', k)
    redis.call('ZREM', p .. 'sessions', ARGV[i])
  end
end
return 0
"""

#: ARGV: prefix. Every live session: flat (id, replica, key, attached, json) list.
#: Expired ids leave the index on the way.
LIST: Final = """
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', p .. 'sessions', '-inf', now)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', p .. 'sessions', 0, -1)) do
  local v = redis.call('HMGET', p .. 's:' .. id, 'replica', 'key', 'attached', 'json')
  if v[1] then
    for _, x in ipairs({id, v[1], v[2] or '', v[3] or '0', v[4] or '{}'}) do
      out[#out + 1] = x
    end
  end
end
return out
"""

#: ARGV: prefix, id, replica, ttl_ms. Attach a session that is not attached yet to
#: ``replica``: {'ok', previous replica, config} or {'unknown'} or {'in_use'}.
CLAIM: Final = """
local p, id, me, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local k = p .. 's:' .. id
local v = redis.call('HMGET', k, 'replica', 'attached', 'config')
if not v[1] then return {'unknown'} end
if v[2] == '1' then return {'in_use'} end
redis.call('HSET', k, 'replica', me, 'attached', '1')
redis.call('PEXPIRE', k, ttl)
return {'ok', v[1], v[3]}
"""

#: ARGV: prefix, id, replica. Gives back a claim ``replica`` holds (its ``connect`` was
#: refused after the claim): the session stays there, attached to nothing.
UNCLAIM: Final = """
local k = ARGV[1] .. 's:' .. ARGV[2]
if redis.call('HGET', k, 'replica') == ARGV[3] then
  redis.call('HSET', k, 'attached', '0')
end
return 0
"""

#: ARGV: prefix, id, message, this replica. Publishes ``message`` on the channel of the
#: replica holding the session, in one round trip: {} when there is no such session
#: (or this replica holds it), else {replica, subscribers reached} (0: it is gone).
ROUTE: Final = """
local p, id, message, me = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local replica = redis.call('HGET', p .. 's:' .. id, 'replica')
if not replica or replica == me then return {} end
return {replica, redis.call('PUBLISH', p .. 'c:' .. replica, message)}
"""

#: KEYS[1]: the key's slots hash. ARGV: replica prefix, replica, max, this replica's
#: count with the new session. Counts the other live replicas' sessions of the key
#: (a dead replica's field is dropped: its replica entry expired); if they and ours
#: fit in ``max``, records ours. Returns {1 or 0, the others' count}.
SLOTS: Final = """
local rp, me, max, mine = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local others = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f = all[i]
  if f ~= me then
    if redis.call('EXISTS', rp .. f) == 1 then
      others = others + tonumber(all[i + 1])
    else
      redis.call('HDEL', KEYS[1], f)
    end
  end
end
if max > 0 and others + mine > max then return {0, others} end
redis.call('HSET', KEYS[1], me, mine)
return {1, others}
"""

#: KEYS[1]: the key's charges. ARGV: chars, limit, window_ms, member (unique, ``<chars>:
#: <id>``). Charges ``chars`` if the window's total stays within ``limit``: {1}; else
#: {0, ms until it would fit (or -1: never), characters used}. Time is Redis's own,
#: so the replicas' clocks do not matter.
CHARGE: Final = """
local chars, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do
  used = used + tonumber(string.match(entries[i], '^(%d+):'))
end
if used + chars <= limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1}
end
if chars > limit then return {0, -1, used} end
local freed = 0
for i = 1, #entries, 2 do
  freed = freed + tonumber(string.match(entries[i], '^(%d+):'))
  if used - freed + chars <= limit then
    return {0, tonumber(entries[i + 1]) + window - now, used}
  end
end
return {0, window, used}
"""
