-- adopt.lua: write back the leases of running runs that this server lost (a flush, a restart
-- without persistence), so the reaper sees them again if their worker is gone.
--
-- KEYS[1]  queue:{q}:inflight  zset run id -> lease deadline (Unix ms)
-- KEYS[2]  queue:{q}:leases    hash run id -> lease value
-- ARGV[1..] triples: run id, lease value, ms the lease has left by the database clock
-- Returns: number of leases written. A lease this server still holds is left alone: its
-- worker's renewals keep it (and may already have written it back).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local written = 0
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HSETNX', KEYS[2], id, ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[i + 2]), id)
    written = written + 1
  end
end
return written
