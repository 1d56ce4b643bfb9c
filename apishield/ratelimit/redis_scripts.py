"""The Lua scripts of ``redis://``: ``algorithms.py`` in Redis, atomically, on Redis's clock.

Each script takes every key it touches in ``KEYS`` (Redis Cluster requires it; the keys of one
call share a hash tag, so one slot). Time is Redis's ``TIME``, never the gateway's, so gateway
hosts with skewed clocks still share exact limits; with effect replication (Redis ≥ 5 default)
a script that reads ``TIME`` replicates safely. Numbers stay integers below 2^53, where Lua's
doubles are exact.

APPLY — ARGV per check ``kind a b member cost dry`` (kinds ``g`` gcra, ``s`` sliding, ``f``
fixed, ``c`` concurrency; ``dry`` 1 to decide without writing). Returns per check ``allowed
applied remaining reset_us retry_us``. Writes happen only when every check allows (all or
nothing).

REFUND — ARGV per check ``kind a member cost``: gives back what an applied check consumed.
"""

from __future__ import annotations

APPLY = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local writes = {}
local all_ok = true
for i = 1, #KEYS do
  local j = (i - 1) * 6
  local kind = ARGV[j + 1]
  local a = tonumber(ARGV[j + 2])
  local b = tonumber(ARGV[j + 3])
  local member = ARGV[j + 4]
  local cost = tonumber(ARGV[j + 5])
  local dry = ARGV[j + 6] == '1'
  local key = KEYS[i]
  local ok, remaining, reset, retry = 1, 0, 0, 0
  if kind == 'g' then
    local base = tonumber(redis.call('GET', key))
    if base == nil or base < now then base = now end
    local new_tat = base + a * cost
    local allow_at = new_tat - a * b
    if now < allow_at then
      ok = 0
      remaining = math.max(0, math.floor((a * b - (base - now)) / a))
      reset = base - now
      retry = allow_at - now
    else
      remaining = math.floor((a * b - (new_tat - now)) / a)
      reset = new_tat - now
      writes[i] = {'g', new_tat, new_tat - now}
    end
  elseif kind == 's' or kind == 'f' then
    local index = math.floor(now / a)
    local v = redis.call('HMGET', key, 'k', 'c', 'p')
    local stored = tonumber(v[1])
    local current = tonumber(v[2]) or 0
    local previous = tonumber(v[3]) or 0
    if stored == nil then
      current, previous = 0, 0
    elseif stored == index - 1 then
      previous, current = current, 0
    elseif stored ~= index then
      current, previous = 0, 0
    end
    if kind == 'f' then
      local fin = (index + 1) * a - now
      reset = fin
      if current + cost <= b then
        current = current + cost
        remaining = b - current
        writes[i] = {'f', index, current, fin}
      else
        ok = 0
        remaining = math.max(0, b - current)
        retry = fin
      end
    else
      local overlap = a - (now - index * a)
      local used = previous * overlap + current * a
      if used + cost * a <= b * a then
        current = current + cost
        used = used + cost * a
        remaining = math.floor((b * a - used) / a)
        writes[i] = {'s', index, current, previous}
      else
        ok = 0
        remaining = math.max(0, math.floor((b * a - used) / a))
        if current + cost > b then
          retry = (index + 1) * a - now
          if current > 0 and b >= cost then
            retry = retry + math.max(0, math.ceil(a * (current - (b - cost)) / current))
          end
        else
          local needed = math.floor((b - current - cost) * a / previous)
          retry = math.max(1, overlap - needed)
        end
      end
      if current > 0 then
        reset = (index + 2) * a - now
      elseif previous > 0 then
        reset = (index + 1) * a - now
      end
    end
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local live = redis.call('ZCARD', key)
    if live + 1 > b then
      ok = 0
      retry = 1000000
    else
      remaining = b - live - 1
      writes[i] = {'c', now + a, member, a}
    end
  end
  if ok == 0 then all_ok = false end
  if dry then writes[i] = nil end
  out[#out + 1] = ok
  out[#out + 1] = 0
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end
if all_ok then
  for i = 1, #KEYS do
    local w = writes[i]
    local key = KEYS[i]
    if w == nil then
      -- a dry check: decided, never written
    elseif w[1] == 'g' then
      redis.call('SET', key, w[2], 'PX', math.ceil(w[3] / 1000) + 1)
    elseif w[1] == 's' then
      redis.call('HSET', key, 'k', w[2], 'c', w[3], 'p', w[4])
      redis.call('PEXPIRE', key, math.ceil(2 * tonumber(ARGV[(i - 1) * 6 + 2]) / 1000))
    elseif w[1] == 'f' then
      redis.call('HSET', key, 'k', w[2], 'c', w[3])
      redis.call('PEXPIRE', key, math.ceil(w[4] / 1000) + 1)
    else
      redis.call('ZADD', key, w[2], w[3])
      redis.call('PEXPIRE', key, math.ceil(w[4] / 1000) + 1)
    end
    if w ~= nil then out[(i - 1) * 5 + 2] = 1 end
  end
end
return out
"""

REFUND = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local j = (i - 1) * 4
  local kind = ARGV[j + 1]
  local a = tonumber(ARGV[j + 2])
  local member = ARGV[j + 3]
  local cost = tonumber(ARGV[j + 4])
  local key = KEYS[i]
  if kind == 'g' then
    local tat = tonumber(redis.call('GET', key))
    if tat ~= nil then
      local new_tat = tat - a * cost
      if new_tat > now then
        redis.call('SET', key, new_tat, 'KEEPTTL')
      else
        redis.call('DEL', key)
      end
    end
  elseif kind == 's' or kind == 'f' then
    local v = redis.call('HMGET', key, 'k', 'c')
    if tonumber(v[1]) == math.floor(now / a) then
      redis.call('HSET', key, 'c', math.max(0, (tonumber(v[2]) or 0) - cost))
    end
  else
    redis.call('ZREM', key, member)
  end
end
return 1
"""

# Bans: KEYS[1] the hash of bans, KEYS[2] its change counter (same hash tag).
BAN_PUT = r"""
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[2])
"""

BAN_LOAD = r"""
return {redis.call('GET', KEYS[2]) or '0', redis.call('TIME')[1], redis.call('HGETALL', KEYS[1])}
"""

BAN_DELETE = r"""
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed > 0 then redis.call('INCR', KEYS[2]) end
return removed
"""
