-- fetch.lua: lease up to N ready runs of one queue to a worker, promoting due delayed runs first.
--
-- KEYS[1]  queue:{q}:ready     list of run ids
-- KEYS[2]  queue:{q}:delayed   zset run id -> due time (Unix ms)
-- KEYS[3]  queue:{q}:inflight  zset run id -> lease deadline (Unix ms)
-- KEYS[4]  queue:{q}:leases    hash run id -> lease value (worker id ":" lease token)
-- KEYS[5]  queue:{q}:paused    string, present while the queue is paused
-- ARGV[1]  most runs to lease
-- ARGV[2]  lease TTL in ms
-- ARGV[3]  lease value
-- ARGV[4]  most delayed runs to promote in this call
-- Returns: {wait, id1, id2, ...}. wait is -2 if the queue is paused, -1 if runs were leased or
-- nothing is delayed, else the ms until the earliest delayed run is due. A popped id that is
-- already in flight (a duplicate dispatch) is dropped, not leased twice.
if redis.call('EXISTS', KEYS[5]) == 1 then return {-2} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
if #due > 0 then
  redis.call('ZREM', KEYS[2], unpack(due))
  redis.call('RPUSH', KEYS[1], unpack(due))
end
local out = {-1}
local popped = redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
if popped then
  local deadline = now + tonumber(ARGV[2])
  for _, id in ipairs(popped) do
    if not redis.call('ZSCORE', KEYS[3], id) then
      redis.call('ZADD', KEYS[3], deadline, id)
      redis.call('HSET', KEYS[4], id, ARGV[3])
      out[#out + 1] = id
    end
  end
end
if #out == 1 then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if first[2] then
    local wait = tonumber(first[2]) - now
    if wait < 0 then wait = 0 end
    out[1] = wait
  end
end
return out
