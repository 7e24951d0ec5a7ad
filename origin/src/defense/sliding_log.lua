-- Heady's exact per-subject limiter: heady_shared::sliding_log::LogPolicy::decide, step for
-- step, on one Redis hash per subject. One call per request; atomic because Redis runs a
-- script alone. Redis 7's Lua bridge costs a few microseconds per redis.call, so the whole
-- state is one hash read and one hash write.
--
-- KEYS[1] state  hash: bu (ban ends, ms), ws/n (attempts n in the fixed window starting at
--                ws), on/oe (offences on, remembered until oe ms), log (the admission times,
--                oldest first, at most `limit` of them, each an 8-byte big-endian double)
-- ARGV: limit (-1 = unlimited, metered), window_ms, threshold_factor, base_ttl_secs,
--       max_ttl_secs, offence_memory_secs, now_ms ('' = Redis TIME)
-- Decisions depend only on `now` and stored times; the key's TTL merely collects garbage.
-- Returns {code, a, b}:
--   0 allowed  {remaining, reset_after_ms}
--   1 limited  {retry_after_ms (-1: never), reset_after_ms}
--   2 banned   {retry_after_ms, newly (0/1)}
--   3 metered  {used_in_window, 0}
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now
if ARGV[7] ~= '' then
  now = tonumber(ARGV[7])
else
  -- One clock for every origin: the Redis server's.
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local st = redis.call('HMGET', KEYS[1], 'bu', 'ws', 'n', 'on', 'oe', 'log')
local banned_until = tonumber(st[1]) or 0
if banned_until > now then
  return {2, banned_until - now, 0}
end

local ws = now - (now % window)
local n = 0
if tonumber(st[2]) == ws then
  n = tonumber(st[3]) or 0
end
n = n + 1
local offences_until = tonumber(st[5]) or 0

-- The TTL is set when a window starts or a ban is imposed: two windows cover every admission
-- of this window, and offences are kept as long as they are remembered.
local function keep_for(extra)
  redis.call('PEXPIRE', KEYS[1], math.max(2 * window, offences_until - now, extra))
end

if limit < 0 then
  redis.call('HSET', KEYS[1], 'ws', ws, 'n', n)
  if n == 1 then keep_for(0) end
  return {3, n, 0}
end

local threshold = tonumber(ARGV[3]) * limit
if threshold > 0 and n >= threshold then
  local offences = 0
  if offences_until > now then
    offences = tonumber(st[4]) or 0
  end
  local ttl = tonumber(ARGV[4])
  local max = tonumber(ARGV[5])
  for _ = 1, offences do
    if ttl >= max then break end
    ttl = ttl * 2
  end
  if ttl > max then ttl = max end
  offences_until = now + tonumber(ARGV[6]) * 1000
  redis.call('HSET', KEYS[1], 'bu', now + ttl * 1000, 'ws', ws, 'n', 0,
    'on', offences + 1, 'oe', offences_until)
  keep_for(ttl * 1000)
  return {2, ttl * 1000, 1}
end

local log = st[6] or ''
local len = #log / 8
-- A lower limit than when the log was written (a tier change) keeps the newest entries.
if len > limit then
  log = string.sub(log, (len - limit) * 8 + 1)
  len = limit
end
local function at(i) -- 0-based
  return struct.unpack('>d', log, i * 8 + 1)
end
-- The first entry still inside the window: at + window > now.
local lo, hi = 0, len
while lo < hi do
  local mid = math.floor((lo + hi) / 2)
  if at(mid) + window > now then hi = mid else lo = mid + 1 end
end
local count = len - lo

if count < limit then
  local entry = struct.pack('>d', now)
  if len == limit then
    log = string.sub(log, 9) .. entry
  else
    log = log .. entry
  end
  redis.call('HSET', KEYS[1], 'ws', ws, 'n', n, 'log', log)
  if n == 1 then keep_for(0) end
  -- Every slot is free again one window after this, the newest admission.
  return {0, limit - count - 1, window}
end
redis.call('HSET', KEYS[1], 'ws', ws, 'n', n)
if n == 1 then keep_for(0) end
if limit == 0 then
  return {1, -1, window}
end
-- count == limit == len: the oldest entry must leave the window for a slot to open.
local wait = at(0) + window - now
return {1, wait, wait}
