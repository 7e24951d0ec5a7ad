-- Heady's exact per-subject limiter: heady_shared::sliding_log::LogPolicy::decide, step for
-- step, on two Redis keys. One call per request; atomic because Redis runs a script alone.
--
-- KEYS[1] log    sorted set: admitted requests, score = admission time (ms)
-- KEYS[2] state  hash: bu (ban ends, ms), ws/n (attempts n in the fixed window starting at ws),
--                on/oe (offences on, remembered until oe ms)
-- ARGV: limit (-1 = unlimited, metered), window_ms, threshold_factor, base_ttl_secs,
--       max_ttl_secs, offence_memory_secs, member nonce, now_ms ('' = Redis TIME)
-- Decisions depend only on `now` and stored times; key TTLs merely collect garbage.
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

local st = redis.call('HMGET', KEYS[2], 'bu', 'ws', 'n', 'on', 'oe')
local banned_until = tonumber(st[1]) or 0
if banned_until > now then
  return {2, banned_until - now, 0}
end

local ws = now - (now % window)
local n = 0
if tonumber(st[2]) == ws then
  n = tonumber(st[3])
end
n = n + 1

-- The state's TTL is set when a window starts (n == 1) or a ban is imposed; in between, the
-- TTL set then still covers the window and any remembered offence, so it is not refreshed.
if limit < 0 then
  redis.call('HSET', KEYS[2], 'ws', ws, 'n', n)
  if n == 1 then
    redis.call('PEXPIRE', KEYS[2], math.max(window, (tonumber(st[5]) or 0) - now))
  end
  return {3, n, 0}
end

local threshold = tonumber(ARGV[3]) * limit
if threshold > 0 and n >= threshold then
  local offences = 0
  if (tonumber(st[5]) or 0) > now then
    offences = tonumber(st[4])
  end
  local ttl = tonumber(ARGV[4])
  local max = tonumber(ARGV[5])
  for _ = 1, offences do
    if ttl >= max then break end
    ttl = ttl * 2
  end
  if ttl > max then ttl = max end
  local memory = tonumber(ARGV[6]) * 1000
  redis.call('HSET', KEYS[2], 'bu', now + ttl * 1000, 'ws', ws, 'n', 0,
    'on', offences + 1, 'oe', now + memory)
  -- The state must outlive the offence memory (and so the ban, which is shorter or equal).
  redis.call('PEXPIRE', KEYS[2], math.max(memory, ttl * 1000))
  return {2, ttl * 1000, 1}
end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
redis.call('HSET', KEYS[2], 'ws', ws, 'n', n)
if n == 1 then
  redis.call('PEXPIRE', KEYS[2], math.max(window, (tonumber(st[5]) or 0) - now))
end
if count < limit then
  -- The member is the request's random nonce; the score is its time.
  redis.call('ZADD', KEYS[1], now, ARGV[7])
  redis.call('PEXPIRE', KEYS[1], window)
  -- Every slot is free again one window after this, the newest admission.
  return {0, limit - count - 1, window}
end
if limit == 0 then
  return {1, -1, window}
end
local needed = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
local wait = tonumber(needed[2]) + window - now
return {1, wait, wait}
