-- Heady's exact per-subject limiter: heady_shared::sliding_log::LogPolicy::decide, step for
-- step, on Redis keys. One call per request; atomic because Redis runs a script alone.
--
-- KEYS[1] log       sorted set: admitted requests, score = admission time (ms)
-- KEYS[2] attempts  hash {ws, n}: attempts in the fixed window starting at ws (ban rule)
-- KEYS[3] ban       the time the ban ends (ms)
-- KEYS[4] offences  hash {n, exp}: previous bans, remembered until exp (ms)
-- Decisions depend only on `now` and stored times; key TTLs merely collect garbage.
-- ARGV: limit (-1 = unlimited, metered), window_ms, threshold_factor, base_ttl_secs,
--       max_ttl_secs, offence_memory_secs, member nonce, now_ms ('' = Redis TIME)
-- Returns {code, a, b}:
--   0 allowed  {remaining, reset_after_ms}
--   1 limited  {retry_after_ms (-1: never), reset_after_ms}
--   2 banned   {retry_after_ms, newly (0/1)}
--   3 metered  {used_in_window, 0}
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now
if ARGV[8] ~= '' then
  now = tonumber(ARGV[8])
else
  -- One clock for every origin: the Redis server's.
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local banned_until = tonumber(redis.call('GET', KEYS[3]) or '0')
if banned_until > now then
  return {2, banned_until - now, 0}
end

local ws = now - (now % window)
local att = redis.call('HMGET', KEYS[2], 'ws', 'n')
local n = 0
if tonumber(att[1]) == ws then
  n = tonumber(att[2])
end
n = n + 1

if limit < 0 then
  redis.call('HSET', KEYS[2], 'ws', ws, 'n', n)
  redis.call('PEXPIRE', KEYS[2], window)
  return {3, n, 0}
end

local threshold = tonumber(ARGV[3]) * limit
if threshold > 0 and n >= threshold then
  local off = redis.call('HMGET', KEYS[4], 'n', 'exp')
  local offences = 0
  if off[1] and tonumber(off[2]) > now then
    offences = tonumber(off[1])
  end
  local ttl = tonumber(ARGV[4])
  local max = tonumber(ARGV[5])
  for _ = 1, offences do
    if ttl >= max then break end
    ttl = ttl * 2
  end
  if ttl > max then ttl = max end
  local memory = tonumber(ARGV[6]) * 1000
  redis.call('SET', KEYS[3], now + ttl * 1000, 'PX', ttl * 1000)
  redis.call('HSET', KEYS[4], 'n', offences + 1, 'exp', now + memory)
  redis.call('PEXPIRE', KEYS[4], memory)
  redis.call('HSET', KEYS[2], 'ws', ws, 'n', 0)
  redis.call('PEXPIRE', KEYS[2], window)
  return {2, ttl * 1000, 1}
end
redis.call('HSET', KEYS[2], 'ws', ws, 'n', n)
redis.call('PEXPIRE', KEYS[2], window)

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[7])
  redis.call('PEXPIRE', KEYS[1], window)
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, limit - count - 1, tonumber(oldest[2]) + window - now}
end
if limit == 0 then
  return {1, -1, window}
end
local needed = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
local wait = tonumber(needed[2]) + window - now
return {1, wait, wait}
