-- One rate-limit decision for one subject, atomically, in one round trip.
-- The same integer math as heady_shared::limiter::SubjectPolicy::decide; keep the two in step.
--
-- KEYS[1]  window hash: ws (window start ms), p (prev), c (curr), a (attempts this window),
--          b (banned-until ms, a copy of KEYS[2] so the common path reads one key)
-- KEYS[2]  ban key: value = banned-until ms, expires with the ban (what other readers check)
-- KEYS[3]  offences hash: n (count), exp (ms at which they are forgotten)
--          All three share a {hash tag} so they live on one Redis Cluster slot.
-- ARGV[1]  now in ms, or "" to read the Redis server clock (TIME): every origin then decides
--          on one clock. A number is for tests that replay fixed times.
-- ARGV[2]  window ms          ARGV[3] limit (-1 = unlimited: counted, never refused)
-- ARGV[4]  cost               ARGV[5] ban threshold factor (0 = never ban)
-- ARGV[6]  base ban secs      ARGV[7] max ban secs      ARGV[8] offence memory secs
--
-- Returns {code, remaining, reset_after_ms, retry_after_ms, banned_until_ms, now_ms}
--   code 1 allowed, 0 limited, 2 banned (earlier), 3 banned by this request, 4 metered
--   remaining: for code 4, the cost used in this window
--   retry_after_ms: -1 when cost > limit (never admitted)
--
-- Lua numbers are doubles, exact for integers below 2^53; the caller keeps limit * window_ms
-- below 2^51 so every sum here stays exact, and Redis writes numbers back with %.17g.
-- The common path is three calls (TIME, HMGET, HSET): each redis.call is most of the cost.

local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + idiv(tonumber(t[2]), 1000)
end
local w = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])

local s = redis.call('HMGET', KEYS[1], 'ws', 'p', 'c', 'a', 'b')
local banned_until = tonumber(s[5]) or 0
if banned_until > now then
  return {2, 0, banned_until - now, banned_until - now, banned_until, now}
end
local ws = tonumber(s[1]) or 0
local p = tonumber(s[2]) or 0
local c = tonumber(s[3]) or 0
local a = tonumber(s[4]) or 0

-- Roll to the fixed window holding now; a clock that went backwards is held at its start.
if now < ws then now = ws end
local start = idiv(now, w) * w
local rolled = start > ws or not s[1]
if start > ws then
  if start - ws == w then p = c else p = 0 end
  c = 0
  a = 0
  ws = start
end
local elapsed = now - ws
local reset_after = ws + w - now
a = a + cost

local function save()
  if rolled then
    redis.call('HSET', KEYS[1], 'ws', ws, 'p', p, 'c', c, 'a', a)
    -- The counts matter until the end of the next window; HSET keeps this TTL until then.
    redis.call('PEXPIRE', KEYS[1], ws + 2 * w - now)
  else
    redis.call('HSET', KEYS[1], 'c', c, 'a', a)
  end
end

if limit < 0 then
  c = c + cost
  save()
  return {4, c, reset_after, 0, 0, now}
end

local factor = tonumber(ARGV[5])
local threshold = factor * limit
if threshold > 0 and a >= threshold then
  local base_ttl = tonumber(ARGV[6])
  local max_ttl = tonumber(ARGV[7])
  local memory = tonumber(ARGV[8])
  local o = redis.call('HMGET', KEYS[3], 'n', 'exp')
  local n = tonumber(o[1]) or 0
  if (tonumber(o[2]) or 0) <= now then n = 0 end
  local ttl = base_ttl
  for _ = 1, n do
    if ttl >= max_ttl then break end
    ttl = ttl * 2
  end
  if ttl > max_ttl then ttl = max_ttl end
  local until_ms = now + ttl * 1000
  redis.call('SET', KEYS[2], until_ms, 'PX', ttl * 1000)
  redis.call('HSET', KEYS[3], 'n', n + 1, 'exp', now + memory * 1000)
  redis.call('PEXPIRE', KEYS[3], memory * 1000)
  redis.call('HSET', KEYS[1], 'ws', ws, 'p', p, 'c', c, 'a', 0, 'b', until_ms)
  redis.call('PEXPIRE', KEYS[1], math.max(ws + 2 * w - now, ttl * 1000))
  return {3, 0, ttl * 1000, ttl * 1000, until_ms, now}
end

local scaled_limit = limit * w
local estimate = p * (w - elapsed) + c * w
if cost <= limit and estimate + cost * w <= scaled_limit then
  c = c + cost
  save()
  return {1, idiv(scaled_limit - estimate - cost * w, w), reset_after, 0, 0, now}
end

-- Earliest admission if nothing else arrives: first in this window (prev decaying), then in
-- the next (curr becomes prev), else at the start of the one after.
local retry
if cost > limit then
  retry = -1
else
  local room = limit - c - cost
  if room >= 0 and p > 0 then
    local e = w - idiv(room * w, p)
    if e < 0 then e = 0 end
    if e < w and ws + e > now then retry = ws + e - now end
  end
  if not retry then
    local e = 0
    if c > 0 then
      e = w - idiv((limit - cost) * w, c)
      if e < 0 then e = 0 end
    end
    if e < w then retry = ws + w + e - now else retry = ws + 2 * w - now end
  end
end
local remaining = 0
if scaled_limit > estimate then remaining = idiv(scaled_limit - estimate, w) end
save()
return {0, remaining, reset_after, retry, 0, now}
