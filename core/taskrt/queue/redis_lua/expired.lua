-- expired.lua: list leases of one queue whose deadline has passed (Redis clock).
--
-- KEYS[1]  queue:{q}:inflight  zset run id -> lease deadline (Unix ms)
-- KEYS[2]  queue:{q}:leases    hash run id -> lease value
-- ARGV[1]  most entries to return
-- Returns: flat list {run id, lease value or "", ...}. Nothing is changed: the caller checks
-- the database and settles each run with settle.lua.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, id in ipairs(ids) do
  local value = redis.call('HGET', KEYS[2], id)
  out[#out + 1] = id
  out[#out + 1] = value or ''
end
return out
