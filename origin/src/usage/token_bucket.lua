-- Heady's token limit: heady_shared::token_bucket::TokenPolicy, step for step, on one Redis
-- hash per subject. One call per reservation or settlement; atomic because Redis runs a script
-- alone. Every value is an integer below 2^53, so Lua's doubles hold it exactly; divisions
-- (tokens left, time to wait) are made by the caller from the debt this returns.
--
-- KEYS[1] tokens hash: d (debt: tokens spent and not yet refilled, times window_ms),
--                at (ms the debt was last brought up to date)
-- ARGV: op ('reserve' | 'settle'), limit (tokens per window), window_ms,
--       a (reserve: cost; settle: reserved), b (settle: actual), now_ms ('' = Redis TIME)
-- Returns {admitted (0/1; settle: 1), debt}.
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local now
if ARGV[6] ~= '' then
  now = tonumber(ARGV[6])
else
  -- One clock for every origin: the Redis server's.
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local st = redis.call('HMGET', KEYS[1], 'd', 'at')
local debt = tonumber(st[1]) or 0
local at = tonumber(st[2]) or 0
-- Step 1: refill.
if now > at then
  debt = math.max(0, debt - limit * (now - at))
  at = now
end

local admitted = 1
if ARGV[1] == 'reserve' then
  local cost = tonumber(ARGV[4])
  local needed = math.min(cost, limit) * window
  if debt + needed <= limit * window then
    debt = debt + cost * window
  else
    admitted = 0
  end
else
  debt = math.max(0, debt + tonumber(ARGV[5]) * window - tonumber(ARGV[4]) * window)
end

redis.call('HSET', KEYS[1], 'd', string.format('%.0f', debt), 'at', string.format('%.0f', at))
-- Forgotten once the debt has refilled, and a window more.
redis.call('PEXPIRE', KEYS[1], math.floor(debt / limit) + window + 1000)
return {admitted, debt}
