-- withdraw.lua: remove cancelled runs from one queue (they would be dropped at claim anyway).
--
-- KEYS[1]  queue:{q}:ready     list of run ids
-- KEYS[2]  queue:{q}:delayed   zset run id -> due time (Unix ms)
-- ARGV[1..] run ids
-- Returns: number of entries removed. LREM is O(length of the ready list).
local removed = 0
for i = 1, #ARGV do
  removed = removed + redis.call('ZREM', KEYS[2], ARGV[i])
  removed = removed + redis.call('LREM', KEYS[1], 1, ARGV[i])
end
return removed
