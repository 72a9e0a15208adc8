-- renew.lua: extend a worker's leases in one queue.
--
-- KEYS[1]  queue:{q}:inflight  zset run id -> lease deadline (Unix ms)
-- KEYS[2]  queue:{q}:leases    hash run id -> lease value
-- ARGV[1]  lease TTL in ms
-- ARGV[2..] pairs: run id, lease value
-- Returns: the run ids whose lease now belongs to another value (taken over). A lease that is
-- missing (Redis lost its data) is written again: the database, checked by the caller before
-- this script runs, says the run is still this worker's.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local value = ARGV[i + 1]
  local current = redis.call('HGET', KEYS[2], id)
  if current == false then
    redis.call('HSET', KEYS[2], id, value)
    redis.call('ZADD', KEYS[1], deadline, id)
  elseif current == value then
    redis.call('ZADD', KEYS[1], deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
