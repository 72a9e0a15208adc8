-- ratelimit.lua: take one token from a token bucket, refilled continuously; one bucket per caller.
--
-- KEYS[1]  taskrt:ratelimit:<subject>  hash: tokens (float), ts (Redis time of the last take, ms)
-- ARGV[1]  capacity: tokens the bucket holds when full (the burst)
-- ARGV[2]  refill period in ms: an empty bucket is full again after this long
-- Returns: {allowed, retry_ms, remaining}. allowed is 1 if a token was taken, else 0;
-- retry_ms is how long until a token is back (0 when allowed); remaining is the whole tokens left.
-- The clock is Redis TIME, so every API process sharing this Redis shares one bucket and one
-- clock. The key expires once the bucket would be full again, so idle callers cost nothing.
local capacity = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
local elapsed = math.max(0, now - ts)
tokens = math.min(capacity, tokens + elapsed * capacity / period)
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) * period / capacity)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) * period / capacity) + 1000)
return {allowed, retry_ms, math.floor(tokens)}
