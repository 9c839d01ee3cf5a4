# -*- test-case-name: tests.message.test_redis_scripts -*-
"""
The Lua scripts of the shared switching table: each operation of
L{netproxy.message.redis_registry} is one script, which Redis runs
atomically, so the invariants listed in L{netproxy.message.registry} hold
however many reverse proxies share the table.

Keys, all under a prefix (C{ARGV[1]}):

 - C{s:<id>}: a hash per registration: C{id} (JSON), C{policy}, C{host},
   C{port}, C{token} (a random text the registering process chose, which
   tells this registration from a later one of the same id), C{lifeline}
   (1 once its setup connection has stayed open);
 - C{p:<policy>}: the rotation, a sorted set of ids scored by registration
   order (C{seq} counts registrations);
 - C{next}: a hash, policy -> the rotation pointer (the index of the server
   due);
 - C{hosts}: a hash, host -> its registrations;
 - C{leases}: a sorted set, id -> when its lease ends (ms, Redis's clock);
 - C{d:<id>}: a down mark: C{token}, C{failures}, C{retry_at} (ms), with
   a time-to-live of its back-off plus a lease.

Every script first drops the registrations whose lease has ended, so no
one reads an expired one.  Times are Redis's own (C{TIME}), so the
instances' clocks never have to agree.  The scripts name their keys from
the prefix rather than declaring them: the table is for a standalone Redis
(or a primary with replicas), not a Redis Cluster.
"""

from netproxy.redis_client import Script

_COMMON = """
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function drop(key)
  local s = P .. 's:' .. key
  local fields = redis.call('HMGET', s, 'policy', 'host')
  local policy, host = fields[1], fields[2]
  if policy then
    local rotation = P .. 'p:' .. policy
    local index = redis.call('ZRANK', rotation, key)
    if index then
      redis.call('ZREM', rotation, key)
      local turn = tonumber(redis.call('HGET', P .. 'next', policy) or '0')
      if redis.call('ZCARD', rotation) == 0 then
        redis.call('HDEL', P .. 'next', policy)
      elseif index < turn then
        -- Keep the rotation pointing at the server that was due next.
        redis.call('HSET', P .. 'next', policy, turn - 1)
      end
    end
  end
  if host then
    if redis.call('HINCRBY', P .. 'hosts', host, -1) <= 0 then
      redis.call('HDEL', P .. 'hosts', host)
    end
  end
  redis.call('DEL', s, P .. 'd:' .. key)
  redis.call('ZREM', P .. 'leases', key)
end
local function prune(now)
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now)) do
    drop(key)
  end
end
local function down_of(key, token)
  local d = redis.call('HMGET', P .. 'd:' .. key, 'token', 'failures', 'retry_at')
  if d[1] and d[1] == token then
    return tonumber(d[2]), tonumber(d[3])
  end
  return 0, -1
end
"""

# ARGV: prefix, id key, id (JSON), policy, host, port, token, lease (ms),
# max servers, max per host.
# -> {"ok", old policy or "", old port or ""} | {"taken", host, port}
#    | {"full", limit, host or ""}
REGISTER = Script(_COMMON + """
local key, id, policy, host, port, token = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local lease, max_servers, max_per_host = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local now = now_ms()
prune(now)
local s = P .. 's:' .. key
local old = redis.call('HMGET', s, 'host', 'policy', 'port')
if old[1] and old[1] ~= host then
  return {'taken', old[1], old[3]}
end
if not old[1] then
  if redis.call('ZCARD', P .. 'leases') >= max_servers then
    return {'full', max_servers, ''}
  end
  if tonumber(redis.call('HGET', P .. 'hosts', host) or '0') >= max_per_host then
    return {'full', max_per_host, host}
  end
end
redis.call('DEL', P .. 'd:' .. key)
if old[1] and old[2] == policy then
  redis.call('HSET', s, 'id', id, 'port', port, 'token', token)
else
  if old[1] then
    drop(key)
  end
  redis.call('HSET', s, 'id', id, 'policy', policy, 'host', host, 'port', port, 'token', token)
  redis.call('ZADD', P .. 'p:' .. policy, redis.call('INCR', P .. 'seq'), key)
  redis.call('HINCRBY', P .. 'hosts', host, 1)
end
redis.call('ZADD', P .. 'leases', now + lease, key)
return {'ok', old[2] or '', old[3] or ''}
""")

# ARGV: prefix, id key, token -> 1 when removed, 0 when it was not current.
REMOVE = Script(_COMMON + """
if redis.call('HGET', P .. 's:' .. ARGV[2], 'token') == ARGV[3] then
  drop(ARGV[2])
  return 1
end
return 0
""")

# ARGV: prefix, policy -> JSON text (one bulk string, cheap to read on the
# message path): [[id key, id, host, port, token, failures, ms until it may
# be tried again or -1]...], the servers to try, the available ones from the
# one due, then the down ones soonest due first; the pointer moves past the
# first of them.
CANDIDATES = Script(_COMMON + """
local policy = ARGV[2]
local now = now_ms()
prune(now)
local keys = redis.call('ZRANGE', P .. 'p:' .. policy, 0, -1)
local n = #keys
if n == 0 then
  return '[]'
end
local start = tonumber(redis.call('HGET', P .. 'next', policy) or '0') % n
local ready, waiting = {}, {}
for i = 0, n - 1 do
  local index = (start + i) % n
  local key = keys[index + 1]
  local f = redis.call('HMGET', P .. 's:' .. key, 'id', 'host', 'port', 'token')
  if f[4] then
    local failures, retry_at = down_of(key, f[4])
    local entry = {key, f[1], f[2], f[3], f[4], failures, retry_at, index, i}
    if retry_at < 0 or now >= retry_at then
      table.insert(ready, entry)
    else
      table.insert(waiting, entry)
    end
  end
end
table.sort(waiting, function(a, b)
  if a[7] ~= b[7] then
    return a[7] < b[7]
  end
  return a[9] < b[9]
end)
local chosen = ready[1] or waiting[1]
if not chosen then
  return '[]'
end
redis.call('HSET', P .. 'next', policy, chosen[8] + 1)
local reply = {}
for _, list in ipairs({ready, waiting}) do
  for _, e in ipairs(list) do
    local wait = -1
    if e[7] >= 0 then
      wait = e[7] - now
    end
    table.insert(reply, {e[1], e[2], e[3], tonumber(e[4]), e[5], e[6], wait})
  end
end
return cjson.encode(reply)
""")

# ARGV: prefix, id key, token, first retry (ms), longest retry (ms), lease
# (ms) -> {failures, wait (ms)}, or {0, 0} when the registration is gone.
MARK_DOWN = Script(_COMMON + """
local key, token = ARGV[2], ARGV[3]
if redis.call('HGET', P .. 's:' .. key, 'token') ~= token then
  return {0, 0}
end
local now = now_ms()
local failures = down_of(key, token) + 1
local wait = math.floor(math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ math.min(failures - 1, 64)))
local d = P .. 'd:' .. key
redis.call('HSET', d, 'token', token, 'failures', failures, 'retry_at', now + wait)
redis.call('PEXPIRE', d, wait + tonumber(ARGV[6]))
return {failures, wait}
""")

# ARGV: prefix, id key, token, lease (ms; 0: leave it) -> 1, or 0 when the
# registration is gone.  Clears the down mark; renews the lease unless it is
# a lifeline's (which lives as long as its connection, wherever it answers).
MARK_UP = Script(_COMMON + """
local key, token, lease = ARGV[2], ARGV[3], tonumber(ARGV[4])
local s = P .. 's:' .. key
if redis.call('HGET', s, 'token') ~= token then
  return 0
end
redis.call('DEL', P .. 'd:' .. key)
if lease > 0 and redis.call('HGET', s, 'lifeline') ~= '1' then
  redis.call('ZADD', P .. 'leases', 'XX', now_ms() + lease, key)
end
return 1
""")

# ARGV: prefix, lease (ms), then (id key, token, lifeline 1/0) for each
# registration a process holds.  Renews those still current (a lifeline's
# always, another's while it is not marked down) and marks the lifelines.
# -> {now, {"ok" | "missing" | "lost"...}, {{id key, id, policy, host, port,
#    token, order, failures, retry_at}...}, {policy, pointer...}}
SYNC = Script(_COMMON + """
local lease = tonumber(ARGV[2])
local now = now_ms()
prune(now)
local statuses = {}
for i = 3, #ARGV - 2, 3 do
  local key, token, lifeline = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local current = redis.call('HGET', P .. 's:' .. key, 'token')
  if not current then
    table.insert(statuses, 'missing')
  elseif current ~= token then
    table.insert(statuses, 'lost')
  else
    local failures = down_of(key, token)
    if lifeline == '1' then
      redis.call('HSET', P .. 's:' .. key, 'lifeline', '1')
    end
    if lifeline == '1' or failures == 0 then
      redis.call('ZADD', P .. 'leases', 'XX', now + lease, key)
    end
    table.insert(statuses, 'ok')
  end
end
local servers = {}
for _, key in ipairs(redis.call('ZRANGE', P .. 'leases', 0, -1)) do
  local f = redis.call('HMGET', P .. 's:' .. key, 'id', 'policy', 'host', 'port', 'token')
  if f[5] then
    local order = redis.call('ZSCORE', P .. 'p:' .. f[2], key) or '0'
    local failures, retry_at = down_of(key, f[5])
    table.insert(servers, {key, f[1], f[2], f[3], f[4], f[5], order, failures, retry_at})
  end
end
return {now, statuses, servers, redis.call('HGETALL', P .. 'next')}
""")
