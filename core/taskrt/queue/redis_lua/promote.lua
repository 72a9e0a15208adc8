-- promote.lua: move due delayed runs of one queue to the tail of its ready list.
--
-- KEYS[1]  queue:{q}:delayed   zset run id -> due time (Unix ms)
-- KEYS[2]  queue:{q}:ready     list of run ids
-- ARGV[1]  most runs to move
-- ARGV[2]  wake channel of the queue
-- Returns: number of runs moved; publishes on the wake channel if any moved.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due == 0 then return 0 end
redis.call('ZREM', KEYS[1], unpack(due))
redis.call('RPUSH', KEYS[2], unpack(due))
redis.call('PUBLISH', ARGV[2], 'w')
return #due
